"""Batches: many jobs submitted, contracted and reported per request."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from tests.helpers import contract, job, register, until, upload


def test_batch_submit_answers_each_job_in_order(client: httpx.Client, r: redis.Redis) -> None:
    resp = client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"},
        {"function_id": "f", "runtime": "sh", "data1_id": "zzzzzzzz"},
        {"runtime": "sh"},
        "not an object",
        {"function_id": "g", "runtime": "node", "max_attempts": 5},
    ]})
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert [sorted(x) for x in results] == [["job_id"], ["detail", "error", "field"],
                                           ["detail", "error", "field"], ["detail", "error"],
                                           ["job_id"]]
    assert results[1]["error"] == "unknown_data" and results[2]["error"] == "missing_field"
    assert r.zrange("broker:queue:sh", 0, -1) == [results[0]["job_id"]]
    assert job(client, results[4]["job_id"])["max_attempts"] == 5
    for bad in ({"jobs": []}, {"jobs": "x"}, {}):
        assert client.post("/jobs", json=bad).status_code == 400


def test_a_worker_takes_and_reports_many_jobs_at_once(client: httpx.Client) -> None:
    ids = [x["job_id"] for x in client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"} for _ in range(5)]}).json()["results"]]
    worker = register(client, "sh")
    single = contract(client, worker).json()
    assert single["job_id"] == ids[0] and "contracts" not in single
    many = contract(client, worker, max=3).json()["contracts"]
    assert [c["job_id"] for c in many] == ids[1:4]
    assert len({c["lease"] for c in [single, *many]}) == 4
    reports = [{"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"}
               for c in many]
    reports[1]["lease"] = "stale"
    reports.append({"job_id": ids[0], "status": "failed", "error": "boom", "retry": False})
    reports.append({"job_id": "BAD", "status": "succeeded"})
    resp = client.put("/jobs", json={"reports": reports}, headers={"X-Worker-Id": worker})
    results = resp.json()["results"]
    assert results[0] == {"ok": True} and results[2] == {"ok": True}
    assert results[1]["error"] == "lease_lost" and results[3] == {"ok": True}
    assert results[4]["error"] == "invalid_id"
    assert [job(client, i)["status"] for i in ids] == ["failed", "succeeded", "running",
                                                       "succeeded", "pending"]
    assert contract(client, worker, max=10).json()["contracts"][0]["job_id"] == ids[4]
    assert contract(client, worker, max=10).status_code == 204
    assert contract(client, worker, max=0).status_code == 400
    assert client.put("/jobs", json={"reports": reports}).status_code == 400  # no worker id


def test_one_batch_wakes_every_worker_waiting_on_its_runtime(client: httpx.Client,
                                                             r: redis.Redis) -> None:
    """A batch publishes one wake-up per runtime; each woken claim that leaves jobs behind
    wakes the next waiter, so every waiting worker still gets a job."""
    workers = [register(client, "sh") for _ in range(4)]
    with ThreadPoolExecutor(len(workers)) as pool:
        waits = [pool.submit(contract, client, w, wait=20) for w in workers]
        # A worker that found nothing and waits is counted alive through its wait (20 s
        # beyond the 30 s worker timeout): all four are in their long-poll.
        until(lambda: all((r.zscore("broker:workers", w) or 0) > time.time() * 1000 + 40_000
                          for w in workers))
        made = client.post("/jobs", json={"jobs": [
            {"function_id": "f", "runtime": "sh"} for _ in range(4)]}).json()["results"]
        answers = [w.result(timeout=30) for w in waits]
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(a.json()["job_id"] for a in answers) == sorted(x["job_id"] for x in made)


def test_a_batch_report_retries_records_output_and_repeats_safely(client: httpx.Client,
                                                                  r: redis.Redis) -> None:
    ids = [x["job_id"] for x in client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh", "max_attempts": 2} for _ in range(3)]}
    ).json()["results"]]
    worker = register(client, "sh")
    held = contract(client, worker, max=3).json()["contracts"]
    output = upload(client, b"result")
    reports = [
        {"job_id": held[0]["job_id"], "lease": held[0]["lease"], "status": "succeeded",
         "data2_id": output},
        {"job_id": held[1]["job_id"], "lease": held[1]["lease"], "status": "failed",
         "error": "flaky", "retry": True},
        {"job_id": held[2]["job_id"], "lease": held[2]["lease"], "status": "running",
         "data2_id": "zzzzzzzz"},
    ]
    for _ in range(2):  # the same batch again changes nothing
        results = client.put("/jobs", json={"reports": reports},
                             headers={"X-Worker-Id": worker}).json()["results"]
        assert results[0] == {"ok": True}
        assert results[2]["error"] == "unknown_data" and results[2]["field"] == "data2_id"
    first, retried, running = (job(client, i) for i in ids)
    assert first["status"] == "succeeded" and first["data2_id"] == output
    assert retried["status"] == "pending" and retried["retry_at"] and retried["error"] == "flaky"
    assert r.zscore("broker:delayed", ids[1]) is not None
    assert running["status"] == "running" and running["data2_id"] == ""
    assert sorted(r.smembers(f"broker:worker:{worker}:jobs")) == [ids[2]]
    assert int(r.hget(f"broker:worker:{worker}", "last_seen") or 0) > 0


def test_a_batch_sent_again_under_its_key_answers_the_first_jobs(client: httpx.Client,
                                                               r: redis.Redis) -> None:
    body = {"jobs": [{"function_id": "f", "runtime": "sh"},
                     {"function_id": "g", "runtime": "sh", "data1_id": "zzzzzzzz"},
                     {"function_id": "h", "runtime": "sh"}]}
    headers = {"Idempotency-Key": "batch-1"}
    first = client.post("/jobs", json=body, headers=headers).json()["results"]
    again = client.post("/jobs", json=body, headers=headers).json()["results"]
    assert first[1]["error"] == again[1]["error"] == "unknown_data"
    assert [first[i]["job_id"] for i in (0, 2)] == [again[i]["job_id"] for i in (0, 2)]
    assert r.zcard("broker:queue:sh") == 2
    other = {"jobs": [{"function_id": "other", "runtime": "sh"}]}
    changed = client.post("/jobs", json=other, headers=headers).json()["results"]
    assert changed[0]["error"] == "idempotency_mismatch"
