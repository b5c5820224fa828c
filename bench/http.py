"""Request-rate scenarios: the floor, contract, submit, and contract across two processes.

A machine shared with other work drifts within minutes, so what a ratio compares runs
interleaved: the run is cut into rounds, and each round runs every arm (the floor, the broker)
for its slice. Beside each rate: the CPU the server and redis-server used (shares of one core)
and Redis's own time per script call, which tell a server-bound run from a client- or
Redis-bound one."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import api, fill, load, profile
from bench.context import BROKER_DB, Bench
from bench.procs import Server, Usage
from bench.results import Row, ratio_row

TARGET = 0.8  # of the floor's one-EVALSHA route

Slice = Callable[[float], Coroutine[Any, Any, load.LoadResult]]  # seconds -> a measured run


@dataclass
class Arm:
    """One side of an interleaved comparison: the servers it loads and how it loads them."""

    label: str
    servers: list[Server]
    run: Slice
    result: load.LoadResult = field(default_factory=load.LoadResult)
    cpu: list[list[float]] = field(default_factory=list)  # per slice: servers, then Redis
    usec: list[float] = field(default_factory=list)  # per slice: Redis time per script

    def servers_share(self) -> float:
        """The servers' CPU over the slices, as a share of one core."""
        return sum(sum(c[:-1]) for c in self.cpu) / len(self.cpu)

    def cpu_per_request(self) -> float | None:
        """The servers' CPU per answered request, µs: what one request costs the server
        itself, whatever the client and Redis took of the shared cores."""
        if not self.cpu or not self.result.rate:
            return None
        return 1e6 * self.servers_share() / self.result.rate

    def usage(self, scenario: str) -> Row:
        ours = self.servers_share()
        redis = sum(c[-1] for c in self.cpu) / len(self.cpu)
        usec = sum(self.usec) / len(self.usec) if self.usec else 0.0
        return Row(scenario, f"{self.label}: CPU during the run (share of one core)",
                   100 * ours, "%", reference=f"redis-server {100 * redis:.0f} %, "
                   f"{usec:.0f} µs per script in Redis")


def interleave(b: Bench, arms: list[Arm]) -> None:
    """Run every arm for a slice of the duration in each round (3 rounds, 1 when quick)."""
    o = b.options
    rounds = 1 if o.quick else 3
    for _ in range(rounds):
        for arm in arms:
            b.redis.reset_stats()
            with Usage(*(s.pid for s in arm.servers), b.redis.proc.pid) as usage:
                arm.result.add(load.go(arm.run(o.duration / rounds)))
            arm.cpu.append(usage.shares)
            usec = b.redis.usec_per_call()
            if usec is not None:
                arm.usec.append(usec)


def _get(url: str, b: Bench) -> Slice:
    return lambda seconds: load.ceiling(url, b.options.concurrency, seconds, b.options.warmup)


def _floor_arm(b: Bench, floor: Server) -> Arm:
    return Arm("floor /evalsha", [floor], _get(floor.url + "/evalsha", b))


def _floor_post_arm(b: Bench, floor: Server) -> Arm:
    """The floor's route as POST /job reaches it: the no-op job's body, read and answered."""
    o = b.options

    async def call(s: aiohttp.ClientSession, _: int) -> bool:
        await api.post_job(s, floor.url, "/evalsha")
        return True

    return Arm("floor POST /evalsha", [floor],
               lambda seconds: load.run(call, o.concurrency, seconds, o.warmup))


def floor(b: Bench) -> None:
    o = b.options
    server = b.floor_server()
    bare = load.go(load.ceiling(server.url + "/bare", o.concurrency, o.duration, o.warmup))
    evalsha = _floor_arm(b, server)
    interleave(b, [evalsha])
    b.floor["bare"], b.floor["evalsha"] = bare.rate, evalsha.result.rate
    b.add(Row("floor", f"client ceiling: aiohttp GET /bare, {o.concurrency} in flight",
              bare.rate, "req/s", note=bare.first_error),
          Row("floor", "floor: GET /evalsha (one EVALSHA, broker's client settings)",
              evalsha.result.rate, "req/s", note=evalsha.result.first_error),
          Row("floor", "floor /evalsha latency p50", 1000 * evalsha.result.percentile(0.5),
              "ms", reference=f"p99 {1000 * evalsha.result.percentile(0.99):.2f} ms"),
          evalsha.usage("floor"))
    wrk = _wrk(server.url + "/bare", o.concurrency, o.duration)
    if wrk is not None:
        b.add(ratio_row("floor", "wrk GET /bare (a C client, for comparison)", wrk,
                        "req/s", "aiohttp", bare.rate))


