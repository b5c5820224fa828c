"""The notifier: the outbox pump (outbox.py), which puts finished jobs' webhooks on rq, and
the rq worker that delivers them (webhook.py: deliver), with rq's scheduler, which moves a
delivery waiting out its retry interval back onto the queue. The webhook settings (secret,
timeout, retries, denied networks) are the notifier's.

`broker notifier` runs it in the foreground; `broker serve` runs it as a supervised child
process (`Child`) unless BROKER_NOTIFIER=off, restarting it with backoff if it dies, so one
command still gives working webhooks. `broker notifier --check` is its healthcheck: some rq
worker on the webhook queue has sent rq its heartbeat lately.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, SimpleWorker, Worker

from broker.config import Settings
from broker.events.outbox import Pump
from broker.store.keys import Keys

log = logging.getLogger("broker.notifier")

HEALTHY_WITHIN = 120.0  # seconds since a worker's last heartbeat for --check to pass


def run(settings: Settings) -> int:
    assert settings.redis_url
    keys = Keys(settings.prefix)
    connection = Redis.from_url(settings.redis_url)
    queue = Queue(keys.webhook_queue, connection=connection)
    pump = Pump(Redis.from_url(settings.redis_url, decode_responses=True), keys, settings,
                queue)
    stop = threading.Event()
    thread = threading.Thread(target=pump.run, args=(stop,), name="outbox-pump", daemon=True)
    thread.start()
    # A delivery is one short HTTP call: run it in this process (no fork per delivery).
    worker = SimpleWorker([queue], connection=connection,
                          name=f"broker-notifier-{socket.gethostname()}-{os.getpid()}")
    try:
        worker.work(with_scheduler=True, logging_level=settings.log_level.upper())
    finally:
        stop.set()
        thread.join(5)
    return 0


def check(redis_url: str, prefix: str) -> bool:
    """Whether a notifier listens on the webhook queue and was heard from lately."""
    connection = Redis.from_url(redis_url, socket_timeout=5)
    queue = Queue(Keys(prefix).webhook_queue, connection=connection)
    now = datetime.now(UTC)
    for worker in Worker.all(queue=queue):
        beat = worker.last_heartbeat
        if beat is not None:
            beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
            if (now - beat).total_seconds() < HEALTHY_WITHIN:
                return True
    return False


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, the kernel sends it SIGTERM when the broker dies,
    even by SIGKILL, so no notifier outlives its broker."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class Child:
    """`broker notifier` as a child of the broker, started again whenever it exits."""

    def __init__(self, redis_url: str, settings: Settings, environ: Mapping[str, str]) -> None:
        """The child gets the broker's webhook settings, however they were given."""
        own = {"REDIS_URL": redis_url, "BROKER_PREFIX": settings.prefix,
               "BROKER_LOG_LEVEL": settings.log_level,
               "BROKER_WEBHOOK_SECRET": settings.webhook_secret,
               "BROKER_WEBHOOK_TIMEOUT": str(settings.webhook_timeout),
               "BROKER_WEBHOOK_RETRIES": ",".join(map(str, settings.webhook_retries)),
               "BROKER_WEBHOOK_DENY": ",".join(settings.webhook_deny)}
        self._env = {**{k: v for k, v in environ.items() if not k.startswith("BROKER_")},
                     **own}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="notifier", daemon=True)

    def start(self) -> Child:
        self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "broker", "notifier"], env=self._env,
                                preexec_fn=_die_with_parent)

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            self._proc = self._spawn()
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                delay = 1.0
            log.warning("the webhook notifier exited with %s; starting it again in %.0fs",
                        code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # rq's warm shutdown: the delivery under way finishes
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout)
