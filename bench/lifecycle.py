"""Lifecycle: no-op jobs submitted over HTTP while simulated worker processes take them and
report them succeeded; jobs/s, one job per request (the seed's calls), with each report taking
the next job (PUT /job?next=1), and batched. Then the
comparison with the peers, which run the same shape (bench/peers/)."""

from __future__ import annotations

import functools
import sys

import aiohttp
import redis.asyncio

from bench import api, load, profile
from bench.context import BROKER_DB, Bench
from bench.procs import Server, Usage
from bench.results import Row, ratio_row
from bench.window import measure
from broker.store.keys import Keys

PYTHON_PEERS = ("rq", "celery", "dramatiq", "arq")


def _run(b: Bench, server: Server, mode: str) -> tuple[float, Usage]:
    o = b.options
    loops, batch = (2, o.batch) if mode == "batch" else (8, 1)
    workers = [b.procs.start(f"simworker-{mode}-{i}", [
        sys.executable, "-m", "bench.simworker", server.url, mode, str(loops), str(batch)],
        env=b.child_env()) for i in range(o.workers)]
    stats = Keys().stats
    client = redis.asyncio.Redis.from_url(b.redis.url(BROKER_DB), decode_responses=True)

    async def done() -> int:
        return int(await client.hget(stats, "succeeded") or 0)

    async def one(s: aiohttp.ClientSession) -> int:
        await api.submit(s, server.url)
        return 1

    async def many(s: aiohttp.ClientSession) -> int:
        return len(await api.submit_many(s, server.url, batch))

    usage = Usage(server.pid, b.redis.proc.pid)

    async def go() -> float:
        try:
            return await measure(done, many if mode == "batch" else one,
                                 8 if mode == "single" else 4, max(2000, 20 * batch),
                                 o.warmup, o.duration, usage)
        finally:
            await client.aclose()

    try:
        return load.go(go()), usage
    finally:
        for proc in workers:
            b.procs.stop(proc)


async def _batch_missing(url: str) -> str:
    """Why the batch endpoints cannot be used, or "" when they answer as expected."""
    async with load.session(2) as s:
        try:
            worker_id = await api.register(s, url, "bench-probe")
            await api.submit_many(s, url, 2, "bench-probe")
            answer = await api.contract(s, url, worker_id, most=2)
            if answer is None or "contracts" not in answer:
                return "GET /worker/contract?max=N does not answer {\"contracts\": [...]}"
            await api.succeed_many(s, url, worker_id, answer["contracts"])
        except (api.Refused, aiohttp.ClientError) as exc:
            return str(exc)[:120]
    return ""


def _cpu(usage: Usage, label: str) -> Row:
    broker, redis_server = usage.shares
    return Row("lifecycle", f"{label}: broker CPU (share of one core)", 100 * broker, "%",
               reference=f"redis-server {100 * redis_server:.0f} %")


def ours(b: Bench) -> None:
    o = b.options
    b.flush()
    server = b.broker()
    try:
        single, usage = _run(b, server, "single")
        b.numbers["lifecycle"] = single
        b.add(Row("lifecycle", f"broker, one job per request ({o.workers} worker processes)",
                  single, "jobs/s"), _cpu(usage, "one job per request"))
        b.flush()
        taking, usage = _run(b, server, "next")
        b.numbers["lifecycle_next"] = taking
        b.add(ratio_row("lifecycle", "one job per request, the report taking the next",
                        taking, "jobs/s", "one per request", single, 1.3),
              _cpu(usage, "report taking the next"))
        b.flush()
        missing = load.go(_batch_missing(server.url))
        if missing:
            b.add(Row("lifecycle", f"broker, batched (max={o.batch})", None,
                      note=f"batch endpoints not available: {missing}"))
            return
        b.flush()
        batched, usage = _run(b, server, "batch")
        b.numbers["lifecycle_batch"] = batched
        b.add(ratio_row("lifecycle", f"broker, batched ({o.batch} per request)", batched,
                        "jobs/s", "one per request", single), _cpu(usage, "batched"))
        if o.profile:
            for mode in ("single", "next", "batch"):
                b.flush()
                profile.sample(b, f"lifecycle {mode}", server.pid,
                               functools.partial(_run, b, server, mode))
    finally:
        server.stop()


def compare(b: Bench) -> None:
    """The lifecycle targets: seed calls ahead of every Python peer, batched ahead of BullMQ."""
    python = {p: b.numbers[p] for p in PYTHON_PEERS if p in b.numbers}
    if "lifecycle" in b.numbers and python:
        best = max(python, key=python.__getitem__)
        b.add(ratio_row("lifecycle", "one job per request vs the fastest Python peer",
                        b.numbers["lifecycle"], "jobs/s", best, python[best], 1.0))
    if "lifecycle_batch" in b.numbers and "bullmq" in b.numbers:
        b.add(ratio_row("lifecycle", "batched vs BullMQ", b.numbers["lifecycle_batch"],
                        "jobs/s", "bullmq", b.numbers["bullmq"], 1.0))
