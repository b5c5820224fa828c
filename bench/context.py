"""What every scenario shares: the options, the run's processes, Redis, the floor's numbers
and the rows collected so far."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Procs, RedisServer, Server, start_broker, start_floor
from bench.results import Row

# Redis databases: the broker's scenarios, each peer its own, and the peers' done counters.
BROKER_DB = 0
PEER_DB = {"rq": 1, "celery": 2, "dramatiq": 3, "arq": 4, "bullmq": 5}
COUNTER_DB = 15
# The folder holding bench/ and broker/: children import both from here, whatever the cwd.
ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@dataclass(frozen=True)
class Options:
    quick: bool
    duration: float  # seconds each measured run lasts
    warmup: float
    concurrency: int  # requests in flight from the load generator
    workers: int  # worker processes in the lifecycle scenarios, ours and the peers'
    batch: int  # jobs per request in the batched lifecycle
    depth: tuple[int, int]  # pending jobs in the two depth runs
    data_bytes: int
    profile: bool


@dataclass
class Bench:
    options: Options
    workdir: Path
    procs: Procs
    redis: RedisServer
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    floor: dict[str, float] = field(default_factory=dict)  # route -> req/s
    numbers: dict[str, float] = field(default_factory=dict)  # results later rows compare
    profiles: dict[str, str] = field(default_factory=dict)  # scenario -> summary text

    def flush(self, db: int = BROKER_DB) -> None:
        self.redis.client(db).flushdb()

    def broker(self, name: str = "broker", data_dir: Path | None = None) -> Server:
        return start_broker(self.procs, self.redis.url(BROKER_DB),
                                  data_dir or self.workdir / "broker-data", name)

    def floor_server(self) -> Server:
        return start_floor(self.procs, self.redis.url(BROKER_DB), self.workdir / "floor")

    def child_env(self, **extra: str) -> dict[str, str]:
        return child_env(**extra)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
