"""Celery with its Redis broker, no result backend."""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-untyped]

from bench.peers import counter

app = Celery("bench", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"))
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                task_default_queue="bench", worker_hijack_root_logger=False)


@app.task  # type: ignore[untyped-decorator]
def noop() -> None:
    counter.tick()


def enqueue() -> None:
    noop.delay()
