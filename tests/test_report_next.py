"""Report and take the next (PUT /job?next=N): a worker's final report and its next contract in
one request and one script (lua/report_next.lua), against real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import redis
from redis.asyncio import Redis

from broker import config
from broker.store.jobs import Jobs, JobUpdate, Reported
from broker.store.keys import Keys
from broker.store.scripts import Scripts
from tests.helpers import assert_error, contract, job, register, submit

SEED_FIELDS = {"worker_id", "job_id", "data1_id", "data2_id", "function_id", "runtime",
               "lease", "attempts", "max_attempts", "timeout", "started_at",
               "heartbeat_interval"}


def report(client: httpx.Client, c: dict[str, Any], body: dict[str, Any],
           **params: Any) -> httpx.Response:
    return client.put("/job", json=body, params=params, headers={
        "X-Job-Id": c["job_id"], "X-Worker-Id": c["worker_id"], "X-Lease": c["lease"]})


def test_a_final_report_takes_the_next_contract_as_the_contract_would_answer_it(
        client: httpx.Client) -> None:
    worker = register(client, "py")
    a, b, c, d = (submit(client, "py") for _ in range(4))
    first = contract(client, worker).json()
    assert first["job_id"] == a
    got = report(client, first, {"status": "succeeded"}, next=1)
    assert got.status_code == 200, got.text
    second = got.json()
    assert set(second) == SEED_FIELDS and second["job_id"] == b  # the seed's shape, in order
    assert job(client, a)["status"] == "succeeded"
    assert job(client, b)["status"] == "running" and second["lease"] != first["lease"]
    many = report(client, second, {"status": "failed", "error": "boom", "retry": False},
                  next=5)
    assert many.status_code == 200
    assert [x["job_id"] for x in many.json()["contracts"]] == [c, d]
    assert job(client, b)["status"] == "failed"
    last = many.json()["contracts"]
    assert report(client, last[0], {"status": "succeeded"}, next=1).status_code == 204
    done = report(client, last[1], {"status": "succeeded"}, next=3)
    assert done.status_code == 204  # nothing left: as the contract answers
    assert [job(client, x)["status"] for x in (c, d)] == ["succeeded", "succeeded"]


def test_a_stale_lease_is_refused_and_takes_no_work(client: httpx.Client) -> None:
    worker = register(client, "py")
    a = submit(client, "py")
    held = contract(client, worker).json()
    waiting = submit(client, "py")
    stale = {**held, "lease": "not-the-lease"}
    assert_error(report(client, stale, {"status": "succeeded"}, next=1), 409, "lease_lost")
    assert job(client, waiting)["status"] == "pending"  # nothing taken
    assert job(client, a)["status"] == "running"


def test_a_cancelled_jobs_report_still_takes_the_next(client: httpx.Client) -> None:
    worker = register(client, "py")
    a = submit(client, "py")
    held = contract(client, worker).json()
    b = submit(client, "py")
    cancel = client.put("/job", json={"status": "cancelled"}, headers={"X-Job-Id": a})
    assert cancel.status_code == 204
    got = report(client, held, {"status": "succeeded"}, next=1)
    assert got.status_code == 200 and got.headers["X-Report-Error"] == "cancelled"
    assert got.json()["job_id"] == b
    assert job(client, a)["status"] == "cancelled"


def test_next_is_only_for_a_workers_final_report(client: httpx.Client) -> None:
    worker = register(client, "py")
    submit(client, "py")
    held = contract(client, worker).json()
    for params, status in (({"next": 1}, "running"), ({"next": 0}, "succeeded"),
                           ({"next": 101}, "succeeded"), ({"next": "x"}, "succeeded")):
        assert_error(report(client, held, {"status": status}, **params), 400, "invalid_query")
    by_requester = client.put("/job", params={"next": 1}, json={"status": "cancelled"},
                              headers={"X-Job-Id": held["job_id"]})
    assert_error(by_requester, 400, "invalid_query")
    assert job(client, held["job_id"])["status"] == "running"  # nothing was done


def test_with_wait_the_report_holds_until_a_job_arrives(client: httpx.Client) -> None:
    worker = register(client, "py")
    submit(client, "py")
    held = contract(client, worker).json()
    later: list[str] = []
    timer = threading.Timer(0.5, lambda: later.append(submit(client, "py")))
    timer.start()
    started = time.monotonic()
    got = report(client, held, {"status": "succeeded"}, next=1, wait=10)
    timer.join()
    assert got.status_code == 200 and got.json()["job_id"] == later[0]
    assert time.monotonic() - started < 10  # woken by the job, not by the end of the wait


def test_a_replayed_call_answers_the_same_contracts_and_reports_once(
        client: httpx.Client, redis_url: str, r: redis.Redis) -> None:
    """What redis-py does when an answer is lost: the same script call again, with the same
    lease. The report is made once and the same jobs are answered; none is taken twice."""
    worker = register(client, "py")
    a, b, c = (submit(client, "py") for _ in range(3))
    held = contract(client, worker).json()
    settings = config.load({}, {"REDIS_URL": redis_url})

    async def twice() -> tuple[Reported, Reported]:
        conn = Redis.from_url(redis_url, decode_responses=True)
        try:
            jobs = Jobs(conn, Scripts(conn), Keys(), settings)
            u = JobUpdate(role="worker", status="succeeded", worker_id=worker,
                          lease=held["lease"])
            return (await jobs.report_next(a, u, "replayed-lease", 2, 0),
                    await jobs.report_next(a, u, "replayed-lease", 2, 0))
        finally:
            await conn.aclose()
    first, second = asyncio.run(twice())
    assert [c.job_id for c in first.claim.contracts] == [b, c]
    assert [(x.job_id, x.lease) for x in second.claim.contracts] == [
        (x.job_id, x.lease) for x in first.claim.contracts]
    assert job(client, a)["status"] == "succeeded"
    assert len(r.xrange(Keys().events)) == 3 + 1 + 1 + 2  # created x3, running, ended, 2 taken


def test_when_redis_is_full_the_report_is_made_alone_and_takes_nothing(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "py")
    a = submit(client, "py")
    held = contract(client, worker).json()
    b = submit(client, "py")
    r.config_set("maxmemory", "1")  # full: only scripts flagged allow-oom may run
    try:
        got = report(client, held, {"status": "succeeded"}, next=1)
    finally:
        r.config_set("maxmemory", "0")
    assert got.status_code == 204, got.text
    assert job(client, a)["status"] == "succeeded"
    assert job(client, b)["status"] == "pending"


def test_a_batch_of_reports_takes_the_next_jobs_beside_its_results(
        client: httpx.Client) -> None:
    worker = register(client, "py")
    ids = [submit(client, "py") for _ in range(5)]
    held = contract(client, worker, max=3).json()["contracts"]
    reports = [{"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"}
               for c in held[:2]]
    reports.append({"job_id": held[2]["job_id"], "lease": "stale", "status": "succeeded"})
    got = client.put("/jobs", params={"next": 5}, json={"reports": reports},
                     headers={"X-Worker-Id": worker})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["results"][:2] == [{"ok": True}, {"ok": True}]
    assert body["results"][2]["error"] == "lease_lost"  # refused alone; the batch still takes
    assert [c["job_id"] for c in body["contracts"]] == ids[3:]
    assert all(set(c) == SEED_FIELDS for c in body["contracts"])
    again = [{"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"}
             for c in [held[2], *body["contracts"]]]
    last = client.put("/jobs", params={"next": 2}, json={"reports": again},
                      headers={"X-Worker-Id": worker})
    assert last.json() == {"results": [{"ok": True}] * 3, "contracts": []}
    assert [job(client, x)["status"] for x in ids] == ["succeeded"] * 5
    plain = client.put("/jobs", json={"reports": again}, headers={"X-Worker-Id": worker})
    assert set(plain.json()) == {"results"}  # without next, the seed's shape
