"""Where the agent and the CLI find their bearer token: the flags, then the variables, by the
same rule as `broker serve` reads its own (broker/config.py): at each level the token or a file
holding it, never both."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

REQUESTER_ENV = "BROKER_REQUESTER_TOKEN"
WORKER_ENV = "BROKER_WORKER_TOKEN"


def add_arguments(parser: argparse.ArgumentParser, env: str) -> None:
    parser.add_argument("--token", default=None, help=f"bearer token (env {env})")
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"file holding the bearer token (env {env}_FILE)")


def resolve(token: str | None, token_file: Path | None, env: str,
            environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    from_env = environ.get(env + "_FILE")
    for value, path, source, file_source in (
            (token, token_file, "--token", "--token-file"),
            (environ.get(env), Path(from_env) if from_env else None, env, env + "_FILE")):
        if value and path:
            raise ValueError(f"{source} and {file_source}: give the token or a file holding "
                             "it, not both")
        if path is not None:
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
            if not value:
                raise ValueError(f"the token file {path} is empty")
        if value:
            return value
    return ""
