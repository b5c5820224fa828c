"""What each requester command does, over HTTP, through the agent's client."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

from broker.cli.follow import follow_jobs, watch
from broker.cli.tables import job_rows, table
from broker.client import tokens
from broker.client.api import BrokerClient, BrokerError, Unreachable
from broker.client.events import follow_log, read_log, webhooks
from broker.client.tokens import REQUESTER_ENV
from broker.client.transfer import Progress

BATCH = 1000  # jobs per POST /jobs (the broker's limit)


class Failed(Exception):
    """The command ran and its answer is "no" (a job that did not succeed): exit 1."""


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except Failed as exc:
        print(f"broker: {exc}", file=sys.stderr)
    except BrokerError as exc:
        _error(args, exc, f"{exc.code}: {exc.detail}")
    except (Unreachable, OSError, ValueError) as exc:
        _error(args, exc, str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        print("broker: interrupted", file=sys.stderr)
        return 130
    return 1


def _error(args: argparse.Namespace, exc: Exception, line: str) -> None:
    if args.debug:
        logging.basicConfig()
        logging.getLogger("broker").error("the command failed", exc_info=exc)
    print(f"broker: {line}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    token = tokens.resolve(args.token, args.token_file, REQUESTER_ENV)
    async with BrokerClient(args.broker, token=token) as client:
        handler = COMMANDS[args.command]
        await handler(client, args)
        return 0


# -- jobs ------------------------------------------------------------------------------------


async def _submit(client: BrokerClient, args: argparse.Namespace) -> None:
    inputs: list[Path | None] = list(args.input) or [None]
    for path in [args.function, *args.input]:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
    with _bar(f"put {args.function.name}", args.function.stat().st_size) as progress:
        function_id = await client.upload(args.function, progress=progress)
    options = {k: v for k, v in (("max_attempts", args.max_attempts),
                                 ("timeout", args.timeout), ("priority", args.priority),
                                 ("delay", args.delay), ("run_at", args.run_at),
                                 ("ttl", args.ttl), ("after", args.after or None))
               if v is not None}
    bodies = [{"runtime": args.runtime, "function_id": function_id,
               "data1_id": await _input_id(client, args, path), **options} for path in inputs]
    if args.reserve_output:
        for body in bodies:
            body["data2_id"] = await client.reserve()
    if len(bodies) == 1:
        job_ids = [await client.submit(**bodies[0])]
    else:
        job_ids = await _submit_many(client, bodies)
    for job_id in job_ids:
        print(job_id, flush=True)
    if args.wait:
        await _follow_all(client, job_ids, args, {args.runtime})
    elif await _count_workers(client, args.runtime) == 0:
        print(f"broker: warning: no live worker serves runtime {args.runtime!r}; the job "
              f"waits until one registers (broker workers lists them)", file=sys.stderr)


async def _input_id(client: BrokerClient, args: argparse.Namespace, path: Path | None) -> str:
    """A job's data1_id: the output of the job named by --input-from, or an upload."""
    if not args.input_from:
        return await _upload_input(client, path)
    upstream = await client.get_job(args.input_from)
    if not upstream["data2_id"]:
        raise ValueError(f"job {args.input_from} has no reserved output to take as input: "
                         f"submit it with --reserve-output")
    data_id: str = upstream["data2_id"]
    return data_id


async def _upload_input(client: BrokerClient, path: Path | None) -> str:
    if path is None:
        return ""
    with _bar(f"put {path.name}", path.stat().st_size) as progress:
        return await client.upload(path, progress=progress)


async def _submit_many(client: BrokerClient, bodies: list[dict[str, Any]]) -> list[str]:
    job_ids: list[str] = []
    refused = 0
    for start in range(0, len(bodies), BATCH):
        results = await client.submit_many(bodies[start:start + BATCH])
        for i, result in enumerate(results, start + 1):
            if "job_id" in result:
                job_ids.append(result["job_id"])
            else:
                refused += 1
                print(f"broker: input {i}: {result['error']}: {result['detail']}",
                      file=sys.stderr)
    if refused:
        for job_id in job_ids:
            print(job_id)
        raise Failed(f"{refused} of {len(bodies)} jobs were refused; the others were created")
    return job_ids


