"""Typed store methods for workers and contracts: one per script, return codes mapped to errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from broker import ids
from broker.clock import now_ms
from broker.config import Settings, heartbeat_interval, outage_threshold_ms
from broker.errors import NotFound
from broker.store.keys import Keys
from broker.store.scripts import Scripts
from broker.wire import Contract, iso


@dataclass
class Claim:
    """A claim's outcome: its contracts, or none and the runtimes to wait on; and how long
    each job handed out had waited since it was submitted, seconds."""

    contracts: tuple[Contract, ...]
    runtimes: tuple[str, ...]
    more: bool = False
    waited: tuple[float, ...] = ()


def unknown_worker(worker_id: str) -> NotFound:
    return NotFound(f"no worker {worker_id}: register with POST /worker first",
                    code="unknown_worker")


# How many dead workers, overdue jobs and due retries a claim settles before it pops.
SETTLE_BATCH = 10
# Workers whose runtimes a process remembers (Workers.learn_runtimes) before it starts over.
KNOWN_WORKERS = 10_000


class Workers:
    def __init__(self, redis: Redis, scripts: Scripts, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.ctx = keys.context_of(settings)
        self.timeout_ms = int(settings.worker_timeout * 1000)
        self.lease_ms = int(settings.lease_timeout * 1000)
        self.outage_ms = outage_threshold_ms(settings)
        self.heartbeat_interval = heartbeat_interval(settings)
        self.max_runtimes = settings.max_runtimes
        self._runtimes: dict[str, tuple[str, ...]] = {}

    def runtimes_known(self, worker_id: str) -> tuple[str, ...] | None:
        """The runtimes of a worker this process has claimed for, or None."""
        return self._runtimes.get(worker_id)

    def learn_runtimes(self, worker_id: str, runtimes: tuple[str, ...]) -> None:
        """Remember a worker's runtimes, as a claim answered them: they never change after
        it registers, so a worker that asks to wait again can be a waiter before its claim."""
        if worker_id not in self._runtimes and runtimes:
            if len(self._runtimes) >= KNOWN_WORKERS:
                self._runtimes.clear()
            self._runtimes[worker_id] = runtimes

    async def register(self, runtimes: list[str]) -> str:
        k = self.keys
        for _ in range(ids.MAX_DRAWS):
            worker_id = ids.new_id()
            now = now_ms()
            result = await self.scripts.register(
                [k.worker(worker_id), k.workers],
                [worker_id, json.dumps(runtimes), now, now + self.timeout_ms, self.ctx,
                 self.max_runtimes],
            )
            if result[0] == "ok":
                return worker_id
            if result[0] == "too_many_runtimes":
                raise ids.too_many_runtimes(self.max_runtimes)
        raise RuntimeError("could not draw a free worker id")

    async def get(self, worker_id: str) -> dict[str, str]:
        worker: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
            self.keys.worker(worker_id))
        if not worker:
            raise unknown_worker(worker_id)
        return worker

    async def touch(self, worker_id: str) -> None:
        """Count a request carrying `worker_id` as hearing from that worker."""
        now = now_ms()
        await self.scripts.touch([self.keys.worker(worker_id), self.keys.workers],
                                 [worker_id, now, now + self.timeout_ms])

    async def unregister(self, worker_id: str) -> int:
        k = self.keys
        result = await self.scripts.unregister(
            [k.worker(worker_id), k.worker_jobs(worker_id), k.workers, k.deadlines],
            [worker_id, now_ms(), self.ctx],
        )
        if result[0] == "unknown_worker":
            raise unknown_worker(worker_id)
        return int(result[1])

    async def claim(self, worker_id: str, lease: str, wait: float = 0.0,
                    count: int = 1) -> Claim:
        """Claim up to `count` jobs under `lease` (one per request, so a replayed claim answers
        the same jobs); the worker counts as alive through the `wait` it asked for."""
        k = self.keys
        now = now_ms()
        result = await self.scripts.claim(
            [k.worker(worker_id), k.worker_jobs(worker_id), k.workers, k.deadlines, k.delayed],
            [worker_id, now, lease, now + self.timeout_ms, self.ctx, SETTLE_BATCH,
             int(wait * 1000), count, self.lease_ms, self.outage_ms],
        )
        return claim_of(result, worker_id, now, self.heartbeat_interval)


def claim_of(result: Any, worker_id: str, now: int, interval: float) -> Claim:
    """claim.lua's answer (lua/lib/take.lua) as a Claim; an unknown worker raises."""
    code = result[0]
    if code == "unknown_worker":
        raise unknown_worker(worker_id)
    if code == "empty":
        return Claim((), tuple(orjson.loads(result[1])))
    runtimes, more, n = result[1], result[2], int(result[3])
    rows = [result[4 + 10 * i: 14 + 10 * i] for i in range(n)]
    started = iso(now)
    contracts = tuple(
        Contract(worker_id, job_id, data1_id, data2_id, function_id, runtime, job_lease,
                 int(attempts), int(max_attempts), float(timeout), started, interval)
        for (job_id, job_lease, data1_id, data2_id, function_id, runtime, attempts, timeout,
             max_attempts, _) in rows)
    waited = tuple(max(0, now - int(row[9])) / 1000 for row in rows)
    return Claim(contracts, tuple(orjson.loads(runtimes)), bool(more), waited)
