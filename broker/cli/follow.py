"""Following jobs as they go, for `submit --wait`, `wait` and `watch`: the broker's live feed
(GET /events), or, from a broker too old to have one, GET /job about once a second."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from broker.client.api import BrokerClient, BrokerError
from broker.client.events import GONE, Event, Gap, JobEvent, Ready, events, history, order
from broker.lifecycle import FINAL

POLL_MAX = 1.0  # how often polling asks after a job, at most
WORKERS_EVERY = 5.0  # how often a follower looks for live workers
FEED_IDS = 200  # job ids a feed names in its URL; past that it reads a wider feed and picks
ENDED = (*FINAL, *GONE)

Shown = Callable[[Event], Awaitable[None]]


def no_feed(exc: BrokerError) -> bool:
    """The broker has no such endpoint (it predates it), as opposed to no such job."""
    return exc.status == 404 and exc.code == "not_found"


def open_feed(client: BrokerClient, job_ids: list[str],
              runtimes: set[str]) -> AsyncGenerator[Event, None]:
    """The feed of these jobs' events, and maybe others' (callers pick by job id)."""
    if len(job_ids) <= FEED_IDS:
        return events(client, job_ids=job_ids)
    return events(client, runtime=next(iter(runtimes)) if len(runtimes) == 1 else None)


def _gone(job_id: str, how: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": how, "error": "", "data2_id": ""}


class Followed:
    """Jobs followed to their end: which have finished, told by the feed or by GET /job."""

    def __init__(self, client: BrokerClient, job_ids: list[str]) -> None:
        self.client = client
        self.job_ids = job_ids
        self.waiting = set(job_ids)
        self.read_ended: dict[str, dict[str, Any]] = {}  # GET /job found them finished
        self.seen_ended: dict[str, JobEvent] = {}  # the feed told of their end

    async def read(self) -> None:
        """GET each job still waiting. Called once the feed is live (or again after a gap),
        so that whatever changes after this read comes as an event."""
        for job_id in sorted(self.waiting):
            job = await self._get(job_id, "deleted")
            if job["status"] in ENDED:
                self.waiting.discard(job_id)
                self.read_ended[job_id] = job

    def see(self, event: JobEvent) -> None:
        if event.finished and event.job_id in self.waiting:
            self.waiting.discard(event.job_id)
            self.seen_ended[event.job_id] = event

    async def follow(self, feed: AsyncGenerator[Event, None], shown: Shown | None = None) -> None:
        """Read the feed until every job has finished; `shown` sees each event first."""
        live = False
        async for event in feed:
            if shown is not None:
                await shown(event)
            if isinstance(event, JobEvent):
                self.see(event)
            elif isinstance(event, Gap) or not live:
                live = True
                await self.read()
            if not self.waiting:
                return

    def statuses(self) -> dict[str, str]:
        """How each job ended, as far as the feed or the reads told."""
        told = {j: e.to if e.to in FINAL else e.event for j, e in self.seen_ended.items()}
        return {j: self.read_ended[j]["status"] if j in self.read_ended else told[j]
                for j in self.job_ids}

    async def finals(self) -> list[dict[str, Any]]:
        """Each job as it ended, in order: a job the feed saw end is read once more, for the
        fields its end set (the output id, the error)."""
        jobs = []
        for job_id in self.job_ids:
            job = self.read_ended.get(job_id)
            if job is None:
                event = self.seen_ended[job_id]
                job = await self._get(job_id, event.event)
                if job["status"] not in FINAL:  # run again since: say how this run ended
                    job = {**job, "status": event.to or event.event}
            jobs.append(job)
        return jobs

    async def _get(self, job_id: str, how: str) -> dict[str, Any]:
        try:
            return await self.client.get_job(job_id)
        except BrokerError as exc:
            if exc.status == 404 and not no_feed(exc):
                return _gone(job_id, how)
            raise


async def follow_jobs(client: BrokerClient, job_ids: list[str],
                      runtimes: set[str]) -> list[dict[str, Any]]:
    """Each job as it ended, once all have: from the feed, or by polling a broker that has
    none. Meanwhile says on stderr when no live worker serves one of `runtimes`."""
    warned = await say_workers(client, runtimes, set())
    warner = asyncio.create_task(_keep_saying(client, runtimes, warned))
    try:
        try:
            followed = Followed(client, job_ids)
            async with aclosing(open_feed(client, job_ids, runtimes)) as feed:
                await followed.follow(feed)
            return await followed.finals()
        except BrokerError as exc:
            if not no_feed(exc):
                raise
        return await poll(client, job_ids)
    finally:
        warner.cancel()
        await asyncio.gather(warner, return_exceptions=True)


async def poll(client: BrokerClient, job_ids: list[str]) -> list[dict[str, Any]]:
    """Each job as it ended, asking GET /job with a growing pause (an older broker's way)."""
    done: dict[str, dict[str, Any]] = {}
    delay = 0.05
    while True:
        for job_id in [j for j in job_ids if j not in done]:
            job = await client.get_job(job_id)
            if job["status"] in FINAL:
                done[job_id] = job
        if len(done) == len(job_ids):
            return [done[j] for j in job_ids]
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX)


