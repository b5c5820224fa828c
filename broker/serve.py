"""`broker serve`: one process serving the HTTP API, with its embedded Redis when REDIS_URL is
unset.

Start-up holds the data directory first (broker/owner.py), so a second broker on it refuses
before it touches the Redis socket or the append-only file. Shutdown (SIGTERM or SIGINT; a
second SIGINT forces it) first answers the long polls waiting for work, then lets uvicorn finish
the requests under way, then stops the embedded Redis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator

import uvicorn
from starlette.applications import Starlette

from broker import config
from broker.events import notifier
from broker.files import owner
from broker.http.app import create_app, drain
from broker.http.limits import bounded_protocol
from broker.store.connection import MEMORY_URL
from broker.store.embedded import embedded_redis

log = logging.getLogger("broker")


class _Server(uvicorn.Server):
    def __init__(self, app: Starlette, settings: config.Settings) -> None:
        http = bounded_protocol(settings.max_header_bytes, settings.header_timeout)
        super().__init__(uvicorn.Config(app, host=settings.host, port=settings.port,
                                        loop="uvloop", http=http,
                                        log_level=settings.log_level, access_log=False))
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain(self.app)  # long polls answer 204 now, not when their wait ends
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn raises the captured signal again once it has shut down, which would end the
        # process before the embedded Redis is stopped and the data directory let go: a
        # signal here means a clean stop, exit status 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(settings: config.Settings) -> int:
    """Run until told to stop; the process's exit status."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in config.unknown_variables(os.environ):
        log.warning("ignoring unknown setting %s", name)
    loopback = settings.host in ("127.0.0.1", "::1", "localhost")
    if not loopback and not (settings.requester_token and settings.worker_token):
        log.warning("binding %s without both BROKER_REQUESTER_TOKEN and BROKER_WORKER_TOKEN: "
                    "anyone who can reach this port can act without a token", settings.host)
    try:
        with owner.own(settings.data_dir, alone=not settings.redis_url):
            return _run(settings)
    except owner.DirectoryInUse as exc:
        print(f"broker: {exc}", file=sys.stderr)
    except (OSError, RuntimeError) as exc:  # the data directory, or the embedded Redis
        print(f"broker: cannot start: {exc}", file=sys.stderr)
    return 1


def _run(settings: config.Settings) -> int:
    log.info("data directory %s", settings.data_dir.resolve())
    if settings.redis_url:
        return _serve(settings, settings.redis_url)
    servers: list[_Server] = []

    def give_up() -> None:  # the embedded Redis keeps dying: stop, and exit non-zero
        for server in servers:
            server.should_exit = True

    with embedded_redis(settings.data_dir, give_up) as embedded:
        status = _serve(settings, embedded.url if embedded else MEMORY_URL, servers)
        return 1 if embedded is not None and embedded.failed else status


def _serve(settings: config.Settings, redis_url: str,
           servers: list[_Server] | None = None) -> int:
    server = _Server(create_app(dataclasses.replace(settings, redis_url=redis_url)), settings)
    if servers is not None:
        servers.append(server)
    with _notifier(settings, redis_url):
        server.run()
    return 0 if server.started else 1


@contextlib.contextmanager
def _notifier(settings: config.Settings, redis_url: str) -> Generator[None, None, None]:
    """The webhook notifier as a supervised child, unless it runs elsewhere
    (BROKER_NOTIFIER=off) or there is no Redis another process could reach."""
    if settings.notifier == "off":
        yield
        return
    if redis_url == MEMORY_URL:
        log.warning("webhooks are not delivered: the broker keeps its data in this process "
                    "(no redis-server), where no notifier can reach it")
        yield
        return
    child = notifier.Child(redis_url, settings, os.environ).start()
    try:
        yield
    finally:
        child.stop()
