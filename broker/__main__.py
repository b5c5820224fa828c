"""The `broker` command: `broker serve` runs the HTTP service; `submit`, `job` and `data` talk
to one over HTTP."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

import uvicorn

from broker import cli, config
from broker.app import create_app
from broker.embedded import embedded_redis

log = logging.getLogger("broker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the broker's HTTP service")
    config.add_arguments(serve)
    cli.add_commands(commands)
    return parser


@contextlib.contextmanager
def _redis_url(settings: config.Settings) -> Iterator[str]:
    if settings.redis_url:
        yield settings.redis_url
    else:
        with embedded_redis(settings.data_dir) as url:
            yield url


def serve(settings: config.Settings) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        return cli.run(args)
    try:
        settings = config.load(vars(args), os.environ)
    except config.SettingsError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
