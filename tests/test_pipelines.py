"""Pipelines against real Redis: jobs that wait for their inputs and for other jobs, failure
travelling down, and the answer to "why isn't it running?"."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import (
    assert_error,
    contract,
    finished,
    job,
    output,
    put,
    put_job,
    register,
    submit,
    until,
    upload,
)


def reserve(client: httpx.Client) -> str:
    resp = client.post("/data/reg")
    assert resp.status_code == 200, resp.text
    return resp.text.strip()


def _take(client: httpx.Client, worker: str, expected: str) -> str:
    given = contract(client, worker)
    assert given.status_code == 200 and given.json()["job_id"] == expected, given.text
    return str(given.json()["lease"])


def _report(client: httpx.Client, job_id: str, worker: str, lease: str, status: str,
            **extra: Any) -> None:
    resp = put_job(client, job_id, {"status": status, **extra}, X_Worker_Id=worker,
                   X_Lease=lease)
    assert resp.status_code == 204, resp.text


def _why(client: httpx.Client, job_id: str) -> dict[str, Any]:
    waiting: dict[str, Any] = job(client, job_id)["waiting"]
    return waiting


# -- waiting on data -------------------------------------------------------------------------

def test_a_job_waits_for_a_reserved_input_and_a_requester_fill_starts_it(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    x = reserve(client)
    b = submit(client, "sh", data1_id=x)
    assert job(client, b)["status"] == "waiting"
    why = _why(client, b)
    assert why["reason"] == "inputs" and x in why["detail"] and "PUT /data" in why["detail"]
    rows = {row["runtime"]: row for row in client.get("/runtimes").json()["runtimes"]}
    assert rows["sh"]["waiting"] == 1 and rows["sh"]["pending"] == 0
    assert contract(client, worker).status_code == 204
    assert put(client, x, b"filled by hand").status_code == 200
    assert job(client, b)["status"] == "pending"
    _take(client, worker, b)
    assert r.exists(f"broker:waiters:data:{x}") == 0


def test_a_job_whose_function_is_reserved_waits_for_it(client: httpx.Client) -> None:
    code = reserve(client)
    b = submit(client, "sh", function_id=code)
    assert job(client, b)["status"] == "waiting"
    put(client, code, b"echo built")
    assert job(client, b)["status"] == "pending"


def test_an_output_counts_once_its_job_succeeds_not_when_it_is_written(
        client: httpx.Client) -> None:
    worker = register(client, "sh")
    x = reserve(client)
    a = submit(client, "sh", data2_id=x)
    b = submit(client, "sh", data1_id=x)
    lease = _take(client, worker, a)
    written = client.put("/data", headers={"X-Data-Id": x, "X-Worker-Id": worker,
                                           "X-Lease": lease}, files={"file": b"out"})
    assert written.status_code == 200, written.text
    assert job(client, b)["status"] == "waiting"
    assert f"to be written by job {a}, running" in _why(client, b)["detail"]
    _report(client, a, worker, lease, "succeeded")
    assert job(client, b)["status"] == "pending"
    assert _take(client, worker, b)
    # Made after its input was produced: pending at once.
    assert job(client, submit(client, "sh", data1_id=x))["status"] == "pending"


def test_fan_out_one_producer_starts_ten_consumers(client: httpx.Client) -> None:
    worker = register(client, "sh")
    x = reserve(client)
    a = submit(client, "sh", data2_id=x)
    consumers = [submit(client, "sh", data1_id=x, priority=i) for i in range(10)]
    _report(client, a, worker, _take(client, worker, a), "succeeded")
    assert {job(client, c)["status"] for c in consumers} == {"pending"}
    assert [contract(client, worker).json()["job_id"] for _ in consumers] == consumers[::-1]


# -- waiting on jobs -------------------------------------------------------------------------

def test_fan_in_a_job_after_ten_runs_when_the_last_succeeds(client: httpx.Client) -> None:
    worker = register(client, "sh")
    done_before = submit(client, "sh")
    _report(client, done_before, worker, _take(client, worker, done_before), "succeeded")
    ten = [submit(client, "sh") for _ in range(10)]
    last = submit(client, "sh", after=[*ten, done_before])
    assert job(client, last)["after"] == [*ten, done_before]
    for i, upstream in enumerate(ten):
        _report(client, upstream, worker, _take(client, worker, upstream), "succeeded")
        status = job(client, last)["status"]
        assert status == ("pending" if i == 9 else "waiting"), (i, status)
        if i < 9:
            why = _why(client, last)
            assert why["reason"] == "after" and len(why["after"]) == 9 - i
    _take(client, worker, last)


def test_after_is_checked(client: httpx.Client, r: redis.Redis) -> None:
    resp = client.post("/job", json={"function_id": "f", "runtime": "sh",
                                     "after": ["zzzzzzzz"]})
    assert_error(resp, 422, "unknown_job")
    assert resp.json()["field"] == "after" and "zzzzzzzz" in resp.json()["detail"]
    for bad, code in (("x", "wrong_type"), (["BAD"], "invalid_id"), ([1], "invalid_id"),
                      (["a" * 8] * 101, "wrong_type")):
        assert_error(client.post("/job", json={"function_id": "f", "runtime": "sh",
                                               "after": bad}), 400, code)
    assert list(r.scan_iter("broker:job:*")) == []


# -- failure travels down --------------------------------------------------------------------

def test_an_upstream_failure_cascades_three_levels_with_the_cause(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    x, y = reserve(client), reserve(client)
    a = submit(client, "sh", data2_id=x)
    b = submit(client, "sh", data1_id=x, data2_id=y)
    c = submit(client, "sh", data1_id=y)
    d = submit(client, "sh", after=[c])
    bystander = submit(client, "sh")
    lease = _take(client, worker, a)
    client.put("/data", headers={"X-Data-Id": x, "X-Worker-Id": worker, "X-Lease": lease},
               files={"file": b"half-written"})
    _report(client, a, worker, lease, "failed", error="boom", retry=False)
    errors = {name: job(client, j) for name, j in (("b", b), ("c", c), ("d", d))}
    assert {e["status"] for e in errors.values()} == {"failed"}
    assert errors["b"]["error"] == f"upstream_failed: job {a} failed: boom"
    assert errors["c"]["error"].startswith(f"upstream_failed: job {b} failed: upstream_failed: "
                                           f"job {a} failed: boom")
    assert errors["d"]["error"].startswith(f"upstream_failed: job {c} failed:")
    assert job(client, bystander)["status"] == "pending"
    client.delete("/job", headers={"X-Job-Id": bystander})
    assert r.hgetall("broker:waiting_counts") in ({}, {"sh": "0"})
    assert r.llen("broker:cascade") == 0

    # Re-run b: its producer failed, so it waits again, in case a runs again; it does.
    assert put_job(client, b, {"status": "pending"}).status_code == 204
    assert job(client, b)["status"] == "waiting"
    assert put_job(client, a, {"status": "pending"}).status_code == 204
    lease = _take(client, worker, a)
    _report(client, a, worker, lease, "succeeded")
    assert job(client, b)["status"] == "pending"


def test_a_job_after_one_already_failed_is_created_failed(client: httpx.Client) -> None:
    worker = register(client, "sh")
    a = submit(client, "sh")
    _report(client, a, worker, _take(client, worker, a), "failed", error="nope", retry=False)
    late = job(client, submit(client, "sh", after=[a]))
    assert late["status"] == "failed"
    assert late["error"] == f"upstream_failed: job {a} failed"


def test_cancelling_or_deleting_an_upstream_or_its_reserved_data_fails_the_waiters(
        client: httpx.Client) -> None:
    cancelled, deleted = submit(client, "sh"), submit(client, "sh")
    x = reserve(client)
    on_cancelled = submit(client, "sh", after=[cancelled])
    on_deleted = submit(client, "sh", after=[deleted])
    on_data = submit(client, "sh", data1_id=x)
    put_job(client, cancelled, {"status": "cancelled"})
    client.delete("/job", headers={"X-Job-Id": deleted})
    assert client.delete("/data", headers={"X-Data-Id": x}).status_code == 204
    assert job(client, on_cancelled)["error"] == f"upstream_failed: job {cancelled} cancelled"
    assert job(client, on_deleted)["error"] == f"upstream_failed: job {deleted} deleted"
    assert job(client, on_data)["error"] == f"upstream_failed: data {x} deleted"


def test_a_waiting_job_can_be_cancelled_deleted_and_reordered_but_not_rewired(
        client: httpx.Client, r: redis.Redis) -> None:
    x = reserve(client)
    a, b = submit(client, "sh", data1_id=x), submit(client, "sh", data1_id=x)
    assert put_job(client, a, {"priority": 5, "runtime": "node"}).status_code == 204
    assert r.hgetall("broker:waiting_counts") == {"sh": "1", "node": "1"}
    assert_error(put_job(client, a, {"data1_id": ""}), 409, "field_locked")
    assert put_job(client, b, {"status": "cancelled"}).status_code == 204
    assert r.smembers(f"broker:waiters:data:{x}") == {a}
    assert client.delete("/job", headers={"X-Job-Id": a}).status_code == 204
    assert r.exists(f"broker:waiters:data:{x}") == 0
    assert r.hgetall("broker:waiting_counts") == {"sh": "0", "node": "0"}


# -- why isn't it running --------------------------------------------------------------------

def test_every_reason_is_given(client: httpx.Client) -> None:
    nobody = submit(client, "ruby")
    assert _why(client, nobody) == {
        "reason": "no_worker", "detail": "no live worker serves runtime ruby (never)"}
    gone = register(client, "ruby")
    client.delete("/worker", headers={"X-Worker-Id": gone})
    assert "last one seen" in _why(client, nobody)["detail"]

    worker = register(client, "sh")
    first, second = submit(client, "sh"), submit(client, "sh")
    queued = _why(client, second)
    assert queued["reason"] == "queued" and queued["position"] == 2
    assert queued["detail"] == "position 2 of 2 in sh; 1 live worker, 0 sh jobs running"
    lease = _take(client, worker, first)
    assert _why(client, second)["detail"].endswith("1 sh job running, all busy")
    assert job(client, first)["waiting"] is None  # running

    _report(client, first, worker, lease, "failed", error="flaky\nmore")
    backoff = _why(client, first)
    assert backoff["reason"] == "retry_backoff" and "last error: flaky" in backoff["detail"]

    client.put("/runtimes", json={"runtime": "sh", "paused": True})
    assert _why(client, second)["reason"] == "paused"
    later = submit(client, "sh", delay=600)
    assert _why(client, later)["reason"] == "scheduled"
    assert _why(client, submit(client, "sh", after=[second]))["reason"] == "after"
    assert _why(client, submit(client, "sh", data1_id=reserve(client)))["reason"] == "inputs"


def test_a_cycle_is_reported_by_waiting(client: httpx.Client) -> None:
    x, y = reserve(client), reserve(client)
    a = submit(client, "sh", data1_id=x, data2_id=y)
    b = submit(client, "sh", data1_id=y, data2_id=x)
    why = _why(client, a)
    assert why["cycle"] == [b, a]
    assert f"a cycle {a} -> {b} -> {a}" in why["detail"]


# -- several broker processes and real agents ------------------------------------------------

def test_a_fill_through_one_broker_wakes_a_worker_waiting_on_another(
        start_broker: Callable[..., BrokerProcess]) -> None:
    one, two = start_broker(), start_broker()
    with httpx.Client(base_url=one.url, timeout=20) as c1, \
            httpx.Client(base_url=two.url, timeout=20) as c2:
        worker = register(c2, "sh")
        x = reserve(c1)
        b = submit(c1, "sh", data1_id=x)
        answers: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(
            contract(c2, worker, wait=15)))
        waiting.start()
        until(lambda: c1.get("/metrics").status_code == 200 and
              "broker_jobs_waiting" in c1.get("/metrics").text)
        put(c1, x, b"go")
        waiting.join(20)
        assert answers and answers[0].status_code == 200
        assert answers[0].json()["job_id"] == b


def test_a_three_step_pipeline_runs_on_real_agents(served: httpx.Client, broker_proc: BrokerProcess,
                                                   tmp_path: Path) -> None:
    agent = AgentProcess(broker_proc.url, tmp_path / "agent.log", "--runtime", "python3",
                         "--concurrency", "2")
    try:
        agent.wait_for_log("registered as worker")
        c = served
        raw, cleaned = reserve(c), reserve(c)
        produce = c.post("/job", json={
            "runtime": "python3", "data2_id": raw,
            "function_id": upload(c, b"print('\\n'.join(str(i) for i in range(1, 6)))")})
        transform = c.post("/job", json={
            "runtime": "python3", "data1_id": raw, "data2_id": cleaned,
            "function_id": upload(c, b"import sys\nfor line in sys.stdin: "
                                     b"print(int(line) ** 2)")})
        report = c.post("/job", json={
            "runtime": "python3", "data1_id": cleaned,
            "function_id": upload(c, b"import sys\nprint('sum', sum(int(x) for x in "
                                     b"sys.stdin))")})
        ids = [resp.json()["job_id"] for resp in (produce, transform, report)]
        assert [job(c, j)["status"] for j in ids[1:]] == ["waiting", "waiting"]
        last = finished(c, ids[2], timeout=60)
        assert last["status"] == "succeeded", last
        assert output(c, last["data2_id"]) == b"sum 55\n"
        starts = [job(c, j)["started_at"] for j in ids]
        ends = [job(c, j)["finished_at"] for j in ids]
        assert ends[0] <= starts[1] and ends[1] <= starts[2]
    finally:
        agent.kill()


def test_fan_out_and_fan_in_on_real_agents(served: httpx.Client, broker_proc: BrokerProcess,
                                           tmp_path: Path) -> None:
    """One producer, ten consumers of its output (each adds its own number), and a job after
    all ten: the bytes flow, and the last job starts only once all ten have succeeded."""
    agent = AgentProcess(broker_proc.url, tmp_path / "agent.log", "--runtime", "python3",
                         "--concurrency", "4")
    try:
        agent.wait_for_log("registered as worker")
        c = served
        seed = reserve(c)
        producer = c.post("/job", json={"runtime": "python3", "data2_id": seed,
                                        "function_id": upload(c, b"print(100)")}).json()
        consumers = []
        for i in range(10):
            code = f"print(int(input()) + {i})".encode()
            consumers.append(c.post("/job", json={
                "runtime": "python3", "data1_id": seed,
                "function_id": upload(c, code)}).json()["job_id"])
        last = c.post("/job", json={"runtime": "python3", "after": consumers,
                                    "function_id": upload(c, b"print('all ten done')")})
        last_id = last.json()["job_id"]
        assert finished(c, last_id, timeout=90)["status"] == "succeeded"
        produced = finished(c, producer["job_id"])
        assert produced["status"] == "succeeded"
        assert all(job(c, j)["started_at"] >= produced["finished_at"] for j in consumers)
        outs = sorted(int(output(c, job(c, j)["data2_id"])) for j in consumers)
        assert outs == list(range(100, 110))
        last_start = job(c, last_id)["started_at"]
        assert all(job(c, j)["finished_at"] <= last_start for j in consumers)
        assert output(c, job(c, last_id)["data2_id"]) == b"all ten done\n"
    finally:
        agent.kill()
