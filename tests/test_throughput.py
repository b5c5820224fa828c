"""GET /throughput: jobs handed out and finished per minute, counted by the scripts that make
those changes, one job at a time and in batches alike."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import redis

from broker.clock import now_ms
from broker.store.keys import Keys
from tests.helpers import contract, put_job, register, submit
from tests.test_openapi import check

KEYS = Keys()
FIELDS = ("handed_out", "succeeded", "failed", "cancelled")


def minute_now() -> int:
    return now_ms() // 60_000


def counted_since(client: httpx.Client, first: int) -> dict[str, int]:
    """The counts of the minutes from `first` on (one, unless the test crossed a minute), after
    checking the answer's shape: 60 minutes, oldest first, one minute apart, the current last."""
    resp = client.get("/throughput")
    last = minute_now()
    check(resp)
    minutes: list[dict[str, Any]] = resp.json()["minutes"]
    starts = [datetime.fromisoformat(m["minute"]) for m in minutes]
    assert len(minutes) == 60
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(starts))
    assert starts[-1].timestamp() in {last * 60, (last - 1) * 60}
    recent = [m for m, start in zip(minutes, starts, strict=True)
              if start.timestamp() >= first * 60]
    assert all(m[f] == 0 for m in minutes if m not in recent for f in FIELDS)
    return {f: sum(m[f] for m in recent) for f in FIELDS}


def assert_minute_keys_expire(r: redis.Redis, first: int) -> None:
    ttls = [r.ttl(KEYS.minute(n)) for n in range(first, minute_now() + 1)]
    assert any(t > 0 for t in ttls)
    assert all(t == -2 or 0 < t <= 7200 for t in ttls), ttls


def test_jobs_handed_out_and_finished_one_at_a_time_are_counted_in_their_minute(
        client: httpx.Client, r: redis.Redis) -> None:
    first = minute_now()
    worker = register(client, "sh")
    for _ in range(2):
        submit(client, "sh")
    cancelled = submit(client, "sh")
    put_job(client, cancelled, {"status": "cancelled"})
    for status in ("succeeded", "failed"):
        taken = contract(client, worker).json()
        resp = put_job(client, taken["job_id"], {"status": status, "retry": False},
                       X_Worker_Id=worker, X_Lease=taken["lease"])
        assert resp.status_code == 204, resp.text
    assert counted_since(client, first) == {
        "handed_out": 2, "succeeded": 1, "failed": 1, "cancelled": 1}
    assert_minute_keys_expire(r, first)


def test_a_batch_claim_and_a_batch_report_count_each_job(
        client: httpx.Client, r: redis.Redis) -> None:
    first = minute_now()
    worker = register(client, "sh")
    created = client.post("/jobs", json={"jobs": [{"function_id": "f", "runtime": "sh"}] * 6})
    assert created.status_code == 200
    taken = contract(client, worker, max=5).json()["contracts"]
    assert len(taken) == 5
    reported = client.put("/jobs", headers={"X-Worker-Id": worker}, json={"reports": [
        {"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"} for c in taken]})
    assert [item.get("ok") for item in reported.json()["results"]] == [True] * 5
    assert counted_since(client, first) == {
        "handed_out": 5, "succeeded": 5, "failed": 0, "cancelled": 0}
    assert_minute_keys_expire(r, first)  # the batch created the hash: its TTL too

    # The TTL is set when a field is created, not at every count.
    minute = minute_now()
    r.expire(KEYS.minute(minute), 100)
    contract(client, worker)
    if minute_now() == minute:
        assert 0 < r.ttl(KEYS.minute(minute)) <= 100
