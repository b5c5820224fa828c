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

from worker_agent import runtimes, tokens
from worker_agent.agent import Agent, AgentConfig
from worker_agent.runner import Limits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker-agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", default=os.environ.get("BROKER_URL", "http://127.0.0.1:8000"),
                   help="broker URL (env BROKER_URL)")
    p.add_argument("--runtime", action="append", default=[], metavar="NAME[=TEMPLATE]",
                   help="a runtime to serve: a built-in name (python3, sh, bash, node) or "
                        "name='argv template' with {function} {input} {output}; repeatable")
    tokens.add_arguments(p, "BROKER_WORKER_TOKEN")
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
    p.add_argument("--log-level", default="info")
    return p


def _config(args: argparse.Namespace) -> AgentConfig:
    file: dict[str, Any] = tomllib.loads(args.config.read_text()) if args.config else {}
    table = runtimes.builtin()
    chosen: dict[str, list[str]] = {}
    for name, template in file.get("runtimes", {}).items():
        chosen.update([runtimes.parse(f"{name}={template}")])
    for spec in args.runtime:
        chosen.update([runtimes.parse(spec, table)])
    if not chosen:
        raise ValueError("name at least one --runtime")

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return value if value is not None else file.get(name.replace("_", "-"),
                                                        file.get(name, default))

    limits = Limits(time=pick("time_limit", Limits.time), cpu=pick("cpu_limit", Limits.cpu),
                    memory=pick("memory_limit", Limits.memory),
                    files=pick("files_limit", Limits.files),
                    output=pick("output_limit", Limits.output))
    return AgentConfig(broker=args.broker, runtimes=chosen,
                       token=tokens.resolve(args.token, args.token_file, "BROKER_WORKER_TOKEN"),
                       concurrency=pick("concurrency", 1), wait=pick("wait", 30.0),
                       grace=pick("grace", 30.0), heartbeat=pick("heartbeat", 10.0),
                       limits=limits)


async def _main(config: AgentConfig) -> None:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per job event, not per call
    try:
        config = _config(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"worker-agent: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_main(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
