"""Dramatiq with its Redis broker, default middleware."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import counter

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")
dramatiq.set_broker(RedisBroker(url=URL))  # type: ignore[no-untyped-call]


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    counter.tick()


def enqueue() -> None:
    noop.send()
