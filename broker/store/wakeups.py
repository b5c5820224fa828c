"""Long-poll wake-ups: one pub/sub subscription per broker process, waiters woken in order.

A script that makes a job pending publishes on its runtime's wake channel while some worker
long-polls on that runtime (a claim that found nothing marks it: lua/lib/wake.lua), so a busy
runtime with a backlog costs no broker a message per job. Every broker process listens on the
pattern of all wake channels and wakes the longest-waiting local waiter for that runtime, which
then tries to claim. A waiter registers before its last claim attempt, so a job
that turns up between the attempt and the wait is never missed; when the subscription drops,
every waiter is woken to look again once it is back. Nothing polls Redis while waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("broker.wakeups")


class Waiter:
    def __init__(self, runtimes: tuple[str, ...]) -> None:
        self.runtimes = runtimes
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when woken within `timeout` seconds; the waiter is re-armed either way."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.event.clear()


class Wakeups:
    def __init__(self, connect: Callable[[], Redis], pattern: str, prefix: str,
                 channels: dict[str, Callable[[str | None], None]] | None = None) -> None:
        """`channels`: other channels to hear on the same connection, each with what to call
        with a message, or with None when the subscription is (re)made and a message may have
        been missed."""
        self._connect = connect
        self._pattern = pattern
        self._prefix = prefix
        self._channels = channels or {}
        self._waiters: dict[str, dict[Waiter, None]] = {}  # runtime -> waiters, oldest first
        self.closing = False

    @contextmanager
    def waiter(self, runtimes: tuple[str, ...]) -> Iterator[Waiter]:
        w = Waiter(runtimes)
        for r in runtimes:
            self._waiters.setdefault(r, {})[w] = None
        try:
            yield w
        finally:
            for r in runtimes:
                queue = self._waiters.get(r)
                if queue is not None:
                    queue.pop(w, None)
                    if not queue:
                        del self._waiters[r]
            if w.event.is_set() and not self.closing:
                # A wake-up that came while its claim was already answered (the job it was for
                # arrived after that claim ran, its message before the answer): the waiter
                # leaves with a job of its own, so the wake-up goes on to the next waiter.
                for r in runtimes:
                    self.wake(r)

    def wake(self, runtime: str) -> None:
        """Wake the longest-waiting waiter on `runtime` that is not already awake."""
        for w in self._waiters.get(runtime, ()):
            if not w.event.is_set():
                w.event.set()
                return

    def close(self) -> None:
        """The server is shutting down: wake every waiter, and let none wait again."""
        self.closing = True
        self.wake_all()

    def wake_all(self) -> None:
        for queue in self._waiters.values():
            for w in queue:
                w.event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff when the subscription drops."""
        delay = 0.05
        while True:
            redis = self._connect()
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._pattern)
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                self.wake_all()
                for heard in self._channels.values():
                    heard(None)
                delay = 0.05
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        self.wake(message["channel"][len(self._prefix):])
                    elif message["type"] == "message" and message["channel"] in self._channels:
                        self._channels[message["channel"]](message["data"])
            except (RedisError, OSError) as exc:
                log.warning("wake-up subscription lost (%s); retrying in %.2fs", exc, delay)
            finally:
                await pubsub.aclose()
                await redis.aclose()
            self.wake_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