async def _wait(client: BrokerClient, args: argparse.Namespace) -> None:
    job_ids = list(dict.fromkeys(args.job_ids))
    runtimes = {(await client.get_job(job_id))["runtime"] for job_id in job_ids}
    await _follow_all(client, job_ids, args, runtimes)


async def _follow_all(client: BrokerClient, job_ids: list[str], args: argparse.Namespace,
                      runtimes: set[str]) -> None:
    """Follow jobs to their end, write their outputs, and fail unless all succeeded."""
    try:
        async with asyncio.timeout(args.wait_timeout):
            jobs = await follow_jobs(client, job_ids, runtimes)
    except TimeoutError:
        if args.wait_timeout is None:
            raise
        raise Failed(f"job(s) still not finished after {args.wait_timeout:g} s; they go on "
                     f"(broker wait JOB_ID... follows them again)") from None
    failed = [j for j in jobs if j["status"] != "succeeded"]
    for job in failed:
        error = (job.get("error") or "").strip()
        print(f"broker: job {job['job_id']} {job['status']}: {error}".rstrip(), file=sys.stderr)
    if args.output is not None:
        for job in jobs:
            if job["status"] == "succeeded" and job["data2_id"]:
                dest = args.output if len(job_ids) == 1 else args.output / job["job_id"]
                if len(job_ids) > 1:
                    args.output.mkdir(parents=True, exist_ok=True)
                with _bar(f"get {job['data2_id']}", None) as progress:
                    await client.download(job["data2_id"], dest, progress=progress)
    if failed:
        raise Failed(f"{len(failed)} of {len(jobs)} jobs did not succeed" if len(jobs) > 1
                     else f"job {failed[0]['job_id']} did not succeed")


async def _count_workers(client: BrokerClient, runtime: str) -> int:
    rows = await client.runtimes()
    return next((int(r["workers"]) for r in rows if r["runtime"] == runtime), 0)


async def _watch(client: BrokerClient, args: argparse.Namespace) -> None:
    job_ids = list(dict.fromkeys(args.job_ids))
    ended = await watch(client, job_ids, args.runtime, args.status)
    failed = [job_id for job_id, status in ended.items() if status != "succeeded"]
    if len(failed) == 1:
        raise Failed(f"job {failed[0]} {ended[failed[0]]}")
    if failed:
        raise Failed(f"{len(failed)} of {len(ended)} jobs did not succeed")


