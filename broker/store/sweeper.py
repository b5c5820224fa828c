"""The sweep each broker process runs: dead workers, overdue jobs, due retries (and scheduled
jobs the timer missed) are settled within about a second even when no worker is asking for
contracts, and finished jobs past their retention are removed, a bounded batch per script.
Safe with several broker processes at once: each batch is one atomic script over whatever is
due at that moment."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields

from redis.exceptions import RedisError

from broker.clock import now_ms
from broker.store.keys import Keys
from broker.store.scripts import Scripts

log = logging.getLogger("broker.sweep")

BATCH = 100


@dataclass
class Swept:
    dead_workers: int = 0
    overdue_jobs: int = 0
    retries: int = 0
    tombstones: int = 0
    expired_leases: int = 0
    scheduled: int = 0
    expired_jobs: int = 0
    failed_downstream: int = 0


async def sweep_once(scripts: Scripts, keys: Keys, ctx: str, outage_ms: int) -> Swept:
    """Settle everything due now, a batch at a time. `ctx`: Keys.context."""
    total = [0] * len(fields(Swept))
    while True:
        counts = await scripts.sweep(
            [keys.workers, keys.deadlines, keys.delayed, keys.tombstones],
            [now_ms(), ctx, BATCH, outage_ms])
        total = [t + int(c) for t, c in zip(total, counts, strict=True)]
        if max(int(c) for c in counts) < BATCH:
            return Swept(*total)


async def run(scripts: Scripts, keys: Keys, ctx: str, interval: float, outage_ms: int) -> None:
    while True:
        try:
            swept = await sweep_once(scripts, keys, ctx, outage_ms)
            dead, overdue, lost = swept.dead_workers, swept.overdue_jobs, swept.expired_leases
            if dead or overdue or lost:
                log.warning("sweep: %d dead worker(s) reaped, %d job(s) past their time limit, "
                            "%d lease(s) run out without a heartbeat", dead, overdue, lost)
            retries = swept.retries
            if retries:
                log.info("sweep: %d retried job(s) back on their queues", retries)
            if swept.scheduled:
                log.info("sweep: %d scheduled job(s) due, queued", swept.scheduled)
            if swept.expired_jobs:
                log.info("sweep: %d finished job(s) past their retention removed",
                         swept.expired_jobs)
        except (RedisError, OSError) as exc:
            log.warning("sweep skipped: %s", exc)
        await asyncio.sleep(interval)
