"""The requester's subcommands of `broker`: submit, job, data get, data put. They speak HTTP
only, through the same client as the agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from worker_agent import tokens
from worker_agent.client import BrokerClient, BrokerError, Progress, Unreachable

FINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("pending", "running", *FINAL)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--broker", default=os.environ.get("BROKER_URL", "http://127.0.0.1:8000"),
                     help="broker URL (env BROKER_URL)")
    tokens.add_arguments(url, "BROKER_REQUESTER_TOKEN")
    submit = commands.add_parser("submit", parents=[url], help="upload and submit a job")
    submit.add_argument("--runtime", required=True)
    submit.add_argument("--function", required=True, type=Path, help="the function's code")
    submit.add_argument("--input", type=Path, help="the job's input (none: empty)")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end")
    submit.add_argument("--output", type=Path, help="with --wait: write the output here")
    job = commands.add_parser("job", parents=[url], help="show a job as JSON")
    job.add_argument("job_id")
    data = commands.add_parser("data", help="download or upload data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    get = data_commands.add_parser("get", parents=[url], help="download data to a file")
    get.add_argument("data_id")
    get.add_argument("-o", "--output", type=Path, required=True)
    put = data_commands.add_parser("put", parents=[url], help="upload a file; print its id")
    put.add_argument("file", type=Path)
    put.add_argument("--id", dest="data_id", help="replace this existing data id instead")
    commands.add_parser("status", parents=[url],
                        help="per runtime: pending, running, workers; and the latest failures")
    jobs = commands.add_parser("jobs", parents=[url], help="list jobs, newest first")
    jobs.add_argument("--status", choices=STATUSES)
    jobs.add_argument("--runtime")
    jobs.add_argument("--limit", type=int, default=20)
    commands.add_parser("workers", parents=[url], help="list registered workers")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except BrokerError as exc:
        print(f"broker: {exc.code}: {exc.detail}", file=sys.stderr)
    except (Unreachable, OSError, ValueError) as exc:
        print(f"broker: {exc}", file=sys.stderr)
    return 1


async def _run(args: argparse.Namespace) -> int:
    token = tokens.resolve(args.token, args.token_file, "BROKER_REQUESTER_TOKEN")
    async with BrokerClient(args.broker, token=token) as client:
        if args.command == "submit":
            return await _submit(client, args)
        if args.command == "job":
            print(json.dumps(await client.get_job(args.job_id), indent=2))
            return 0
        if args.command in ("status", "jobs", "workers"):
            print(await _report(client, args))
            return 0
        if args.data_command == "get":
            with _bar(f"get {args.data_id}", None) as progress:
                await client.download(args.data_id, args.output, progress=progress)
            return 0
        size = args.file.stat().st_size
        with _bar(f"put {args.file.name}", size) as progress:
            if args.data_id:
                data_id = await client.put_data(args.data_id, args.file, progress=progress)
            else:
                data_id = await client.upload(args.file, progress=progress)
        print(data_id)
        return 0


@contextmanager
def _bar(label: str, total: int | None) -> Iterator[Progress]:
    """A progress bar on stderr, shown only once a transfer has taken more than a moment."""
    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
              delay=0.5, leave=False, file=sys.stderr) as bar:
        def advance(n: int) -> None:
            bar.update(n)
        yield advance


async def _submit(client: BrokerClient, args: argparse.Namespace) -> int:
    with _bar(f"put {args.function.name}", args.function.stat().st_size) as progress:
        function_id = await client.upload(args.function, progress=progress)
    input_id = ""
    if args.input is not None:
        with _bar(f"put {args.input.name}", args.input.stat().st_size) as progress:
            input_id = await client.upload(args.input, progress=progress)
    job_id = await client.submit(args.runtime, function_id, data1_id=input_id)
    print(job_id, flush=True)
    if not args.wait:
        return 0
    job = await _follow(client, job_id)
    if job["status"] != "succeeded":
        print(f"broker: job {job_id} {job['status']}: {job.get('error') or ''}".rstrip(),
              file=sys.stderr)
        return 1
    if args.output is not None:
        with _bar(f"get {job['data2_id']}", None) as progress:
            await client.download(job["data2_id"], args.output, progress=progress)
    return 0


async def _follow(client: BrokerClient, job_id: str) -> dict[str, Any]:
    delay = 0.05
    while True:
        job = await client.get_job(job_id)
        if job["status"] in FINAL:
            return job
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Plain columns, as `docker ps` prints them."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [[j["job_id"], j["runtime"], j["status"], j["attempts"], j["updated_at"],
             (j.get("error") or "").splitlines()[0][:60] if j.get("error") else ""]
            for j in jobs]


async def _report(client: BrokerClient, args: argparse.Namespace) -> str:
    job_headers = ["JOB", "RUNTIME", "STATUS", "ATTEMPTS", "UPDATED", "ERROR"]
    if args.command == "jobs":
        jobs = await client.list_jobs(args.status, args.runtime, args.limit)
        return table(job_headers, _job_rows(jobs))
    if args.command == "workers":
        workers = await client.list_workers()
        return table(["WORKER", "RUNTIMES", "LAST SEEN", "RUNNING"],
                     [[w["worker_id"], ",".join(w["Runtime"]), w["last_seen"],
                       " ".join(w["running"]) or "-"] for w in workers])
    runtimes = await client.runtimes()
    failures = await client.list_jobs("failed", limit=5)
    return "\n".join([
        table(["RUNTIME", "PENDING", "RUNNING", "WORKERS"],
              [[r["runtime"], r["pending"], r["running"], r["workers"]] for r in runtimes]),
        "", "Latest failures:",
        table(job_headers, _job_rows(failures)) if failures else "  none"])