async def _logs(client: BrokerClient, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer  # a log is bytes, not always UTF-8
    if not args.follow:
        part = await read_log(client, args.job_id)
        _say_skipped(0, part.start)
        out.write(part.data)
        out.flush()
        return
    async with aclosing(follow_log(client, args.job_id, skipped=_say_skipped)) as log:
        async for chunk in log:
            out.write(chunk)
            out.flush()


def _say_skipped(start: int, kept: int) -> None:
    if kept > start:
        print(f"broker: the log's bytes {start} to {kept} are no longer kept (the broker keeps "
              f"its last BROKER_LOG_MAX bytes)", file=sys.stderr, flush=True)


async def _job(client: BrokerClient, args: argparse.Namespace) -> None:
    job = await client.get_job(args.job_id)
    print(json.dumps(job, indent=2))
    if job.get("waiting"):  # why it is not running, for people; stdout stays JSON
        print(f"broker: {job['status']}: {job['waiting']['detail']}", file=sys.stderr)


async def _cancel(client: BrokerClient, args: argparse.Namespace) -> None:
    await client.put_job(args.job_id, {"status": "cancelled"})


async def _rerun(client: BrokerClient, args: argparse.Namespace) -> None:
    await client.put_job(args.job_id, {"status": "pending"})


async def _delete(client: BrokerClient, args: argparse.Namespace) -> None:
    await client.delete_job(args.job_id)


# -- data ------------------------------------------------------------------------------------


async def _data(client: BrokerClient, args: argparse.Namespace) -> None:
    if args.data_command == "get":
        with _bar(f"get {args.data_id}", None) as progress:
            await client.download(args.data_id, args.output, progress=progress)
        return
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file")
    with _bar(f"put {args.file.name}", args.file.stat().st_size) as progress:
        if args.data_id:
            data_id = await client.put_data(args.data_id, args.file, progress=progress)
        else:
            data_id = await client.upload(args.file, progress=progress)
    print(data_id)


@contextmanager
def _bar(label: str, total: int | None) -> Iterator[Progress]:
    """A progress bar on stderr, shown only once a transfer has taken more than a moment; it
    follows the transfer's position, so a retried transfer starts it again from 0."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
              delay=0.5, leave=False, file=sys.stderr) as bar:
        def move_to(done: int) -> None:
            bar.update(done - bar.n)
        yield move_to


# -- listings --------------------------------------------------------------------------------


async def _jobs(client: BrokerClient, args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        page, cursor = await client.jobs_page(args.status, args.runtime, args.limit, cursor)
        rows += page
        if not args.all or cursor is None:
            break
    print(table(["JOB", "RUNTIME", "STATUS", "ATTEMPTS", "UPDATED", "ERROR"], job_rows(rows)))
    if cursor is not None:
        again = " ".join(["broker jobs", *(f"--{k} {v}" for k, v in (
            ("status", args.status), ("runtime", args.runtime)) if v),
            f"--limit {args.limit}", f"--cursor {cursor}"])
        print(f"(more: {again}, or --all for every page)", file=sys.stderr)


async def _workers(client: BrokerClient, args: argparse.Namespace) -> None:
    workers = await client.list_workers()
    print(table(["WORKER", "RUNTIMES", "LAST SEEN", "RUNNING"],
                [[w["worker_id"], ",".join(w["Runtime"]), w["last_seen"],
                  " ".join(w["running"]) or "-"] for w in workers]))


async def _status(client: BrokerClient, args: argparse.Namespace) -> None:
    runtimes = await client.runtimes()
    failures = await client.list_jobs("failed", limit=5)
    print("\n".join([
        table(["RUNTIME", "PENDING", "SCHEDULED", "RUNNING", "WORKERS", "PAUSED"],
              [[r["runtime"], r["pending"], r["scheduled"], r["running"], r["workers"],
                "yes" if r["paused"] else "-"] for r in runtimes]),
        "", "Latest failures:",
        table(["JOB", "RUNTIME", "STATUS", "ATTEMPTS", "UPDATED", "ERROR"], job_rows(failures))
        if failures else "  none",
        "", *_webhook_lines(await webhooks(client))]))


def _webhook_lines(state: dict[str, Any] | None) -> list[str]:
    if state is None:
        return ["Webhooks: not delivered (the broker keeps its data in its own process)"]
    lines = [f"Webhooks: {state['outbox']} to enqueue, {state['queued']} queued, "
             f"{state['retrying']} waiting to retry, {state['failed']} failed for good "
             f"(rq's failed job registry); {state['notifiers']} notifier(s) listening"]
    if state["latest_failures"]:
        lines.append(table(["DELIVERY", "FAILED", "URL", "ERROR"], [
            [f["delivery"], f["failed_at"] or "-", f["url"], f["error"]]
            for f in state["latest_failures"]]))
    return lines


async def _pause(client: BrokerClient, args: argparse.Namespace) -> None:
    await client.pause(args.runtime, args.command == "pause")


COMMANDS = {
    "submit": _submit, "wait": _wait, "watch": _watch, "logs": _logs, "job": _job,
    "cancel": _cancel, "rerun": _rerun, "delete": _delete, "data": _data, "jobs": _jobs,
    "workers": _workers, "status": _status, "pause": _pause, "resume": _pause,
}
