"""Scheduled jobs queued on time: one timer per broker process, no polling.

A scheduled job (run_at, delay) sits in a sorted set by its due time. Each broker process keeps
a timer for the earliest due time: when it fires, one script (lua/promote.lua) makes every due
job pending, wakes a worker waiting on its runtime, and answers the next due time, which sets
the timer again. A job that becomes the earliest is published on the schedule channel by the
script that scheduled it, so every process moves its timer forward (store/wakeups.py hears
it); a process that scheduled it itself is told at once. Several processes may fire for the
same moment: the first promotes, the others find nothing. When the subscription drops and
comes back, the timer is read from Redis again; and the sweep promotes anything due besides, so
a missed message costs at most a sweep interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from broker.clock import now_ms
from broker.store.keys import Keys
from broker.store.scripts import Scripts

log = logging.getLogger("broker.schedule")

BATCH = 500  # jobs promoted by one script call
IDLE = 300.0  # seconds the timer sleeps with nothing scheduled before it reads Redis again


class Schedule:
    def __init__(self, scripts: Scripts, keys: Keys, ctx: str) -> None:
        self._scripts = scripts
        self._keys = keys
        self._ctx = ctx
        self._next: int | None = None  # the earliest due time known, ms
        self._changed = asyncio.Event()

    def due_at(self, ms: int | None) -> None:
        """A job is due at `ms`; None: anything may have changed, read Redis again."""
        if ms is None or self._next is None or ms < self._next:
            self._next = ms
            self._changed.set()

    async def promote(self) -> tuple[int, int | None]:
        """Make what is due now pending; answer how many, and when the next is due."""
        promoted, following = await self._scripts.promote(
            [self._keys.scheduled], [now_ms(), self._ctx, BATCH])
        return int(promoted), int(following) if following else None

    async def run(self) -> None:
        while True:
            self._changed.clear()  # a due_at from here on is not missed: it sets it again
            try:
                promoted, self._next = await self.promote()
                if promoted >= BATCH:
                    continue
                delay = IDLE if self._next is None else (self._next - now_ms() + 1) / 1000
            except (RedisError, OSError) as exc:
                log.warning("scheduled jobs not promoted: %s; retrying in 1s", exc)
                delay = 1.0
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(delay, IDLE))
