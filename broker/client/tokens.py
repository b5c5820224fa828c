"""Where the agent and the CLI find their bearer token: a flag, a file flag, a variable, or a
file named by a variable, in that order."""

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
    if token:
        return token
    path = token_file or (Path(environ[env + "_FILE"]) if environ.get(env + "_FILE") else None)
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"the token file {path} is empty")
        return value
    return environ.get(env, "")
