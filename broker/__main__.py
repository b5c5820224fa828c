"""The `broker` command: `broker serve` runs the HTTP service; `submit`, `job`, `data` and the
rest talk to one over HTTP. Each path imports only what it needs, so the requester's commands
start quickly."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from broker import cli, config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the broker's HTTP service")
    config.add_arguments(serve)
    cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        return cli.run(args)
    try:
        settings = config.load(vars(args), os.environ)
    except config.SettingsError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    from broker.serve import serve  # uvicorn, Starlette, redis: only for the server

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