def _wrk(url: str, connections: int, duration: float) -> float | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    done = subprocess.run([exe, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                           url], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def _prefill(b: Bench, runs: float) -> int:
    """Enough pending jobs that the queue outlasts `runs` drains as long as the scenario's:
    the floor's rate bounds a broker process's, since every contract runs a script."""
    o = b.options
    rate = b.floor.get("evalsha") or 10_000.0
    count = math.ceil(rate * runs * (o.duration + 3 * o.warmup) * 1.2) + 1000
    b.flush()
    return fill.fill(b.redis.client(BROKER_DB), count)


async def _workers(url: str, count: int) -> list[str]:
    async with load.session(8) as s:
        return [await api.register(s, url) for _ in range(count)]


def _contract_arm(b: Bench, label: str, servers: list[Server]) -> Arm:
    """Workers registered on each server in turn; loop i polls the broker of workers[i]."""
    o = b.options
    workers: list[str] = []
    urls: list[str] = []
    for i, server in enumerate(servers):
        share = o.concurrency // len(servers) + (i < o.concurrency % len(servers))
        workers += load.go(_workers(server.url, share))
        urls += [server.url] * share

    async def call(s: aiohttp.ClientSession, i: int) -> bool:
        return await api.hand_out(s, urls[i], workers[i])

    def run(seconds: float) -> Coroutine[Any, Any, load.LoadResult]:
        return load.run(call, len(workers), seconds, o.warmup, stop_when_empty=True)

    return Arm(label, servers, run)


def _versus_floor(b: Bench, scenario: str, label: str, request: str, arm: Arm,
                  base: Arm) -> None:
    """The rate against the floor's, the latency, the CPU: the rows contract and submit share."""
    b.add(ratio_row(scenario, label, arm.result.rate, "/s", "floor /evalsha", base.result.rate,
                    TARGET, note=arm.result.first_error),
          Row(scenario, f"{request} latency p50", 1000 * arm.result.percentile(0.5), "ms",
              reference=f"p99 {1000 * arm.result.percentile(0.99):.2f} ms"),
          arm.usage(scenario),
          ratio_row(scenario, "broker CPU per request (ratio: broker / floor)",
                    arm.cpu_per_request(), "µs", "floor", base.cpu_per_request()))
    if b.options.profile:
        profile.sample(b, scenario, arm.servers[0].pid,
                       lambda: load.go(arm.run(b.options.duration)))


def contract(b: Bench) -> None:
    pending = _prefill(b, 2 if b.options.profile else 1)
    server, floor = b.broker(), b.floor_server()
    arm, base = _contract_arm(b, "broker", [server]), _floor_arm(b, floor)
    interleave(b, [base, arm])
    b.numbers["contract"] = arm.result.rate
    _versus_floor(b, "contract", f"contracts/s ({pending:,} pending, {b.options.concurrency} "
                  "workers polling)", "contract", arm, base)


def submit(b: Bench) -> None:
    o = b.options
    b.flush()
    server, floor = b.broker(), b.floor_server()

    async def call(s: aiohttp.ClientSession, _: int) -> bool:
        await api.post_job(s, server.url)
        return True

    arm = Arm("broker", [server], lambda seconds: load.run(call, o.concurrency, seconds,
                                                           o.warmup))
    base, posted = _floor_arm(b, floor), _floor_post_arm(b, floor)
    interleave(b, [base, posted, arm])
    _versus_floor(b, "submit", "POST /job per second", "POST /job", arm, base)
    # The same floor sent the same body: a POST costs the load generator more than a GET, on
    # the cores the servers share, and this ratio leaves that out.
    b.add(ratio_row("submit", "POST /job per second vs the floor as a POST (same body)",
                    arm.result.rate, "/s", "floor POST /evalsha", posted.result.rate,
                    note=posted.result.first_error))


def processes(b: Bench) -> None:
    """One broker process, then two on the same Redis, interleaved, draining one queue."""
    _prefill(b, 3)
    first, second = b.broker("broker-0"), b.broker("broker-1")
    one = _contract_arm(b, "one broker process", [first])
    two = _contract_arm(b, "two broker processes", [first, second])
    interleave(b, [one, two])
    b.add(Row("processes", "contracts/s, one broker process", one.result.rate, "/s",
              note=one.result.first_error), one.usage("processes"),
          ratio_row("processes", "contracts/s, two broker processes on one Redis",
                    two.result.rate, "/s", "one process", one.result.rate,
                    note=two.result.first_error), two.usage("processes"))
