"""The sweep each broker process runs: dead workers, overdue jobs and due retries are settled
within about a second even when no worker is asking for contracts. Safe with several broker
processes at once: each batch is one atomic script over whatever is due at that moment."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from broker.clock import now_ms
from broker.keys import Keys
from broker.scripts import Scripts

log = logging.getLogger("broker.sweep")

BATCH = 100


async def sweep_once(scripts: Scripts, keys: Keys) -> tuple[int, int, int, int]:
    """Settle everything due now, a batch at a time: (dead workers, overdue jobs, retries,
    tombstones)."""
    total = [0, 0, 0, 0]
    while True:
        counts = await scripts.sweep(
            [keys.workers, keys.deadlines, keys.delayed, keys.tombstones],
            [now_ms(), keys.prefixes, BATCH])
        total = [t + int(c) for t, c in zip(total, counts, strict=True)]
        if max(int(c) for c in counts) < BATCH:
            return total[0], total[1], total[2], total[3]


async def run(scripts: Scripts, keys: Keys, interval: float) -> None:
    while True:
        try:
            dead, overdue, retries, _tombstones = await sweep_once(scripts, keys)
            if dead or overdue:
                log.warning("sweep: %d dead worker(s) reaped, %d job(s) past their time limit",
                            dead, overdue)
            if retries:
                log.info("sweep: %d retried job(s) back on their queues", retries)
        except (RedisError, OSError) as exc:
            log.warning("sweep skipped: %s", exc)
        await asyncio.sleep(interval)
