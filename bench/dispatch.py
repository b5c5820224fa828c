"""Dispatch latency: a worker already waiting in a long-poll, jobs submitted one at a time;
the time from sending POST /job to holding the contract for that job."""

from __future__ import annotations

import asyncio
import time

from bench import api, load
from bench.context import Bench
from bench.results import Row

P50_MS, P99_MS = 2.0, 10.0


async def _measure(url: str, samples: int, budget: float) -> tuple[list[float], str]:
    async with load.session(4) as s:
        worker_id = await api.register(s, url)
        received: dict[str, float] = {}
        arrived = asyncio.Event()

        async def worker() -> None:
            while True:
                answer = await api.contract(s, url, worker_id, wait=30)
                if answer is not None:
                    received[answer["job_id"]] = time.perf_counter()
                    arrived.set()

        polling = asyncio.create_task(worker())
        latencies: list[float] = []
        error = ""
        deadline = time.monotonic() + budget
        try:
            await asyncio.sleep(0.2)  # the first long-poll is waiting
            while len(latencies) < samples and time.monotonic() < deadline:
                arrived.clear()
                sent = time.perf_counter()
                job_id = await api.submit(s, url)
                await asyncio.wait_for(arrived.wait(), 10)
                latencies.append(received.pop(job_id) - sent)
                await asyncio.sleep(0.003)  # the worker is back in its long-poll
        except (TimeoutError, KeyError) as exc:
            error = f"no contract for a submitted job ({type(exc).__name__})"
        finally:
            polling.cancel()
        return latencies, error


def dispatch(b: Bench) -> None:
    o = b.options
    b.flush()
    server, floor = b.broker(), b.floor_server()
    samples, budget = (200, 3.0) if o.quick else (2000, 2 * o.duration + 10)
    latencies, error = load.go(_measure(server.url, samples, budget))
    # What one request costs on this machine, alone: a submit and a contract are two.
    alone = load.go(load.ceiling(floor.url + "/evalsha", 1, min(o.duration, 3), o.warmup))
    p50 = 1000 * load.percentile(latencies, 0.5)
    p99 = 1000 * load.percentile(latencies, 0.99)
    n = f"{len(latencies)} jobs"
    b.add(Row("dispatch", f"submit-to-contract p50 ({n})", p50, "ms", target=f"< {P50_MS:g}",
              met=p50 < P50_MS if latencies else None, note=error),
          Row("dispatch", f"submit-to-contract p99 ({n})", p99, "ms", target=f"< {P99_MS:g}",
              met=p99 < P99_MS if latencies else None, note=error),
          Row("dispatch", "floor: one GET /evalsha at a time, p50", 1000 * alone.percentile(0.5),
              "ms", reference=f"p99 {1000 * alone.percentile(0.99):.2f} ms"))
