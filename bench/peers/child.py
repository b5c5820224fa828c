"""A peer's producer or worker process: `python -m bench.peers.child PEER produce|worker`.

The producer enqueues no-op jobs from a few threads (arq: one event loop) while fewer than
BENCH_BACKLOG jobs are waiting, so the queue never runs dry and never grows without bound.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable

import redis

from bench.peers import counter

THREADS = 4
ROUND = 20


class Backlog:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.lock = threading.Lock()
        self.client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])

    def more(self) -> bool:
        with self.lock:
            sent = self.sent
        return sent - counter.done(self.client) < self.limit

    def add(self, n: int) -> None:
        with self.lock:
            self.sent += n


def _enqueue_loop(enqueue: Callable[[], None], backlog: Backlog) -> None:
    while True:
        if not backlog.more():
            time.sleep(0.01)
            continue
        for _ in range(ROUND):
            enqueue()
        backlog.add(ROUND)


def produce(peer: str) -> None:
    backlog = Backlog(int(os.environ.get("BENCH_BACKLOG", "2000")))
    module = importlib.import_module(f"bench.peers.{peer}_peer")
    if peer == "arq":
        asyncio.run(module.produce(backlog))
        return
    threads = [threading.Thread(target=_enqueue_loop, args=(module.enqueue, backlog),
                                daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(peer: str, role: str) -> None:
    if role == "produce":
        produce(peer)
    else:
        importlib.import_module(f"bench.peers.{peer}_peer").worker()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
