"""The live feed: one reader per broker process follows the events stream and hands each
event to the subscriptions it matches.

However many clients follow GET /events or a job's log, a process holds one blocking XREAD
connection for them all (and the wake-up subscription it has anyway, for the log channel);
the reader runs while someone subscribes and stops a while after the last one leaves. A
subscription that falls more than QUEUE_SIZE events behind is dropped: its client reconnects
with Last-Event-ID and catches up from the stream, which costs the slow client, not the
others. A coalescing subscription (GET /events?every=N) is never dropped for that: it only
needs to know that something changed, so what does not fit is counted, not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from broker import wire
from broker.store.keys import Keys

log = logging.getLogger("broker.feed")

QUEUE_SIZE = 1000  # events a subscription may have waiting before it is dropped
BATCH = 500  # events one XREAD or XRANGE reads at most
BLOCK_MS = 5000
# After a read that found events, the reader waits this long before the next, so that a busy
# stream is read in batches: at most 50 round trips a second, whatever the event rate, for
# at most this much more latency.
PACE = 0.02
IDLE_STOP = 30.0  # seconds the reader goes on with no subscription before it stops


CLOSED: dict[str, Any] = {}  # put in a dropped subscription's queue, to end its wait


@dataclass(frozen=True)
class Filter:
    """Which events a subscription wants; an empty part matches every event."""

    job_ids: frozenset[str] = frozenset()
    runtime: str | None = None
    status: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        return ((not self.job_ids or event["job_id"] in self.job_ids)
                and (self.runtime is None or event["runtime"] == self.runtime)
                and (self.status is None or event["to"] == self.status))


@dataclass(eq=False)
class Subscription:
    filter: Filter
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False  # it fell too far behind, or the broker is stopping
    woken: asyncio.Event = field(default_factory=asyncio.Event)  # for log followers
    coalesce: bool = False  # a full queue counts the event in `overflow` instead of dropping
    overflow: int = 0
    overflow_id: str = ""  # the id of the newest event counted in `overflow`

    def offer(self, event: dict[str, Any]) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if self.coalesce:
                self.overflow += 1
                self.overflow_id = event["id"]
            else:
                self.dropped = True
        self.woken.set()

    def drain(self) -> list[dict[str, Any]]:
        """Every event waiting, at once."""
        out = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is not CLOSED:
                out.append(event)
        return out

    def drop(self) -> None:
        self.dropped = True
        self.woken.set()
        with contextlib.suppress(asyncio.QueueFull):  # full: it reads on to `dropped`
            self.queue.put_nowait(CLOSED)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout` seconds or once dropped (with its queue
        drained)."""
        if self.dropped and self.queue.empty():
            return None
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        return None if event is CLOSED else event


def later(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b`."""
    ma, _, sa = a.partition("-")
    mb, _, sb = b.partition("-")
    return (int(ma), int(sa or 0)) > (int(mb), int(sb or 0))


class Feed:
    def __init__(self, connect: Callable[[], Redis], redis: Redis, keys: Keys) -> None:
        """`connect` makes the reader's own connection (it blocks); `redis` serves the
        catch-up reads."""
        self._connect = connect
        self._redis = redis
        self._key = keys.events
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._position = "0-0"
        self._starting = asyncio.Lock()
        self._closing = False

    async def subscribe(self, sub: Subscription) -> None:
        """From when this returns, `sub` receives every event added to the stream."""
        if self._closing:
            sub.drop()
            return
        self._subs.add(sub)
        async with self._starting:
            if self._task is None or self._task.done():
                newest: Any = await self._redis.xrevrange(self._key, count=1)
                self._position = newest[0][0] if newest else "0-0"
                self._task = asyncio.create_task(self._read())

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def wake(self, job_id: str | None) -> None:
        """A job's log grew (None: maybe any job's, after the subscription was lost)."""
        for sub in self._subs:
            if job_id is None or job_id in sub.filter.job_ids:
                sub.woken.set()

    def close(self) -> None:
        """The broker is stopping: every subscription ends now, and none starts."""
        self._closing = True
        for sub in self._subs:
            sub.drop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _dispatch(self, entry_id: str, fields: dict[str, str]) -> None:
        event = wire.event({**fields, "id": entry_id})
        for sub in self._subs:
            if sub.filter.matches(event):
                sub.offer(event)

    async def _read(self) -> None:
        """Read on until the last subscription has been gone IDLE_STOP seconds, or Redis is
        lost. A lost Redis ends every subscription with the reader: what happened meanwhile
        (events trimmed, a Redis restarted with older ids) only the stream can tell, so each
        client resumes with its Last-Event-ID and the catch-up says whether it missed any."""
        idle_since = time.monotonic()
        redis = self._connect()
        try:
            while True:
                if self._subs:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_STOP:
                    self._task = None  # in the same step as the check: see subscribe
                    return
                reply: Any = await redis.xread({self._key: self._position}, count=BATCH,
                                               block=BLOCK_MS)
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        self._position = entry_id
                        self._dispatch(entry_id, fields)
                if reply:
                    await asyncio.sleep(PACE)
        except (RedisError, OSError) as exc:
            log.warning("events feed lost Redis (%s): its clients resume", exc)
            self._task = None
            for sub in self._subs:
                sub.drop()
        finally:
            await redis.aclose()

    async def missed_since(self, after: str) -> str | None:
        """The oldest id still in the stream when events after `after` may have been trimmed
        away ("" when the stream is gone); None when nothing after `after` is lost. Trimming
        takes the oldest entries: once `after` is older than the first one kept, what came
        between went too (if anything did: the stream cannot tell, so it says it may have)."""
        if not await self._redis.exists(self._key):
            return None if after == "0-0" else ""
        info: Any = await self._redis.xinfo_stream(self._key)
        if info.get("entries-added") == info["length"]:
            return None  # never trimmed
        first = info.get("first-entry")
        first_id = first[0] if first else info["last-generated-id"]
        return first_id if later(first_id, after) else None

    async def history(self, after: str) -> AsyncIterator[dict[str, Any]]:
        """The events in the stream after id `after`, oldest first, read in pages."""
        start = "(" + after
        while True:
            entries: Any = await self._redis.xrange(self._key, min=start, count=BATCH)
            for entry_id, fields in entries:
                yield wire.event({**fields, "id": entry_id})
            if len(entries) < BATCH:
                return
            start = "(" + entries[-1][0]
