"""GET /workers/dead: the workers the sweep or a claim declared dead, newest first, each with
the jobs taken from it; Redis keeps the last 100."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from broker.clock import now_ms
from broker.store.keys import Keys
from broker.store.scripts import source
from tests.helpers import contract, job, register, submit, until
from tests.inprocess import InProcess
from tests.test_openapi import check

KEYS = Keys()


def dead(client: httpx.Client) -> list[dict[str, object]]:
    resp = client.get("/workers/dead")
    check(resp)
    workers: list[dict[str, object]] = resp.json()["workers"]
    return workers


def test_a_dead_worker_is_listed_with_the_jobs_taken_from_it(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_WORKER_TIMEOUT="0.5", BROKER_SWEEP_INTERVAL="0.1")
    busy, idle = register(c, "sh"), register(c, "sh", "python3")
    job_id = submit(c, "sh")
    assert contract(c, busy).json()["job_id"] == job_id
    until(lambda: len(dead(c)) == 2)
    found = {w["worker_id"]: w for w in dead(c)}
    assert found[busy]["gave_back"] == [job_id] and found[idle]["gave_back"] == []
    assert found[idle]["Runtime"] == ["sh", "python3"]
    for w in found.values():
        assert isinstance(w["registered_at"], str) and isinstance(w["last_seen"], str)
        assert isinstance(w["dead_at"], str) and w["registered_at"] <= w["last_seen"] < w[
            "dead_at"]
    assert job(c, job_id)["status"] == "pending"


def sweep_later(r: redis.Redis, hours: int) -> None:
    """Run the sweep script as if `hours` had passed (with no outage to absorb), so every
    worker registered now is past its deadline."""
    keys = [KEYS.workers, KEYS.deadlines, KEYS.delayed, KEYS.tombstones]
    args = [now_ms() + hours * 3_600_000, KEYS.context(0), 1000, 10**12]
    r.eval(source("sweep"), len(keys), *keys, *args)


def test_the_last_100_dead_workers_are_kept_newest_first(
        client: httpx.Client, r: redis.Redis) -> None:
    earlier = [register(client, "sh") for _ in range(100)]
    sweep_later(r, 1)
    later = [register(client, "sh") for _ in range(5)]
    sweep_later(r, 2)
    assert r.llen(KEYS.dead_workers) == 100
    listed = [w["worker_id"] for w in dead(client)]
    assert len(listed) == 50
    assert set(listed[:5]) == set(later) and set(listed[5:]) <= set(earlier)
    assert client.get("/workers").json()["workers"] == []
