"""worker-agent: run jobs from a broker.

    worker-agent --broker http://127.0.0.1:8000 --runtime python3 --runtime sh --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker.client import tokens
from worker_agent import runtimes
from worker_agent.agent import Agent, AgentConfig, Fatal
from worker_agent.runner import Limits

log = logging.getLogger("worker_agent")

# Each numeric option: its type, its default, and the least value that makes sense.
OPTIONS: dict[str, tuple[type, float, float]] = {
    "concurrency": (int, 1, 1),
    "wait": (float, 30.0, 0.1),
    "grace": (float, 30.0, 0),
    "heartbeat": (float, 10.0, 0.01),
    "time_limit": (float, Limits.time, 0.001),
    "cpu_limit": (int, Limits.cpu, 1),
    "memory_limit": (int, Limits.memory, 1024**2),
    "files_limit": (int, Limits.files, 4),
    "output_limit": (int, Limits.output, 1),
}
FILE_KEYS = {"runtimes", "broker", "log-level", "live-log",
             *(n.replace("_", "-") for n in OPTIONS)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", default=os.environ.get("BROKER_URL", "http://127.0.0.1:8000"),
                   help="broker URL (env BROKER_URL)")
    p.add_argument("--runtime", action="append", default=[], metavar="NAME[=TEMPLATE]",
                   help="a runtime to serve: a built-in name (python3, sh, bash, node) or "
                        "name='argv template' with {function} {input} {output}; repeatable")
    tokens.add_arguments(p, tokens.WORKER_ENV)
    p.add_argument("--config", type=Path, help="TOML file: [runtimes] name = 'template', and "
                   "any option below by its long name (concurrency = 4)")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default 1)")
    p.add_argument("--wait", type=float, help="long-poll seconds per contract call (30)")
    p.add_argument("--grace", type=float,
                   help="seconds running jobs may finish after SIGTERM before they are given "
                        "back (30)")
    p.add_argument("--heartbeat", type=float,
                   help="seconds between heartbeats while the broker names no interval (10)")
    p.add_argument("--time-limit", type=float, help="wall-clock seconds per function (600)")
    p.add_argument("--cpu-limit", type=int, help="CPU seconds per function (600)")
    p.add_argument("--memory-limit", type=int, help="bytes of memory per function (2 GiB)")
    p.add_argument("--files-limit", type=int, help="open files per function (256)")
    p.add_argument("--output-limit", type=int, help="bytes of output per function (1 GiB)")
    p.add_argument("--no-live-log", dest="live_log", action="store_const", const=False,
                   help="do not send functions' stderr to the broker while they run (in "
                   "--config: live-log = false)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--debug", action="store_true",
                   help="log at debug level, with the traceback of any error")
    return p


def _option(name: str, value: Any) -> float:
    """A numeric option checked against its type and least sensible value."""
    kind, _, least = OPTIONS[name]
    flag = "--" + name.replace("_", "-")
    wrong = isinstance(value, bool) or not isinstance(value, int | float) or (
        kind is int and not isinstance(value, int))
    if wrong or not least <= value < float("inf"):
        what = f"a whole number of at least {int(least)}" if kind is int else \
            f"a number of at least {least:g}"
        raise ValueError(f"{flag} must be {what}, not {value!r}")
    return kind(value)  # type: ignore[no-any-return]


def _file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        found = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(found) - FILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown option {unknown[0]!r}; it takes "
                         f"{', '.join(sorted(FILE_KEYS))}")
    if not isinstance(found.get("runtimes", {}), dict):
        raise ValueError(f"{path}: [runtimes] must be a table of name = 'template'")
    return found


def _runtimes(args: argparse.Namespace, file: dict[str, Any]) -> dict[str, list[str]]:
    table = runtimes.builtin()
    chosen: dict[str, list[str]] = {}
    for name, template in file.get("runtimes", {}).items():
        if not isinstance(template, str):
            raise ValueError(f"runtime {name!r}: the template must be a string")
        chosen.update([runtimes.parse(f"{name}={template}")])
    for spec in args.runtime:
        chosen.update([runtimes.parse(spec, table)])
    if not chosen:
        raise ValueError("name at least one --runtime")
    for name, argv in chosen.items():
        runtimes.check_program(name, argv)
    return chosen


def _config(args: argparse.Namespace) -> AgentConfig:
    if not args.broker.startswith(("http://", "https://")):
        raise ValueError(f"--broker must be an http:// or https:// URL, not {args.broker!r}")
    file = _file(args.config)
    chosen = _runtimes(args, file)

    def pick(name: str) -> Any:
        value = getattr(args, name)
        if value is None:
            value = file.get(name.replace("_", "-"), OPTIONS[name][1])
        return _option(name, value)

    limits = Limits(time=pick("time_limit"), cpu=pick("cpu_limit"),
                    memory=pick("memory_limit"), files=pick("files_limit"),
                    output=pick("output_limit"))
    return AgentConfig(broker=args.broker, runtimes=chosen,
                       token=tokens.resolve(args.token, args.token_file, tokens.WORKER_ENV),
                       concurrency=pick("concurrency"), wait=pick("wait"),
                       grace=pick("grace"), heartbeat=pick("heartbeat"), limits=limits,
                       live_log=_live_log(args.live_log, file.get("live-log", True)))


def _live_log(flag: bool | None, in_file: object) -> bool:
    if flag is not None:
        return flag
    if not isinstance(in_file, bool):
        raise ValueError(f"live-log must be true or false, not {in_file!r}")
    return in_file


async def _main(config: AgentConfig) -> None:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = "DEBUG" if args.debug else args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per job event, not per call
    try:
        config = _config(args)
    except (ValueError, OSError) as exc:
        print(f"worker-agent: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_main(config))
    except Fatal as exc:
        log.debug("the agent stopped", exc_info=True)
        print(f"worker-agent: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, not a traceback (--debug shows it)
        log.debug("the agent failed", exc_info=True)
        print(f"worker-agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
