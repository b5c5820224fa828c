"""RQ: SimpleWorker (runs jobs in its own process, no fork per job)."""

from __future__ import annotations

import os

from redis import Redis
from rq import Queue, SimpleWorker

from bench.peers import counter


def noop() -> None:
    counter.tick()


def _redis() -> Redis:
    return Redis.from_url(os.environ["REDIS_URL"])


def worker() -> None:
    connection = _redis()
    SimpleWorker([Queue("bench", connection=connection)], connection=connection).work(
        logging_level="WARNING")


def enqueue() -> None:
    Queue("bench", connection=_redis()).enqueue(noop)
