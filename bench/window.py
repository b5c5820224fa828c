"""Jobs done per second over a measured window, while a producer keeps a bounded backlog
waiting: the shape every lifecycle run has, ours and the peers'."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

import aiohttp

from bench import load

Done = Callable[[], Awaitable[int]]  # jobs done so far
Produce = Callable[[aiohttp.ClientSession], Awaitable[int]]  # submit some; answer how many

FIRST_JOB_WITHIN = 30.0


async def _first_job(done: Done, base: int, tasks: list[asyncio.Task[None]]) -> None:
    deadline = time.monotonic() + FIRST_JOB_WITHIN
    while await done() == base:
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # a producer that failed: raise its error
            raise RuntimeError("the producer stopped")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no job was done within {FIRST_JOB_WITHIN:g} s")
        await asyncio.sleep(0.02)


async def measure(done: Done, produce: Produce | None, producers: int, backlog: int,
                  warmup: float, duration: float,
                  window: AbstractContextManager[object] | None = None) -> float:
    """Keep `producers` loops of `produce` going while fewer than `backlog` jobs wait (no
    producer: one runs elsewhere); once the first job is done, wait `warmup`, then answer the
    jobs done per second over `duration` seconds (`window` is entered for those seconds)."""
    base = await done()
    state = {"done": base, "sent": 0}
    stop = asyncio.Event()

    async def follow() -> None:
        while not stop.is_set():
            state["done"] = await done()
            await asyncio.sleep(0.02)

    async def producer(s: aiohttp.ClientSession) -> None:
        assert produce is not None
        while not stop.is_set():
            if state["sent"] - (state["done"] - base) >= backlog:
                await asyncio.sleep(0.01)
            else:
                state["sent"] += await produce(s)

    async with load.session(max(producers, 1)) as s:
        tasks = [asyncio.create_task(follow())]
        if produce is not None:
            tasks += [asyncio.create_task(producer(s)) for _ in range(producers)]
        try:
            await _first_job(done, base, tasks[1:])
            await asyncio.sleep(warmup)
            with window or contextlib.nullcontext():
                t0, d0 = time.perf_counter(), await done()
                await asyncio.sleep(duration)
                t1, d1 = time.perf_counter(), await done()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return (d1 - d0) / (t1 - t0)
