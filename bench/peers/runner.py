"""Run one peer: its worker processes and its producer on the peer's own Redis database, the
jobs its workers finish counted over the measured window. A peer that cannot be installed or
run becomes a row "n/a (reason)", never a crash of the whole run."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio

from bench import load
from bench.context import COUNTER_DB, PEER_DB, Bench
from bench.peers import Unavailable, bullmq, counter
from bench.results import Row
from bench.window import measure

PY = sys.executable
CHILD = [PY, "-m", "bench.peers.child"]


@dataclass(frozen=True)
class Peer:
    label: str
    modules: tuple[str, ...]
    workers: Callable[[int], list[list[str]]]  # worker processes -> argv of each child
    producer: list[str]


PEERS: dict[str, Peer] = {
    "rq": Peer("RQ (SimpleWorker)", ("rq",),
               lambda n: [[*CHILD, "rq", "worker"]] * n, [*CHILD, "rq", "produce"]),
    "celery": Peer("Celery (Redis broker, prefork)", ("celery", "redis"),
                   lambda n: [[PY, "-m", "celery", "-A", "bench.peers.celery_peer", "worker",
                               "--pool", "prefork", "--concurrency", str(n), "--loglevel",
                               "WARNING", "--without-heartbeat", "--without-gossip",
                               "--without-mingle", "--queues", "bench"]],
                   [*CHILD, "celery", "produce"]),
    "dramatiq": Peer("Dramatiq (Redis broker, 8 threads a process)", ("dramatiq",),
                     lambda n: [[PY, "-m", "dramatiq", "bench.peers.dramatiq_peer",
                                 "--processes", str(n), "--threads", "8"]],
                     [*CHILD, "dramatiq", "produce"]),
    "arq": Peer(f"arq (poll {1000 * 0.01:g} ms)", ("arq",),
                lambda n: [[*CHILD, "arq", "worker"]] * n, [*CHILD, "arq", "produce"]),
    "bullmq": Peer(f"BullMQ (Node, concurrency {bullmq.CONCURRENCY} a process)", (),
                   lambda n: [[bullmq.NODE, str(bullmq.SCRIPT), "worker"]] * n,
                   [bullmq.NODE, str(bullmq.SCRIPT), "produce"]),
}


def _env(b: Bench, name: str) -> dict[str, str]:
    env = b.child_env(REDIS_URL=b.redis.url(PEER_DB[name]),
                      BENCH_COUNTER_URL=b.redis.url(COUNTER_DB), BENCH_BACKLOG="2000",
                      C_FORCE_ROOT="1")
    if name == "bullmq":
        env["NODE_PATH"] = str(bullmq.prepare(b.options.quick))
    return env


def _check(name: str, peer: Peer) -> None:
    missing = [m for m in peer.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed: pip install -e '.[bench]'")


def _measure(b: Bench, name: str) -> float:
    o = b.options
    client = redis.asyncio.Redis.from_url(b.redis.url(COUNTER_DB), decode_responses=True)

    async def done() -> int:
        return sum(int(v) for v in await client.hvals(counter.KEY))

    async def go() -> float:
        try:
            return await measure(done, None, 0, 0, o.warmup, o.duration)
        finally:
            await client.aclose()

    return load.go(go())


def run(b: Bench, name: str) -> float:
    peer = PEERS[name]
    _check(name, peer)
    env = _env(b, name)
    b.flush(PEER_DB[name])
    b.flush(COUNTER_DB)
    children = [b.procs.start(f"{name}-worker-{i}", argv, env)
                for i, argv in enumerate(peer.workers(b.options.workers))]
    children.append(b.procs.start(f"{name}-producer", peer.producer, env))
    try:
        rate = _measure(b, name)
        dead = [c for c in children if c.poll() is not None]
        if dead:
            raise Unavailable(f"a process exited with {dead[0].returncode}")
        return rate
    except RuntimeError as exc:
        logs = "; ".join(b.procs.log_tail(n, 2) for n in (f"{name}-worker-0",
                                                          f"{name}-producer"))
        raise Unavailable(f"{exc}: {logs[-200:]}") from None
    finally:
        for child in children:
            b.procs.stop(child)
        b.flush(PEER_DB[name])


def scenario(name: str) -> Callable[[Bench], None]:
    def run_peer(b: Bench) -> None:
        peer = PEERS[name]
        label = f"{peer.label}, {b.options.workers} worker processes"
        try:
            rate = run(b, name)
        except Unavailable as exc:
            b.add(Row("peers", label, None, note=str(exc)))
            return
        b.numbers[name] = rate
        b.add(Row("peers", label, rate, "jobs/s"))

    run_peer.__name__ = f"peer_{name}"
    return run_peer

