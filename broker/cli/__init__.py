"""The requester's subcommands of `broker`: submit, wait, watch, logs, job, cancel, rerun,
delete, data, status, jobs, workers, pause, resume. They speak HTTP only, through the client the
agent uses too.

This module builds the parser and nothing else, so `broker --help` and a mistyped command
answer at once: the HTTP client, asyncio and the progress bars are imported by `run`, when a
command actually talks to a broker.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from broker.client.tokens import REQUESTER_ENV as TOKEN_ENV
from broker.lifecycle import STATUSES


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--broker", default=os.environ.get("BROKER_URL", "http://127.0.0.1:8000"),
                        help="broker URL (env BROKER_URL)")
    common.add_argument("--token", default=None, help=f"bearer token (env {TOKEN_ENV})")
    common.add_argument("--token-file", type=Path, default=None,
                        help=f"file holding the bearer token (env {TOKEN_ENV}_FILE)")
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of an error, not only its one line")
    return common


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {raw!r}")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {raw!r}")
    return value


def _whole(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, not {raw!r}")
    return value


def _priority(raw: str) -> int:
    value = int(raw)
    if not -100 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from -100 to 100, not {raw!r}")
    return value


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help, description=help)

    submit = command("submit", "upload a function and its inputs, submit a job per input")
    submit.add_argument("--runtime", required=True)
    submit.add_argument("--function", required=True, type=Path, help="the function's code")
    submit.add_argument("--input", type=Path, action="append", default=[],
                        help="an input file; repeat it for one job per input (none: one job "
                             "with empty input)")
    submit.add_argument("--max-attempts", type=_count, help="runs each job may start")
    submit.add_argument("--timeout", type=_seconds, help="time limit of each run, seconds")
    submit.add_argument("--priority", type=_priority,
                        help="-100 to 100, higher goes first (default 0)")
    later = submit.add_mutually_exclusive_group()
    later.add_argument("--delay", type=_seconds, metavar="SECONDS",
                       help="run the jobs this many seconds from now")
    later.add_argument("--at", dest="run_at", metavar="TIME",
                       help="run the jobs at this RFC 3339 time, e.g. 2026-12-05T10:00:00Z")
    submit.add_argument("--after", action="append", default=[], metavar="JOB",
                        help="run only once job JOB has succeeded (repeat for several)")
    submit.add_argument("--input-from", metavar="JOB",
                        help="take job JOB's output as the input: the job waits until JOB has "
                             "succeeded (JOB needs a reserved output: --reserve-output)")
    submit.add_argument("--reserve-output", action="store_true",
                        help="reserve each job's output id (POST /data/reg) so that later "
                             "jobs can take it with --input-from")
    submit.add_argument("--ttl", type=_whole, metavar="SECONDS",
                        help="keep each job this long once finished (0: for ever; default: "
                             "the broker's BROKER_JOB_TTL)")
    _follow_options(submit, "follow the jobs to their end; exit 1 unless all succeeded")

    wait = command("wait", "follow jobs to their end; exit 1 unless all succeeded")
    wait.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    _follow_options(wait, None)

    watch = command("watch", "print job events as they happen (named jobs: their history "
                             "first, and exit once all have finished, 1 unless all succeeded; "
                             "none named: every job's, until interrupted)")
    watch.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    watch.add_argument("--runtime", help="only the events of this runtime's jobs")
    watch.add_argument("--status", choices=STATUSES, help="only the events into this status")

    logs = command("logs", "write a job's log (what its function writes to stderr) to stdout")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="go on writing what the function writes until the job has finished")

    for name, text in (("job", "show a job as JSON"),
                       ("cancel", "cancel a pending or running job"),
                       ("rerun", "run a finished job again (it keeps its id)"),
                       ("delete", "delete a job (a running one is cancelled first)")):
        command(name, text).add_argument("job_id")

    data = commands.add_parser("data", help="download or upload data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    get = data_commands.add_parser("get", parents=[common], help="download data to a file")
    get.add_argument("data_id")
    get.add_argument("-o", "--output", type=Path, required=True)
    put = data_commands.add_parser("put", parents=[common], help="upload a file; print its id")
    put.add_argument("file", type=Path)
    put.add_argument("--id", dest="data_id", help="replace this existing data id instead")

    command("status", "per runtime: pending, scheduled, running, workers, paused; and the "
                      "latest failures")
    jobs = command("jobs", "list jobs, newest first")
    jobs.add_argument("--status", choices=STATUSES)
    jobs.add_argument("--runtime")
    jobs.add_argument("--limit", type=_count, default=20, help="rows per page (20)")
    jobs.add_argument("--cursor", help="go on from where a page ended (it prints the cursor)")
    jobs.add_argument("--all", action="store_true", help="every page, not only the first")
    command("workers", "list registered workers")
    command("pause", "stop handing out a runtime's jobs (they stay pending, in order)"
            ).add_argument("runtime")
    command("resume", "hand out a paused runtime's jobs again").add_argument("runtime")


def _follow_options(parser: argparse.ArgumentParser, wait_help: str | None) -> None:
    if wait_help is not None:
        parser.add_argument("--wait", action="store_true", help=wait_help)
    parser.add_argument("--output", type=Path,
                        help="write the output here (with several jobs: a directory, one file "
                             "per job named by its id)")
    parser.add_argument("--wait-timeout", type=_seconds, metavar="SECONDS",
                        help="give up following after this long (exit 1); the jobs go on")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say alone: refused as a usage error (exit 2)."""
    if args.command == "submit" and args.input_from and args.input:
        parser.error("submit: --input-from and --input name the same thing; give one")
    if args.command == "submit" and not args.wait:
        if args.output is not None:
            parser.error("submit: --output needs --wait (the output exists once the job ends); "
                         "or follow it later with: broker wait JOB_ID --output FILE")
        if args.wait_timeout is not None:
            parser.error("submit: --wait-timeout needs --wait")


def run(args: argparse.Namespace) -> int:
    from broker.cli.commands import run as run_command

    return run_command(args)
