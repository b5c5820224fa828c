"""arq, polling every 10 ms (its default, 500 ms, caps it near 200 jobs/s here)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import run_worker

from bench.peers import counter

POLL_DELAY = 0.01


async def noop(ctx: dict[str, Any]) -> None:
    counter.tick()


def _settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ["REDIS_URL"])


class WorkerSettings:
    functions = [noop]
    poll_delay = POLL_DELAY
    log_results = False


def worker() -> None:
    run_worker(WorkerSettings, redis_settings=_settings())  # type: ignore[arg-type]


async def produce(backlog: Any) -> None:
    """Enqueue in rounds of 50 while the backlog (bench.peers.child.Backlog) allows."""
    pool = await create_pool(_settings())
    while True:
        if not await asyncio.to_thread(backlog.more):
            await asyncio.sleep(0.01)
            continue
        await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(50)))
        backlog.add(50)
