"""Fault injection on real Redis and real processes: what the README promises when things
break. Timeouts are short settings of the test, never sleeps of the production defaults."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from pytest_redis.executor import RedisExecutor

from broker.store.keys import Keys
from broker.store.scripts import source
from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import contract, finished, job, output, put_job, register, run_job, submit, until
from tests.inprocess import InProcess


def test_a_killed_agents_job_is_finished_by_another_and_the_second_result_kept(
        start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    proc = start_broker(BROKER_WORKER_TIMEOUT="1.5", BROKER_SWEEP_INTERVAL="0.2")
    side = tmp_path / "runs"
    code = (f"echo $$ >> {side}\nn=$(wc -l < {side})\nsleep 1\necho \"run $n\"\n").encode()
    first = AgentProcess(proc.url, tmp_path / "a.log", "--runtime", "sh")
    second: AgentProcess | None = None
    try:
        first.wait_for_log("registered as worker")
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = run_job(c, "sh", code)
            first.wait_for_log(f"job {job_id} start")
            until(side.exists)
            first.kill()  # the machine dies: the agent, and its function with it
            os.kill(int(side.read_text().split()[0]), signal.SIGKILL)
            killed_at = time.monotonic()
            second = AgentProcess(proc.url, tmp_path / "b.log", "--runtime", "sh")
            body = finished(c, job_id, timeout=30)
            assert time.monotonic() - killed_at < 1.5 + 10
            assert body["status"] == "succeeded" and body["attempts"] == 2
            assert len(side.read_text().split()) == 2, "the function ran other than twice"
            assert output(c, body["data2_id"]).strip() == b"run 2"
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_a_stalled_worker_that_comes_back_cannot_overwrite_the_new_holder(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_WORKER_TIMEOUT="1", BROKER_SWEEP_INTERVAL="0.2")
    out = c.post("/data/reg").text
    job_id = submit(c, "sh", data2_id=out)
    stale = register(c, "sh")
    stale_lease = contract(c, stale).json()["lease"]
    until(lambda: job(c, job_id)["status"] == "pending")  # reaped: not heard from
    holder = register(c, "sh")
    given = contract(c, holder).json()
    assert given["job_id"] == job_id and given["attempts"] == 2
    for who, lease in ((stale, stale_lease), (stale, "")):
        late = put_job(c, job_id, {"status": "succeeded"}, X_Worker_Id=who, X_Lease=lease)
        assert late.status_code == 409 and late.json()["error"] == "lease_lost"
        data = c.put("/data", files={"file": ("file", b"stale")},
                     headers={"X-Data-Id": out, "X-Worker-Id": who, "X-Lease": lease})
        assert data.status_code == 409 and data.json()["error"] == "lease_lost"
    ok = c.put("/data", files={"file": ("file", b"fresh")},
               headers={"X-Data-Id": out, "X-Worker-Id": holder, "X-Lease": given["lease"]})
    assert ok.status_code == 200
    done = put_job(c, job_id, {"status": "succeeded"}, X_Worker_Id=holder,
                   X_Lease=given["lease"])
    assert done.status_code == 204
    assert put_job(c, job_id, {"status": "succeeded"}, X_Worker_Id=holder,
                   X_Lease=given["lease"]).status_code == 204  # a repeat is harmless
    assert output(c, out) == b"fresh" and job(c, job_id)["status"] == "succeeded"


def test_a_replayed_claim_answers_the_same_job_and_takes_no_second(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    first, second = submit(client, "sh"), submit(client, "sh")
    keys = [f"broker:worker:{worker}", f"broker:worker:{worker}:jobs", "broker:workers",
            "broker:deadlines", "broker:delayed"]
    prefixes = Keys().context(0)
    now = int(time.time() * 1000)
    args = [worker, now, "replayedlease", now + 30000, prefixes, 10, 0, 1, 30000, 3000]
    # What redis-py does when a reply is lost: the very same EVALSHA again.
    a = r.eval(source("claim"), len(keys), *keys, *args)
    b = r.eval(source("claim"), len(keys), *keys, *args)
    assert a[0] == b[0] == "ok" and a[4] == b[4] == first  # {"ok", runtimes, more, n, id, …}
    assert job(client, second)["status"] == "pending"
    assert r.hget(f"broker:job:{first}", "lease") == "replayedlease"
    assert r.smembers(f"broker:worker:{worker}:jobs") == {first}


def test_a_replayed_submit_makes_one_job_and_an_idempotency_key_answers_the_first(
        client: httpx.Client, r: redis.Redis) -> None:
    now = int(time.time() * 1000)
    keys = ["broker:job:replayd1", "broker:queue:sh", "broker:seq", "broker:data:",
            "broker:data:", "broker:idem:job:"]
    args = ["replayd1", "", "", "fn", "sh", now, "1", 3, 60, "", 86400,
            Keys().context(0), 1000, 0, "", "", "", ""]
    assert r.eval(source("submit"), len(keys), *keys, *args) == ["ok", "replayd1"]
    assert r.eval(source("submit"), len(keys), *keys, *args) == ["ok", "replayd1"]
    assert r.zrange("broker:queue:sh", 0, -1) == ["replayd1"]

    body = {"function_id": "fn", "runtime": "sh"}
    once = client.post("/job", json=body, headers={"Idempotency-Key": "order-42"})
    again = client.post("/job", json=body, headers={"Idempotency-Key": "order-42"})
    assert once.status_code == again.status_code == 200
    assert once.json() == again.json()
    assert r.zcard("broker:queue:sh") == 2
    other = client.post("/job", json={**body, "runtime": "node"},
                        headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 422 and other.json()["error"] == "idempotency_mismatch"
    bad = client.post("/job", json=body, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 400


def test_redis_killed_under_load_loses_no_acknowledged_job(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis(appendonly="yes")
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data").start()
    agent = AgentProcess(proc.url, tmp_path / "agent.log", "--runtime", "sh",
                         "--concurrency", "4")
    acked: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    try:
        agent.wait_for_log("registered as worker")
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            fn = c.post("/data", files={"file": ("f", b"echo ok\n")}).text

            def submitter() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    while not stop.is_set():  # the same key until the broker answers
                        resp = c.post("/job", json={"function_id": fn, "runtime": "sh"},
                                      headers={"Idempotency-Key": f"load-{n}"})
                        statuses.append(resp.status_code)
                        if resp.status_code == 200:
                            acked.append(resp.json()["job_id"])
                            break
                        time.sleep(0.05)

            t = threading.Thread(target=submitter)
            t.start()
            until(lambda: len(acked) >= 30)
            server.kill(sig=signal.SIGKILL)
            until(lambda: 503 in statuses)
            time.sleep(0.5)
            server.start()
            count = len(acked)
            until(lambda: len(acked) >= count + 30, timeout=30)
            stop.set()
            t.join(30)
            assert 500 not in statuses and set(statuses) <= {200, 503}
            assert len(set(acked)) == len(acked)
            for job_id in acked:
                assert finished(c, job_id, timeout=60)["status"] == "succeeded"
            check = redis.Redis(port=server.port, decode_responses=True)
            assert len(list(check.scan_iter("broker:job:*"))) == len(acked)
        assert "Traceback" not in proc.log()
    finally:
        stop.set()
        agent.kill()
        proc.stop()


def test_a_full_redis_refuses_submissions_cleanly(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data").start()
    admin = redis.Redis(port=server.port, decode_responses=True)
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            existing = submit(c, "sh")
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", used // 2)  # full: every write is refused
            jobs_before = set(admin.scan_iter("broker:job:*"))
            resp = c.post("/job", json={"function_id": "f", "runtime": "sh"})
            assert resp.status_code == 503 and "full" in resp.json()["detail"]
            assert resp.headers["retry-after"].isdigit()
            assert c.post("/worker", json={"Runtime": ["sh"]}).status_code == 503
            assert set(admin.scan_iter("broker:job:*")) == jobs_before
            assert admin.zcard("broker:queue:sh") == 1
            assert job(c, existing)["status"] == "pending"  # reads still work
            admin.config_set("maxmemory", 0)
            assert c.post("/job", json={"function_id": "f", "runtime": "sh"}).status_code == 200
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()


def test_a_full_redis_still_lets_work_finish_and_memory_be_freed(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data").start()
    admin = redis.Redis(port=server.port, decode_responses=True)
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            worker, leaving = register(c, "sh"), register(c, "sh")
            running, cancelled, deleted, queued = (submit(c, "sh") for _ in range(4))
            held = {runner: contract(c, w).json()["lease"]
                    for runner, w in ((running, worker), (cancelled, worker))}
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) // 2)
            refused = c.post("/job", json={"function_id": "f", "runtime": "sh"})
            assert refused.status_code == 503 and "full" in refused.json()["detail"]
            beat = put_job(c, running, {"status": "running"}, X_Worker_Id=worker,
                           X_Lease=held[running])
            assert beat.status_code == 204, beat.text
            assert c.get("/worker", headers={"X-Worker-Id": worker}).status_code == 200
            done = put_job(c, running, {"status": "succeeded"}, X_Worker_Id=worker,
                           X_Lease=held[running])
            assert done.status_code == 204, done.text
            assert put_job(c, cancelled, {"status": "cancelled"}).status_code == 204
            assert c.delete("/job", headers={"X-Job-Id": deleted}).status_code == 204
            assert c.delete("/worker", headers={"X-Worker-Id": leaving}).status_code == 204
            assert [job(c, j)["status"] for j in (running, cancelled, queued)] == [
                "succeeded", "cancelled", "pending"]
            assert c.get("/job", headers={"X-Job-Id": deleted}).status_code == 404
        assert "Traceback" not in proc.log()
    finally:
        admin.config_set("maxmemory", 0)
        proc.stop()


def test_a_failure_reported_with_retry_waits_out_a_backoff_then_fails_for_good(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    c = app_with(BROKER_RETRY_BASE="0.2", BROKER_RETRY_MAX="0.5",
                 BROKER_SWEEP_INTERVAL="0.1")
    worker = register(c, "sh")
    resp = c.post("/job", json={"function_id": "f", "runtime": "sh", "max_attempts": 3})
    job_id = resp.json()["job_id"]
    for attempt in (1, 2, 3):
        given = contract(c, worker, wait=5).json()
        assert given["job_id"] == job_id and given["attempts"] == attempt
        report = put_job(c, job_id, {"status": "failed", "retry": True,
                                     "error": f"flaky {attempt}"},
                         X_Worker_Id=worker, X_Lease=given["lease"])
        assert report.status_code == 204
        body = job(c, job_id)
        if attempt < 3:
            assert body["status"] == "pending" and body["retry_at"] is not None
            assert r.zscore("broker:delayed", job_id) is not None
            assert r.zcard("broker:queue:sh") == 0  # not before its backoff is over
    final = job(c, job_id)
    assert final["status"] == "failed" and final["attempts"] == 3
    assert final["error"] == "flaky 3" and final["retry_at"] is None
    assert final["created_at"] and final["started_at"] and final["finished_at"]
    assert r.zcard("broker:delayed") == 0


def test_a_job_past_its_time_limit_is_retried_then_fails_with_timeout(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    c = app_with(BROKER_SWEEP_INTERVAL="0.1")
    worker = register(c, "sh")
    job_id = c.post("/job", json={"function_id": "f", "runtime": "sh", "timeout": 0.3,
                                  "max_attempts": 2}).json()["job_id"]
    first = contract(c, worker).json()
    assert first["timeout"] == 0.3
    until(lambda: job(c, job_id)["status"] == "pending")
    late = put_job(c, job_id, {"status": "succeeded"}, X_Worker_Id=worker,
                   X_Lease=first["lease"])
    assert late.status_code == 409 and late.json()["error"] == "lease_lost"
    second = contract(c, worker).json()
    assert second["attempts"] == 2
    until(lambda: job(c, job_id)["status"] == "failed")
    final = job(c, job_id)
    assert final["error"] == "timeout" and final["attempts"] == 2
    assert r.zcard("broker:deadlines") == 0 and r.smembers(
        f"broker:worker:{worker}:jobs") == set()


def test_a_dead_workers_last_allowed_attempt_fails_with_max_attempts(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    c = app_with(BROKER_WORKER_TIMEOUT="0.5", BROKER_SWEEP_INTERVAL="0.1")
    worker = register(c, "sh")
    job_id = c.post("/job", json={"function_id": "f", "runtime": "sh",
                                  "max_attempts": 1}).json()["job_id"]
    contract(c, worker)
    until(lambda: job(c, job_id)["status"] == "failed")
    final = job(c, job_id)
    assert final["error"] == "max_attempts" and final["attempts"] == 1
    assert c.get("/worker", headers={"X-Worker-Id": worker}).status_code == 404
    assert r.zscore("broker:workers", worker) is None


def test_a_waiting_worker_is_not_declared_dead(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_WORKER_TIMEOUT="0.5", BROKER_SWEEP_INTERVAL="0.1")
    worker = register(c, "sh")
    assert contract(c, worker, wait=2).status_code == 204
    assert c.get("/worker", headers={"X-Worker-Id": worker}).status_code == 200


def test_every_request_carrying_a_worker_id_counts_as_hearing_from_it(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    out = client.post("/data/reg").text
    job_id = submit(client, "sh", data2_id=out)
    lease = contract(client, worker).json()["lease"]
    calls = [
        lambda: client.get("/worker", headers={"X-Worker-Id": worker}),
        lambda: client.put("/data", files={"file": ("f", b"x")},
                           headers={"X-Data-Id": out, "X-Worker-Id": worker, "X-Lease": lease}),
        lambda: put_job(client, job_id, {"status": "running"}, X_Worker_Id=worker),
        lambda: put_job(client, job_id, {"status": "pending"}, X_Worker_Id=worker),
        lambda: contract(client, worker),
    ]
    for call in calls:
        before = r.zscore("broker:workers", worker)
        time.sleep(0.01)
        assert call().status_code < 300
        assert r.zscore("broker:workers", worker) > before  # type: ignore[operator]
