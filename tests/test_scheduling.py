"""Scheduling against real Redis: priorities, jobs that run later, paused runtimes, and the
retention that removes finished jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import assert_error, contract, job, put_job, register, submit, until
from tests.inprocess import InProcess


def _claim_all(client: httpx.Client, worker: str) -> list[str]:
    """Job ids in the order the worker is handed them, reporting each done."""
    order = []
    while (given := contract(client, worker)).status_code == 200:
        order.append(given.json()["job_id"])
        put_job(client, order[-1], {"status": "succeeded"}, X_Worker_Id=worker)
    assert given.status_code == 204
    return order


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# -- priority --------------------------------------------------------------------------------

def test_higher_priority_goes_first_and_equal_priorities_stay_fifo(
        client: httpx.Client) -> None:
    worker = register(client, "sh")
    jobs = {name: submit(client, "sh", priority=p) for name, p in (
        ("a0", 0), ("b5", 5), ("c-3", -3), ("d5", 5), ("e0", 0), ("f100", 100),
        ("g-100", -100))}
    plain = submit(client, "sh")  # no priority at all: 0
    order = _claim_all(client, worker)
    names = {v: k for k, v in jobs.items()} | {plain: "plain"}
    assert [names[j] for j in order] == ["f100", "b5", "d5", "a0", "e0", "plain", "c-3",
                                         "g-100"]
    assert job(client, jobs["f100"])["priority"] == 100
    assert job(client, plain)["priority"] == 0


def test_a_worker_with_several_runtimes_gets_the_highest_head_then_the_oldest(
        client: httpx.Client) -> None:
    worker = register(client, "sh", "python3", "node")
    old_sh = submit(client, "sh", priority=1)
    new_py = submit(client, "python3", priority=2)
    tie_node = submit(client, "node", priority=1)  # same priority as old_sh, younger
    low_py = submit(client, "python3")
    assert _claim_all(client, worker) == [new_py, old_sh, tie_node, low_py]


def test_a_given_back_job_keeps_its_priority_and_its_place(client: httpx.Client) -> None:
    worker = register(client, "sh")
    first, second = submit(client, "sh", priority=3), submit(client, "sh", priority=3)
    low = submit(client, "sh")
    held = contract(client, worker).json()
    assert held["job_id"] == first
    assert put_job(client, first, {"status": "pending"}, X_Worker_Id=worker,
                   X_Lease=held["lease"]).status_code == 204
    assert _claim_all(client, worker) == [first, second, low]


def test_changing_a_pending_jobs_priority_keeps_its_place_among_equals(
        client: httpx.Client) -> None:
    worker = register(client, "sh")
    a, b, c = (submit(client, "sh") for _ in range(3))
    d = submit(client, "sh", priority=7)
    assert put_job(client, c, {"priority": 7}).status_code == 204
    assert put_job(client, b, {"priority": -1}).status_code == 204
    assert job(client, c)["priority"] == 7
    # c was created before d: among priority 7 it goes first.
    assert _claim_all(client, worker) == [c, d, a, b]


def test_batches_take_priorities_too(client: httpx.Client) -> None:
    worker = register(client, "sh")
    resp = client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh", "priority": p} for p in (0, 9, -9)]})
    low_first, high, lowest = (r["job_id"] for r in resp.json()["results"])
    assert _claim_all(client, worker) == [high, low_first, lowest]


# -- bad values ------------------------------------------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"priority": 101}, "priority"), ({"priority": -101}, "priority"),
    ({"priority": 1.5}, "priority"), ({"priority": True}, "priority"),
    ({"priority": "1"}, "priority"), ({"delay": -1}, "delay"),
    ({"delay": 400 * 86400}, "delay"), ({"delay": True}, "delay"), ({"delay": "5"}, "delay"),
    ({"run_at": "2026-12-05T10:00:00"}, "run_at"), ({"run_at": "tomorrow"}, "run_at"),
    ({"run_at": 1765000000}, "run_at"), ({"run_at": "2026-13-05T10:00:00Z"}, "run_at"),
    ({"run_at": "2126-12-05T10:00:00Z"}, "run_at"),
    ({"run_at": "2026-12-05T10:00:00Z", "delay": 5}, "delay"),
    ({"ttl": -1}, "ttl"), ({"ttl": 1.5}, "ttl"), ({"ttl": False}, "ttl"),
]


@pytest.mark.parametrize(("fields", "name"), BAD_FIELDS)
def test_a_bad_scheduling_field_is_400_naming_it_and_creates_nothing(
        client: httpx.Client, r: redis.Redis, fields: dict[str, Any], name: str) -> None:
    resp = client.post("/job", json={"function_id": "f", "runtime": "sh", **fields})
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == name
    batch = client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"},
        {"function_id": "f", "runtime": "sh", **fields}]})
    assert batch.status_code == 200
    first, second = batch.json()["results"]
    assert "job_id" in first and second["field"] == name
    assert len(list(r.scan_iter("broker:job:*"))) == 1


@pytest.mark.parametrize(("fields", "name"), [
    f for f in BAD_FIELDS if f[1] != "ttl"] + [({"ttl": 5}, "ttl")])
def test_a_bad_field_in_an_edit_is_400_and_changes_nothing(
        client: httpx.Client, fields: dict[str, Any], name: str) -> None:
    job_id = submit(client, "sh", priority=4)
    before = job(client, job_id)
    resp = put_job(client, job_id, fields)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == name
    assert job(client, job_id) == before


def test_scheduled_without_a_time_is_400(client: httpx.Client) -> None:
    job_id = submit(client, "sh")
    assert_error(put_job(client, job_id, {"status": "scheduled"}), 400, "missing_field")


# -- run later -------------------------------------------------------------------------------

def test_a_delayed_job_is_scheduled_until_due_then_a_waiting_worker_gets_it_in_time(
        served: httpx.Client) -> None:
    worker = register(served, "sh")
    submitted = time.time()
    job_id = submit(served, "sh", delay=1.5)
    scheduled = job(served, job_id)
    assert scheduled["status"] == "scheduled"
    due = datetime.fromisoformat(scheduled["run_at"]).timestamp()
    assert 1.4 < due - submitted < 1.7
    assert contract(served, worker).status_code == 204  # not handed out early
    given = contract(served, worker, wait=10)
    got = time.time()
    assert given.status_code == 200 and given.json()["job_id"] == job_id
    assert due - 0.05 <= got < due + 1.0, (got - due)
    assert job(served, job_id)["run_at"] == scheduled["run_at"]


def test_a_run_at_in_the_past_runs_now_and_in_the_future_waits(client: httpx.Client) -> None:
    worker = register(client, "sh")
    now = datetime.now(UTC)
    past = submit(client, "sh", run_at=_iso(now - timedelta(days=3)))
    later = submit(client, "sh", run_at=(now + timedelta(hours=1)).isoformat())
    offset = submit(client, "sh", run_at=(now + timedelta(hours=1)).astimezone(
        timezone(timedelta(hours=5, minutes=30))).isoformat())
    assert job(client, past)["status"] == "pending"
    assert job(client, later)["status"] == "scheduled"
    assert job(client, later)["run_at"] == job(client, offset)["run_at"]
    assert _claim_all(client, worker) == [past]


def test_a_scheduled_job_can_be_edited_run_now_cancelled_and_deleted(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    later = (datetime.now(UTC) + timedelta(hours=2))
    edited, run_now, cancelled, deleted = (
        submit(client, "sh", run_at=_iso(later)) for _ in range(4))
    assert r.zcard("broker:scheduled") == 4
    assert r.hget("broker:scheduled_counts", "sh") == "4"

    # Edit: a new time, a new priority, another runtime; still scheduled.
    assert put_job(client, edited, {"run_at": _iso(later + timedelta(hours=1)),
                                    "priority": 9, "runtime": "node"}).status_code == 204
    e = job(client, edited)
    assert (e["status"], e["priority"], e["runtime"]) == ("scheduled", 9, "node")
    assert r.hgetall("broker:scheduled_counts") == {"sh": "3", "node": "1"}
    # Its time moved to the past: it runs now.
    assert put_job(client, edited, {"delay": 0}).status_code == 204
    assert job(client, edited)["status"] == "pending"
    # "pending" on a scheduled job runs it now.
    assert put_job(client, run_now, {"status": "pending"}).status_code == 204
    assert put_job(client, cancelled, {"status": "cancelled"}).status_code == 204
    assert job(client, cancelled)["status"] == "cancelled"
    assert client.delete("/job", headers={"X-Job-Id": deleted}).status_code == 204
    assert r.zcard("broker:scheduled") == 0
    assert r.hgetall("broker:scheduled_counts") == {"sh": "0", "node": "0"}
    assert _claim_all(client, worker) == [run_now]
    node = register(client, "node")
    assert _claim_all(client, node) == [edited]


def test_a_pending_job_can_be_put_off_and_a_finished_one_rerun_later(
        client: httpx.Client) -> None:
    worker = register(client, "sh")
    put_off, done = submit(client, "sh"), submit(client, "sh")
    assert _claim_all(client, worker) == [put_off, done]
    a = submit(client, "sh")
    assert put_job(client, a, {"status": "scheduled", "delay": 3600}).status_code == 204
    assert job(client, a)["status"] == "scheduled"
    assert put_job(client, done, {"status": "pending", "delay": 3600}).status_code == 204
    rerun = job(client, done)
    assert (rerun["status"], rerun["attempts"], rerun["finished_at"]) == ("scheduled", 0, None)
    assert contract(client, worker).status_code == 204


def test_get_runtimes_counts_scheduled_jobs(client: httpx.Client) -> None:
    submit(client, "sh", delay=600)
    submit(client, "sh")
    rows = {row["runtime"]: row for row in client.get("/runtimes").json()["runtimes"]}
    assert rows["sh"] == {"runtime": "sh", "pending": 1, "running": 0, "scheduled": 1,
                          "waiting": 0, "workers": 0, "paused": False,
                          "warning": "1 pending job(s) and no live worker serves sh"}


# -- pause -----------------------------------------------------------------------------------

def _pause(client: httpx.Client, runtime: str, paused: bool) -> None:
    resp = client.put("/runtimes", json={"runtime": runtime, "paused": paused})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"runtime": runtime, "paused": paused}


def test_a_paused_runtime_hands_out_nothing_and_resuming_wakes_a_waiting_worker(
        served: httpx.Client) -> None:
    sh_only, both = register(served, "sh"), register(served, "sh", "python3")
    first = submit(served, "sh")
    _pause(served, "sh", True)
    second = submit(served, "sh")
    py = submit(served, "python3")
    assert contract(served, sh_only).status_code == 204
    assert contract(served, both).json()["job_id"] == py  # its other runtime still runs
    rows = {row["runtime"]: row for row in served.get("/runtimes").json()["runtimes"]}
    assert rows["sh"]["paused"] is True and rows["sh"]["pending"] == 2
    assert rows["python3"]["paused"] is False
    metrics = served.get("/metrics").text
    assert 'broker_runtime_paused{runtime="sh"} 1.0' in metrics

    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(
        contract(served, sh_only, wait=10)))
    waiting.start()
    time.sleep(0.3)  # let it wait; the resume must wake it, not the poll's end
    started = time.monotonic()
    _pause(served, "sh", False)
    waiting.join(15)
    assert answers[0].status_code == 200 and answers[0].json()["job_id"] == first
    assert time.monotonic() - started < 5  # woken, not timed out after 10 s
    assert contract(served, sh_only).json()["job_id"] == second


def test_a_pause_outlasts_a_broker_restart(
        start_broker: Callable[..., BrokerProcess], tmp_path: Any) -> None:
    broker = start_broker()
    with httpx.Client(base_url=broker.url, timeout=10) as c:
        worker = register(c, "sh")
        submit(c, "sh")
        _pause(c, "sh", True)
    broker.stop()
    again = start_broker()
    with httpx.Client(base_url=again.url, timeout=10) as c:
        rows = {row["runtime"]: row for row in c.get("/runtimes").json()["runtimes"]}
        assert rows["sh"]["paused"] is True
        assert contract(c, worker).status_code == 204
        _pause(c, "sh", False)
        assert contract(c, worker).status_code == 200


def test_pausing_is_checked(client: httpx.Client) -> None:
    assert_error(client.put("/runtimes", json={"runtime": "sh"}), 400, "wrong_type")
    assert_error(client.put("/runtimes", json={"runtime": "sh", "paused": 1}), 400,
                 "wrong_type")
    assert_error(client.put("/runtimes", json={"paused": True}), 400, "missing_field")
    assert_error(client.put("/runtimes", json={"runtime": "a b", "paused": True}), 400,
                 "invalid_runtime")
    assert_error(client.put("/runtimes", json={"runtime": "sh", "paused": True, "x": 1}),
                 400, "unknown_field")
    _pause(client, "never-named", True)  # a runtime may be paused before it is used
    rows = {row["runtime"]: row for row in client.get("/runtimes").json()["runtimes"]}
    assert rows["never-named"]["paused"] is True


# -- retention -------------------------------------------------------------------------------

def _finish(client: httpx.Client, worker: str, status: str = "succeeded") -> str:
    given = contract(client, worker).json()
    put_job(client, given["job_id"], {"status": status, "retry": False},
            X_Worker_Id=worker)
    return str(given["job_id"])


def _traces(r: redis.Redis, job_id: str) -> list[str]:
    """Every key or sorted set that still names the job."""
    found = [k for k in r.scan_iter("broker:*") if job_id in k]
    for key in r.scan_iter("broker:*"):
        kind = r.type(key)
        if (kind == "zset" and r.zscore(key, job_id) is not None) or (
                kind == "string" and job_id in (r.get(key) or "")):
            found.append(key)
    return found


def test_a_finished_job_goes_with_every_trace_after_its_ttl_and_a_rerun_one_stays(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    client = app_with(BROKER_SWEEP_INTERVAL="0.1")
    worker = register(client, "sh")
    keyed = client.post("/job", json={"function_id": "f", "runtime": "sh", "ttl": 1},
                        headers={"Idempotency-Key": "retention-1"}).json()["job_id"]
    rerun = submit(client, "sh", ttl=1)
    kept = submit(client, "sh")  # the broker's 7 days
    for _ in range(3):
        _finish(client, worker)
    assert job(client, keyed)["ttl"] == 1 and job(client, kept)["ttl"] is None
    assert r.exists("broker:idem:job:retention-1")
    assert put_job(client, rerun, {"status": "pending"}).status_code == 204
    until(lambda: client.get("/job", headers={"X-Job-Id": keyed}).status_code == 404,
          timeout=10)
    assert _traces(r, keyed) == []
    assert job(client, rerun)["status"] == "pending"
    assert job(client, kept)["status"] == "succeeded"
    assert r.zscore("broker:expiry", kept) is not None
    assert r.zscore("broker:expiry", rerun) is None


def test_the_broker_job_ttl_applies_to_every_finished_status_and_zero_keeps_them(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    client = app_with(BROKER_SWEEP_INTERVAL="0.1", BROKER_JOB_TTL="1")
    worker = register(client, "sh")
    ids = [submit(client, "sh") for _ in range(3)] + [submit(client, "sh", ttl=0)]
    done, failed = _finish(client, worker), _finish(client, worker, "failed")
    put_job(client, ids[2], {"status": "cancelled"})
    forever = _finish(client, worker)
    assert forever == ids[3]
    until(lambda: all(client.get("/job", headers={"X-Job-Id": j}).status_code == 404
                      for j in (done, failed, ids[2])), timeout=10)
    assert job(client, forever)["status"] == "succeeded"
    assert r.zcard("broker:expiry") == 0
    assert r.smembers("broker:runtimes") == {"sh"}  # the worker and the kept job name it
    for status in ("succeeded", "failed", "cancelled"):
        members = set(r.zrange(f"broker:index:{status}", 0, -1))
        assert members == ({forever} if status == "succeeded" else set())


def test_a_plain_job_keeps_no_priority_field_and_echoing_priority_0_changes_nothing(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    assert r.hget(f"broker:job:{job_id}", "priority") is None
    held = contract(client, worker).json()
    assert put_job(client, job_id, {"priority": 0}).status_code == 204  # running: an echo
    assert_error(put_job(client, job_id, {"priority": 1}), 409, "field_locked")
    assert put_job(client, job_id, {"status": "succeeded", "priority": 0},
                   X_Worker_Id=worker, X_Lease=held["lease"]).status_code == 204


def test_the_data_ttl_removes_only_data_no_existing_job_names(
        app_with: Callable[..., InProcess], r: redis.Redis, tmp_path: Any) -> None:
    from tests.helpers import upload

    client = app_with(BROKER_DATA_TTL="1", BROKER_DATA_SWEEP_INTERVAL="0.2")
    worker = register(client, "sh")
    unnamed, named, once_named, output = (upload(client, b"x") for _ in range(4))
    older = "legacy00"
    (tmp_path / "data" / older).write_bytes(b"x")
    r.hset(f"broker:data:{older}", mapping={"data_id": older, "state": "ready", "size": 1,
                                            "sha256": "x", "created_at": 1, "updated_at": 1})
    kept = submit(client, "sh", data1_id=named, function_id=named)
    gone = submit(client, "sh", data1_id=once_named, data2_id=output)
    assert r.hget(f"broker:data:{named}", "jobs") == "1"  # one job, however many fields
    assert r.hget(f"broker:data:{once_named}", "jobs") == "1"
    assert client.delete("/job", headers={"X-Job-Id": gone}).status_code == 204
    assert r.hget(f"broker:data:{once_named}", "jobs") == "0"

    def exists(data_id: str) -> bool:
        return client.get("/data", headers={"X-Data-Id": data_id}).status_code == 200

    until(lambda: not exists(unnamed) and not exists(once_named) and not exists(output),
          timeout=15)
    assert exists(named) and job(client, kept)["status"] == "pending"
    assert r.exists(f"broker:data:{older}")  # made before counting: never expired
    files = {p.name for p in (tmp_path / "data").iterdir()}
    assert named in files and not {unnamed, once_named, output} & files
    assert contract(client, worker).json()["job_id"] == kept
