"""GET /events (the live feed of job events, Server-Sent Events), GET /job/events (one job's
history), and a job's live log: POST /job/log (its worker appends), GET /job/log (read, or
follow until the job ends)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broker import ids, lifecycle, wire
from broker.errors import BadRequest, BrokerError, NotFound, UnsupportedMediaType
from broker.events import webhook
from broker.events.feed import Filter, Subscription, later
from broker.http import inputs
from broker.http.auth import REQUESTER, SELF
from broker.http.endpoint import Endpoint
from broker.http.operation import NO_CONTENT, errors, json_response, operation, response
from broker.http.responses import JSONResponse
from broker.http.services import services_of
from broker.store.logs import MAX_CHUNK

log = logging.getLogger("broker.events")

KEEPALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open
MAX_EVERY = 60  # seconds a coalesced feed may ask between its messages
SHOWN = 100  # job ids one `changed` message names at most
MAX_JOB_IDS = 1000  # job ids one feed may follow
STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
ENDED = frozenset(lifecycle.FINAL)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _filter(request: Request) -> Filter:
    q = request.query_params
    job_ids = [part for raw in q.getlist("job_id") for part in raw.split(",") if part]
    if len(job_ids) > MAX_JOB_IDS:
        raise BadRequest(f"at most {MAX_JOB_IDS} job ids", code="invalid_query", field="job_id")
    for job_id in job_ids:
        ids.check_id(job_id, "job_id")
    status = q.get("status") or None
    if status is not None and status not in lifecycle.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(lifecycle.STATUSES)}",
                         code="invalid_query", field="status")
    runtime = ids.check_runtime(q["runtime"]) if q.get("runtime") else None
    return Filter(frozenset(job_ids), runtime, status)


def _last_id(request: Request) -> str | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if not raw:
        return None
    if not STREAM_ID.match(raw):
        raise BadRequest("Last-Event-ID must be the id of an event this feed sent",
                         code="invalid_query", field="Last-Event-ID")
    return raw


def _every(request: Request) -> int | None:
    raw = request.query_params.get("every")
    if raw is None:
        return None
    value = inputs.digits(raw)
    if value is None or not 1 <= value <= MAX_EVERY:
        raise BadRequest(f"every must be a whole number of seconds from 1 to {MAX_EVERY}",
                         code="invalid_query", field="every")
    return value


def sse(name: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def events(request: Request) -> Response:
    wanted, after, every = _filter(request), _last_id(request), _every(request)
    feed = services_of(request).feed

    async def body() -> AsyncIterator[bytes]:
        sub = Subscription(wanted, coalesce=every is not None)
        try:
            await feed.subscribe(sub)  # before the catch-up read: nothing falls between them
            yield b"retry: 2000\n\n"
            if every is not None:  # no catch-up: the client reads the state when `ready`
                yield sse("ready", {"last_id": ""})
                async for chunk in _coalesced(sub, every):
                    yield chunk
                return
            last = after
            if after is not None:
                first = await feed.missed_since(after)
                if first is not None:
                    yield sse("gap", {"detail": f"events after {after} were trimmed from the "
                                      "stream; read the jobs you follow again (GET /job)",
                                      "first_id": first})
                async for old in feed.history(after):
                    last = old["id"]
                    if wanted.matches(old):
                        yield sse("job", old, old["id"])
            yield sse("ready", {"last_id": last or ""})
            async for chunk in _live(sub, last):
                yield chunk
        except RedisError as exc:  # the answer has begun: end it; the client resumes
            log.warning("events feed ended: Redis unavailable (%s)", exc)
        finally:
            feed.unsubscribe(sub)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _live(sub: Subscription, last: str | None) -> AsyncIterator[bytes]:
    """The subscription's events as they come (none already sent: not after `last`), with
    keepalives, until it is dropped (too slow, or the broker stops: the client resumes)."""
    while True:
        e = await sub.next(KEEPALIVE)
        if e is None:
            if sub.dropped:
                return
            yield b": keepalive\n\n"
        elif last is None or later(e["id"], last):
            last = e["id"]
            yield sse("job", e, e["id"])


async def _coalesced(sub: Subscription, every: int) -> AsyncIterator[bytes]:
    """At most one `changed` message each `every` seconds, summing up the events since the
    last one (the first change of a quiet spell goes at once), with keepalives, until the
    subscription is dropped (the broker stops). Its cost does not grow with the event rate."""
    sent = 0.0
    while True:
        first = await sub.next(KEEPALIVE)
        if first is None:
            if sub.dropped:
                return
            yield b": keepalive\n\n"
            continue
        while (wait := sent + every - time.monotonic()) > 0 and not sub.dropped:
            await asyncio.sleep(min(wait, 0.25))
        batch = [first, *sub.drain()]
        overflow, sub.overflow = sub.overflow, 0
        job_ids = list(dict.fromkeys(e["job_id"] for e in batch))
        yield sse("changed", {
            "events": len(batch) + overflow, "job_ids": job_ids[:SHOWN],
            "runtimes": sorted({e["runtime"] for e in batch}),
            "statuses": sorted({e["to"] for e in batch if e["to"]}),
            "complete": overflow == 0 and len(job_ids) <= SHOWN},
            sub.overflow_id if overflow else batch[-1]["id"])
        sent = time.monotonic()


async def job_events(request: Request) -> Response:
    job_id = inputs.header_id(request, "X-Job-Id")
    assert job_id is not None
    services = services_of(request)
    h = await services.jobs.get(job_id)  # 404 unknown_job when there is none
    return JSONResponse({"events": wire.history(job_id, h)})


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset")
    value = inputs.digits(raw) if raw is not None else 0
    if value is None:
        raise BadRequest("offset must be a number of bytes", code="invalid_query",
                         field="offset")
    return value


async def get_log(request: Request) -> Response:
    job_id = inputs.header_id(request, "X-Job-Id")
    assert job_id is not None
    offset = _offset(request)
    services = services_of(request)
    read = await services.logs.read(job_id, offset)
    headers = {"X-Log-Start": str(read.start), "X-Log-Size": str(read.size)}
    if request.query_params.get("follow") not in ("1", "true"):
        return Response(read.data, media_type="text/plain; charset=utf-8", headers=headers)
    return StreamingResponse(_follow(request, job_id, offset),
                             media_type="text/plain; charset=utf-8",
                             headers={**headers, "Cache-Control": "no-cache",
                                      "X-Accel-Buffering": "no"})


async def _follow(request: Request, job_id: str, offset: int) -> AsyncIterator[bytes]:
    """The log from `offset`, then what is appended, until the job ends or goes."""
    services = services_of(request)
    sub = Subscription(Filter(frozenset({job_id})))
    try:
        await services.feed.subscribe(sub)  # its events, and its log's growth, wake this
        while True:
            sub.woken.clear()
            while not sub.queue.empty():
                sub.queue.get_nowait()
            try:
                read = await services.logs.read(job_id, offset)
            except NotFound:
                return
            if read.data:
                yield read.data
            offset = read.size
            if read.status in ENDED or sub.dropped:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.woken.wait(), KEEPALIVE)
    except RedisError as exc:
        log.warning("log follower ended: Redis unavailable (%s)", exc)
    finally:
        services.feed.unsubscribe(sub)


async def append_log(request: Request) -> Response:
    job_id = inputs.header_id(request, "X-Job-Id")
    worker_id = inputs.worker_id(request)
    assert job_id is not None and worker_id is not None
    lease = inputs.lease(request.headers.get("X-Lease", ""), "X-Lease")
    media = inputs.media_type(request)
    if media not in ("application/octet-stream", "text/plain"):
        raise UnsupportedMediaType(
            f"a log chunk is application/octet-stream or text/plain, not {media or 'untyped'}")
    chunk = await _chunk(request)
    await services_of(request).logs.append(job_id, worker_id, lease, chunk)
    return Response(status_code=204)


async def _chunk(request: Request) -> bytes:
    chunk = await inputs.bounded_body(request, MAX_CHUNK, "a log chunk")
    if not chunk:
        raise BadRequest("a log chunk needs a body", code="missing_body")
    return chunk


async def webhooks(request: Request) -> Response:
    services = services_of(request)
    if services.webhook_queue is None:
        raise BrokerError("webhooks are not delivered by a broker on its in-process store",
                          code="not_ready", status=503)
    outbox = await services.redis.xlen(services.keys.outbox)
    rq_side = await asyncio.to_thread(webhook.counts, services.webhook_queue)
    return JSONResponse({"outbox": outbox, **rq_side})


EVENT_QUERY = ("EventsJobId", "EventsRuntime", "JobStatus", "LastEventId", "EventsEvery")
ENDPOINTS = [
    Endpoint("GET", "/events", events, frozenset({REQUESTER}), operation(
        "events", "The live feed of job events (Server-Sent Events)", "events",
        {"200": response("An endless text/event-stream: `retry`, then a `gap` event when "
                         "Last-Event-ID is no longer in the stream, the events after it, a "
                         "`ready` event, then each `job` event as it happens (id: the stream "
                         "id), with `: keepalive` comments. With `every=N`: `retry`, `ready`, "
                         "then at most one `changed` event each N seconds summing up what "
                         "happened since the last (no catch-up).",
                         {"text/event-stream": {"type": "string"}}),
         **errors(400, 503)},
        parameters=EVENT_QUERY), head=False),
    Endpoint("GET", "/job/events", job_events, frozenset({REQUESTER}), operation(
        "jobEvents", "A job's history, oldest first", "events",
        {"200": json_response("Its events.", "JobEvents"), **errors(400, 404, 503)},
        parameters=("JobIdRequired",))),
    Endpoint("GET", "/job/log", get_log, frozenset({REQUESTER}), operation(
        "jobLog", "A job's live log (its function's stderr), or follow it", "events",
        {"200": response("The log's bytes from `offset` (the broker keeps the last "
                         "BROKER_LOG_MAX). With follow=1 the body goes on with what is "
                         "written until the job ends.",
                         {"text/plain": {"type": "string"}}, "X-Log-Start", "X-Log-Size"),
         **errors(400, 404, 503)},
        parameters=("JobIdRequired", "LogOffset", "LogFollow")), head=False),
    Endpoint("GET", "/webhooks", webhooks, frozenset({REQUESTER}), operation(
        "webhooks", "Where webhook deliveries stand", "events",
        {"200": json_response("Entries not yet on rq (outbox), and rq's counts: queued, "
                              "retrying, failed for good (its failed job registry, the latest "
                              "with their error), notifiers listening.", "Webhooks"),
         **errors(503)})),
    Endpoint("POST", "/job/log", append_log, frozenset({SELF}), operation(
        "appendJobLog", "Append to the live log of the job this worker runs", "events",
        {**NO_CONTENT, **errors(400, 403, 404, 409, 413, 415, 503)},
        parameters=("JobIdRequired", "WorkerId", "Lease"),
        body={"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "contentMediaType": "application/octet-stream",
                       "maxLength": MAX_CHUNK}}}})),
]
