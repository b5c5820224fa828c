"""The `broker` command: `broker serve` runs the HTTP service; `submit`, `job`, `data` and the
rest talk to one over HTTP. Each path imports only what it needs, so the requester's commands
start quickly."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from broker import cli, config


class _Version(argparse.Action):
    """--version, reading the package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"broker {version('redis-job-broker')}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the broker's HTTP service")
    config.add_arguments(serve)
    notifier = commands.add_parser(
        "notifier", help="run the rq worker that delivers webhooks (broker serve runs one "
        "itself unless BROKER_NOTIFIER=off); needs REDIS_URL")
    notifier.add_argument("--check", action="store_true",
                          help="exit 0 if a notifier was heard from lately, else 1 (a "
                          "healthcheck)")
    cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    cli.check(parser, args)
    if args.command == "notifier":
        return _notifier(args.check)
    if args.command != "serve":
        return cli.run(args)
    try:
        settings = config.load(vars(args), os.environ)
    except config.SettingsError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    from broker.serve import serve  # uvicorn, Starlette, redis: only for the server

    return serve(settings)


def _notifier(check: bool) -> int:
    try:
        settings = config.load({}, os.environ)
    except config.SettingsError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url or "://" not in settings.redis_url or \
            settings.redis_url.startswith("memory://"):
        print("broker: the notifier needs REDIS_URL (the Redis the broker uses)",
              file=sys.stderr)
        return 2
    from broker.events import notifier  # rq: only for the notifier

    if check:
        return 0 if notifier.check(settings.redis_url, settings.prefix) else 1
    return notifier.run(settings)


if __name__ == "__main__":
    sys.exit(main())
