"""How peers' workers count the jobs they ran: a per-process count that a background thread
writes to Redis every 50 ms (one HSET per process, not one call per job)."""

from __future__ import annotations

import os
import threading
import time

import redis

KEY = "bench:done"
INTERVAL = 0.05

_lock = threading.Lock()
_count = 0
_pid = 0


def _flush(pid: int) -> None:
    client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    while True:
        client.hset(KEY, str(pid), _count)
        time.sleep(INTERVAL)


def tick() -> None:
    """Count one job done by this process (started lazily: a forked child gets its own)."""
    global _count, _pid
    with _lock:
        if _pid != os.getpid():
            _pid, _count = os.getpid(), 0
            threading.Thread(target=_flush, args=(_pid,), daemon=True).start()
        _count += 1


def done(client: redis.Redis) -> int:
    return sum(int(v) for v in client.hvals(KEY))
