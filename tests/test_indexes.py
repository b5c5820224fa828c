"""The listing indexes and counters that every status change keeps, checked against the jobs
themselves after a mix of every transition."""

from __future__ import annotations

import collections

import httpx
import redis

from tests.helpers import contract, put_job, register, submit

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


def _check_indexes(r: redis.Redis) -> None:
    jobs = {k.split(":")[-1]: r.hgetall(k) for k in r.scan_iter("broker:job:*")}
    for status in STATUSES:
        indexed = set(r.zrange(f"broker:index:{status}", 0, -1))
        assert indexed == {j for j, h in jobs.items() if h["status"] == status}, status
    running = collections.Counter(h["runtime"] for h in jobs.values()
                                  if h["status"] == "running")
    counted = {k: int(v) for k, v in r.hgetall("broker:running").items() if int(v)}
    assert counted == dict(running)


def test_every_transition_keeps_the_indexes_true(client: httpx.Client, r: redis.Redis) -> None:
    w_sh, w_py = register(client, "sh"), register(client, "python3")
    ids = [submit(client, "sh") for _ in range(6)] + [submit(client, "python3")
                                                       for _ in range(3)]
    leases = {}
    for worker in (w_sh, w_sh, w_sh, w_sh, w_py, w_py):
        given = contract(client, worker).json()
        leases[given["job_id"]] = (worker, given["lease"])
    _check_indexes(r)
    done, failed, retried, released, cancelled_running, deleted_running = list(leases)
    for job_id, status in ((done, "succeeded"), (failed, "failed")):
        put_job(client, job_id, {"status": status, "retry": False},
                X_Worker_Id=leases[job_id][0])
    put_job(client, retried, {"status": "failed"}, X_Worker_Id=leases[retried][0])
    put_job(client, released, {"status": "pending"}, X_Worker_Id=leases[released][0])
    put_job(client, cancelled_running, {"status": "cancelled"})
    client.delete("/job", headers={"X-Job-Id": deleted_running})
    _check_indexes(r)
    put_job(client, ids[-1], {"status": "cancelled"})
    client.delete("/job", headers={"X-Job-Id": ids[-2]})
    put_job(client, done, {"status": "pending", "runtime": "python3"})
    put_job(client, ids[-3], {"runtime": "sh"})
    client.delete("/worker", headers={"X-Worker-Id": w_py})
    _check_indexes(r)
    stats = r.hgetall("broker:stats")
    assert int(stats["handed_out"]) == 6 and int(stats["succeeded"]) == 1
    assert int(stats["failed"]) == 1 and int(stats["cancelled"]) == 3
    assert r.smembers("broker:runtimes") == {"sh", "python3"}
    assert r.smembers("broker:runtime:sh:workers") == {w_sh}
    assert r.smembers("broker:runtime:python3:workers") == set()


def test_batches_keep_the_indexes_counters_queues_and_deadlines_true(
        client: httpx.Client, r: redis.Redis) -> None:
    """A batch writes each index, counter, queue and set once for all its jobs: the result must
    be what the jobs one by one would have left."""
    worker = register(client, "sh")
    made = client.post("/jobs", json={"jobs": [{"function_id": "f", "runtime": rt}
                                               for rt in ("sh", "sh", "node", "sh", "sh", "sh")]})
    ids = [res["job_id"] for res in made.json()["results"]]
    assert r.zrange("broker:queue:sh", 0, -1) == [ids[i] for i in (0, 1, 3, 4, 5)]  # FIFO
    assert r.zrange("broker:queue:node", 0, -1) == [ids[2]]
    assert r.smembers("broker:runtimes") == {"sh", "node"}
    _check_indexes(r)
    taken = client.get("/worker/contract", params={"max": "4"},
                       headers={"X-Worker-Id": worker}).json()["contracts"]
    assert [c["job_id"] for c in taken] == [ids[i] for i in (0, 1, 3, 4)]
    assert r.smembers(f"broker:worker:{worker}:jobs") == {c["job_id"] for c in taken}
    assert set(r.zrange("broker:deadlines", 0, -1)) == {c["job_id"] for c in taken}
    _check_indexes(r)
    outcomes = [("succeeded", False), ("failed", False), ("failed", True), ("running", False)]
    reports = [{"job_id": c["job_id"], "lease": c["lease"], "status": status, "retry": retry}
               for c, (status, retry) in zip(taken, outcomes, strict=True)]
    answered = client.put("/jobs", json={"reports": reports}, headers={"X-Worker-Id": worker})
    assert answered.json()["results"] == [{"ok": True}] * 4
    _check_indexes(r)
    still = taken[3]["job_id"]
    assert r.smembers(f"broker:worker:{worker}:jobs") == {still}
    assert r.zrange("broker:deadlines", 0, -1) == [still]
    assert r.zrange("broker:delayed", 0, -1) == [taken[2]["job_id"]]
    stats = r.hgetall("broker:stats")
    assert (stats["handed_out"], stats["succeeded"], stats["failed"]) == ("4", "1", "1")
    assert r.hget("broker:running", "sh") == "1"
