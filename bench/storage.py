"""Scenarios about size: data streamed through the broker, and contracts from deep queues."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from bench import api, fill, load
from bench.context import Bench
from bench.procs import RedisServer, Server, start_broker
from bench.results import Row, ratio_row

BLOCK = os.urandom(1024 * 1024)
BOUNDARY = "bench-boundary-7d1c"
MB = 1_000_000


def _multipart(size: int) -> tuple[bytes, bytes, int]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + size + len(tail)


async def _body(head: bytes, size: int, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    left = size
    while left > 0:
        chunk = BLOCK[:left] if left < len(BLOCK) else BLOCK
        left -= len(chunk)
        yield chunk
    yield tail


async def _upload(s: aiohttp.ClientSession, url: str, size: int) -> tuple[float, str]:
    head, tail, length = _multipart(size)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
               "Content-Length": str(length)}
    started = time.perf_counter()
    async with s.post(url, data=_body(head, size, tail), headers=headers) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise api.Refused(f"upload answered {resp.status}: {text[:200]}")
    return time.perf_counter() - started, text.strip()


async def _download(s: aiohttp.ClientSession, url: str, headers: dict[str, str],
                    size: int) -> float:
    started = time.perf_counter()
    got = 0
    async with s.get(url, headers=headers) as resp:
        if resp.status != 200:
            raise api.Refused(f"download answered {resp.status}")
        async for chunk in resp.content.iter_any():
            got += len(chunk)
    if got < size:
        raise api.Refused(f"download ended after {got} of {size} bytes")
    return time.perf_counter() - started


async def _round_trips(broker: str, floor: str, size: int, reps: int) -> dict[str, float]:
    """Best MB/s of `reps` runs of each: broker and floor, upload and download, interleaved."""
    best = {"up": 0.0, "floor_up": 0.0, "down": 0.0, "floor_down": 0.0}
    raw = {"Accept": "application/octet-stream"}
    async with load.session(2) as s:
        for _ in range(reps):
            took, data_id = await _upload(s, broker + "/data", size)
            best["up"] = max(best["up"], size / took / MB)
            took, _ = await _upload(s, floor + "/upload", size)
            best["floor_up"] = max(best["floor_up"], size / took / MB)
            took = await _download(s, broker + "/data", {**raw, "X-Data-Id": data_id}, size)
            best["down"] = max(best["down"], size / took / MB)
            took = await _download(s, floor + "/download", raw, size)
            best["floor_down"] = max(best["floor_down"], size / took / MB)
            async with s.delete(broker + "/data", headers={"X-Data-Id": data_id}) as resp:
                await resp.read()
    return best


def data(b: Bench) -> None:
    o = b.options
    b.flush()
    broker, floor = b.broker(), b.floor_server()
    try:
        idle_kib = broker.peak_rss_kib()
        best = load.go(_round_trips(broker.url, floor.url, o.data_bytes,
                                        1 if o.quick else 2))
        peak_kib = broker.peak_rss_kib()
    finally:
        broker.stop()
        floor.stop()
    size = f"{o.data_bytes / 2**20:,.0f} MiB"
    b.add(ratio_row("data", f"upload {size} (POST /data, multipart)", best["up"], "MB/s",
                    "floor", best["floor_up"], 0.8),
          ratio_row("data", f"download {size} (GET /data, raw)", best["down"], "MB/s",
                    "floor", best["floor_down"], 0.8),
          Row("data", "broker peak RSS (VmHWM)", peak_kib / 1024, "MiB",
              reference=f"at start {idle_kib / 1024:.0f} MiB", target="< 100 MB",
              met=peak_kib * 1024 < 100 * MB))


@dataclass
class _Depth:
    """One queue depth: its own redis-server and broker, a worker, and what it measured."""

    count: int
    redis: RedisServer
    broker: Server
    worker_id: str = ""
    latencies: list[float] = field(default_factory=list)
    calls: int = 0
    usec: int = 0  # Redis's own time in the claim scripts

    def refill(self, n: int) -> None:
        """Account the claims so far, add `n` jobs, and leave the refill out of the stats."""
        calls, usec = self.redis.command_stats()
        self.calls, self.usec = self.calls + calls, self.usec + usec
        fill.fill(self.redis.client(0), n, priorities=PRIORITIES)
        self.redis.reset_stats()


async def _interleaved(depths: list[_Depth], samples: int) -> None:
    """Sequential contracts in rounds of 100 per depth, the depths taking turns; after each
    round its queue gets 100 new jobs (untimed), so it stays within 100 of its depth."""
    async with load.session(1) as s:
        for d in depths:
            d.worker_id = await api.register(s, d.broker.url)
            d.redis.reset_stats()
        while len(depths[-1].latencies) < samples:
            for d in depths:
                for _ in range(100):
                    started = time.perf_counter()
                    if await api.contract(s, d.broker.url, d.worker_id) is None:
                        raise api.Refused("the queue ran dry")
                    d.latencies.append(time.perf_counter() - started)
                d.refill(100)


PRIORITIES = (-2, -1, 0, 1, 2)  # the depth scenario's jobs are spread over five priorities


def _deep(b: Bench, count: int, index: int) -> tuple[_Depth, float, float]:
    """A depth on its own redis-server: the depth, bytes per job, and jobs/s of the fill."""
    server = b.redis if index == 0 else RedisServer(b.procs, b.workdir / f"redis-{index}")
    server.client(0).flushdb()
    before = server.used_memory()
    started = time.perf_counter()
    fill.fill(server.client(0), count, priorities=PRIORITIES)
    took = time.perf_counter() - started
    per_job = (server.used_memory() - before) / count
    # The broker starts after the fill, so it is not woken a million times.
    broker = start_broker(b.procs, server.url(0), b.workdir / f"depth-{index}", f"broker-{index}")
    return _Depth(count, server, broker), per_job, count / took


def depth(b: Bench) -> None:
    o = b.options
    made = [_deep(b, count, i) for i, count in enumerate(o.depth)]
    small, large = (d for d, _, _ in made)
    _, per_job, rate = made[-1]
    load.go(_interleaved([small, large], 300 if o.quick else 3000))
    p50 = {d.count: 1000 * load.percentile(d.latencies, 0.5) for d in (small, large)}
    spread = f"over {len(PRIORITIES)} priorities"
    b.add(Row("depth", f"contract p50, {small.count:,} pending {spread}", p50[small.count], "ms",
              reference=f"p99 {1000 * load.percentile(small.latencies, 0.99):.2f} ms"),
          ratio_row("depth", f"contract p50, {large.count:,} pending {spread}", p50[large.count],
                    "ms",
                    f"{small.count:,} pending", p50[small.count], 1.1, higher=False),
          *(Row("depth", f"Redis time per claim script, {d.count:,} pending",
                d.usec / d.calls if d.calls else None, "µs") for d in (small, large)),
          Row("depth", f"Redis bytes per pending job (used_memory, {large.count:,} jobs)",
              per_job, "B", target="< 500", met=per_job < 500),
          Row("depth", "queue fill: submit script, pipelined EVALSHA", rate, "jobs/s",
              note="setup, not a target"))
