"""`broker serve`: one process serving the HTTP API, with its embedded Redis when REDIS_URL is
unset."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import uvicorn

from broker import config
from broker.app import create_app
from broker.embedded import embedded_redis

log = logging.getLogger("broker")


@contextlib.contextmanager
def _redis_url(settings: config.Settings) -> Iterator[str]:
    if settings.redis_url:
        yield settings.redis_url
    else:
        with embedded_redis(settings.data_dir) as url:
            yield url


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
    with _redis_url(settings) as url:
        app = create_app(config.Settings(**{**settings.__dict__, "redis_url": url}))
        uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop",
                    http="httptools", log_level=settings.log_level, access_log=False)
    return 0
