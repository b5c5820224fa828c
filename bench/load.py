"""The load generator: one aiohttp ClientSession, N tasks each looping one request, for a bounded
time. Only requests that finish inside the measured window (after a warm-up) count."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import uvloop

# One call: does one request with the session; True when it did what was asked (a 200 contract,
# a created job), False for an answer that counts as no work (a 204).
Call = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


T = TypeVar("T")


def go(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop, as the servers do, so the client is no slower than it must."""
    return uvloop.run(coro)


@dataclass
class LoadResult:
    ok: int = 0
    empty: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)

    def add(self, other: LoadResult) -> None:
        """Fold in another slice of the same measurement."""
        self.ok += other.ok
        self.empty += other.empty
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.first_error = self.first_error or other.first_error


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def run(call: Call, concurrency: int, duration: float, warmup: float,
              stop_when_empty: bool = False) -> LoadResult:
    """`concurrency` loops of `call` for warmup + duration seconds; counts the last `duration`.
    With `stop_when_empty`, the run ends early once a call finds no work (a drained queue)."""
    result = LoadResult()
    start = time.perf_counter()
    begin, end = start + warmup, start + warmup + duration
    drained = asyncio.Event()

    async def loop(s: aiohttp.ClientSession, index: int) -> None:
        while not drained.is_set():
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                done = await call(s, index)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            if t0 >= begin and t1 <= end:
                if done:
                    result.ok += 1
                    result.latencies.append(t1 - t0)
                else:
                    result.empty += 1
            if not done and stop_when_empty:
                result.seconds = max(0.0, t1 - begin)
                drained.set()

    async with session(concurrency) as s:
        await asyncio.gather(*(loop(s, i) for i in range(concurrency)))
    if not drained.is_set():
        result.seconds = duration
    return result


async def ceiling(url: str, concurrency: int, duration: float, warmup: float) -> LoadResult:
    """The client's own ceiling: GET `url` (the floor's bare route) as fast as it answers."""

    async def call(s: aiohttp.ClientSession, _: int) -> bool:
        async with s.get(url) as resp:
            await resp.read()
            return resp.status == 200

    return await run(call, concurrency, duration, warmup)