async def _keep_saying(client: BrokerClient, runtimes: set[str], warned: set[str]) -> None:
    while True:
        await asyncio.sleep(WORKERS_EVERY)
        warned = await say_workers(client, runtimes, warned)


async def say_workers(client: BrokerClient, runtimes: set[str], warned: set[str]) -> set[str]:
    """Say once when no live worker serves a runtime, and once when one does again. Answers
    the runtimes the warning stands for."""
    live = {r["runtime"]: int(r["workers"]) for r in await client.runtimes()}
    none = {runtime for runtime in runtimes if not live.get(runtime)}
    for runtime in sorted(none - warned):
        print(f"broker: warning: no live worker serves runtime {runtime!r}; waiting for one "
              f"to register (broker workers lists them)", file=sys.stderr)
    for runtime in sorted(warned - none):
        print(f"broker: a worker for runtime {runtime!r} is live now", file=sys.stderr)
    return none


# -- watch -----------------------------------------------------------------------------------


def event_line(e: JobEvent) -> str:
    """One event as `broker watch` prints it, in columns."""
    worker = f"worker={e.worker_id}" if e.worker_id else ""
    attempt = "" if e.attempt is None else f"attempt={e.attempt}"
    reason = " ".join((e.reason or "").split())  # an error's lines, on this one
    return (f"{e.time:<24}  {e.job_id:<8}  {e.event:<10}  {e.from_ or '-':>9} -> "
            f"{e.to or '-':<9}  {worker:<15} {attempt:<10}  {reason}").rstrip()


class _Printer:
    """What `watch` shows: named jobs' history once the feed is live, then each new event
    that passes the filters; a gap as a warning."""

    def __init__(self, client: BrokerClient, job_ids: list[str], runtime: str | None,
                 status: str | None) -> None:
        self.client = client
        self.job_ids, self.named = job_ids, set(job_ids)
        self.runtime, self.status = runtime, status
        self.shown: dict[str, tuple[int, int]] = {}  # per job, the latest event printed
        self.live = False

    async def show(self, event: Event) -> None:
        if isinstance(event, Gap):
            print(f"broker: warning: {event.detail}", file=sys.stderr, flush=True)
        elif isinstance(event, Ready) and not self.live:
            self.live = True
            for job_id in self.job_ids:
                for past in await self._history(job_id):
                    self._print(past)
        elif isinstance(event, JobEvent):
            self._print(event)

    def _print(self, e: JobEvent) -> None:
        wanted = ((not self.named or e.job_id in self.named)
                  and self.runtime in (None, e.runtime) and self.status in (None, e.to))
        if wanted and order(e.id) > self.shown.get(e.job_id, (0, 0)):
            self.shown[e.job_id] = order(e.id)
            print(event_line(e), flush=True)

    async def _history(self, job_id: str) -> list[JobEvent]:
        try:
            return await history(self.client, job_id)
        except BrokerError as exc:
            if no_feed(exc):
                return []  # a broker that keeps no history: only what happens from now
            raise


async def watch(client: BrokerClient, job_ids: list[str], runtime: str | None,
                status: str | None) -> dict[str, str]:
    """Print events as they happen. With job ids: until they have all finished, answering
    how each ended; else until interrupted."""
    printer = _Printer(client, job_ids, runtime, status)
    if not job_ids:
        async with aclosing(events(client, runtime=runtime, status=status)) as feed:
            async for event in feed:
                await printer.show(event)
        return {}
    # The filters apply here, not in the feed: the events that end the jobs must come.
    followed = Followed(client, job_ids)
    async with aclosing(open_feed(client, job_ids, set())) as feed:
        await followed.follow(feed, printer.show)
    return followed.statuses()
