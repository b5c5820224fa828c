"""Following the broker as things happen: its live feed of job events (GET /events,
Server-Sent Events) and a job's live log (GET /job/log?follow=1). Each is resumed where it
stopped when the connection drops, so a caller sees one unbroken sequence.

Both read through a BrokerClient's own HTTP connection pool, base URL and token.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from broker.client.api import BrokerClient, BrokerError, Unreachable, _raise_for, backoff
from broker.lifecycle import FINAL

# The feed sends a keepalive every 15 s; four missed in a row mean the connection is dead
# (a half-open TCP connection would otherwise hang the reader for ever).
STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)
DEFAULT_RETRY = 2.0  # seconds before reconnecting, until the broker's `retry:` says otherwise
RECONNECT_CAP = 10.0
GONE = ("deleted", "expired")
BLIND = ("the feed reconnected with no event id to resume from; events between the two "
         "connections may be lost: read the jobs you follow again (GET /job)")
_LINE_END = re.compile(rb"\r\n|\r|\n")


# -- the wire format -------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One dispatched SSE event: its type ("message" when it named none), its data lines
    joined by "\\n", and the last event id seen when it was dispatched."""

    event: str
    data: str
    id: str


class SSEParser:
    """The text/event-stream format (WHATWG HTML, "Interpreting an event stream"), fed bytes
    as they arrive, cut anywhere: lines end in CRLF, LF or CR; a blank line dispatches; lines
    starting with ":" are comments; an event cut off by the end of the stream is dropped."""

    def __init__(self, last_id: str = "") -> None:
        self.last_id = last_id  # kept across events, as a reconnection needs it
        self.retry: int | None = None  # milliseconds, once the stream has said
        self._buffer = b""
        self._after_cr = False  # the last chunk ended in CR: a LF opening the next is its pair
        self._first = True
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Message]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = False
        buffer = self._buffer + chunk
        messages: list[Message] = []
        start = 0
        for end in _LINE_END.finditer(buffer):
            message = self._line(buffer[start:end.start()])
            if message is not None:
                messages.append(message)
            start = end.end()
            self._after_cr = end.group() == b"\r" and start == len(buffer)
        self._buffer = buffer[start:]
        return messages

    def _line(self, raw: bytes) -> Message | None:
        # Decoded a whole line at a time, so a character cut between chunks stays whole.
        line = raw.decode("utf-8", "replace")
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Message(event or "message", "\n".join(data), self.last_id)


# -- typed events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobEvent:
    """One change of one job (`id` is its stream id); the same shape as GET /job/events."""

    id: str
    event: str
    job_id: str
    runtime: str
    from_: str | None
    to: str | None
    worker_id: str | None
    attempt: int | None
    time: str
    reason: str | None

    @property
    def finished(self) -> bool:
        """The job has ended (succeeded, failed, cancelled) or is gone (deleted, expired)."""
        return self.to in FINAL or self.event in GONE

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobEvent:
        attempt = body.get("attempt")
        return cls(id=str(body["id"]), event=str(body["event"]), job_id=str(body["job_id"]),
                   runtime=str(body.get("runtime") or ""), from_=body.get("from"),
                   to=body.get("to"), worker_id=body.get("worker_id"),
                   attempt=None if attempt is None else int(attempt),
                   time=str(body.get("time") or ""), reason=body.get("reason"))


@dataclass(frozen=True)
class Gap:
    """Events were lost (trimmed from the stream, or fell between two connections): whoever
    follows jobs reads them again."""

    detail: str
    first_id: str


@dataclass(frozen=True)
class Ready:
    """The subscription is live: every later event will come. Read the state after this."""

    last_id: str


Event = JobEvent | Gap | Ready


def order(stream_id: str) -> tuple[int, int]:
    """A stream id ("<ms>-<seq>") as something that sorts in stream order."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def history(client: BrokerClient, job_id: str) -> list[JobEvent]:
    """GET /job/events: the job's events so far, oldest first."""
    resp = await client._json("GET", "/job/events", headers={"X-Job-Id": job_id})
    return [JobEvent.from_json(body) for body in resp.json()["events"]]


async def webhooks(client: BrokerClient) -> dict[str, Any] | None:
    """GET /webhooks: where deliveries stand; None from a broker that delivers none (its
    in-process store: 503 not_ready)."""
    try:
        resp = await client._json("GET", "/webhooks", retry=False)
    except BrokerError as exc:
        if exc.code == "not_ready":
            return None
        raise
    body: dict[str, Any] = resp.json()
    return body


def typed(message: Message) -> Event | None:
    """The event a message carries; None for a type this client does not know."""
    if message.event not in ("job", "gap", "ready"):
        return None
    try:
        body = json.loads(message.data)
        if message.event == "job":
            return JobEvent.from_json(body)
        if message.event == "gap":
            return Gap(str(body["detail"]), str(body.get("first_id") or ""))
        return Ready(str(body.get("last_id") or ""))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the broker sent a malformed {message.event} event: "
                         f"{message.data[:200]!r}") from exc


# -- the feed --------------------------------------------------------------------------------


@dataclass
class _Cursor:
    """Where a feed stands, across its connections."""

    last_id: str
    retry: float = DEFAULT_RETRY
    live: bool = False  # some connection has delivered `ready`
    failures: int = 0  # connections since the last that became live


async def events(client: BrokerClient, *, job_ids: Iterable[str] = (), runtime: str | None = None,
                 status: str | None = None,
                 last_event_id: str | None = None) -> AsyncGenerator[Event, None]:
    """GET /events, as typed events, for as long as the caller reads.

    A dropped connection (or a 5xx, or a minute without even a keepalive) is followed by a
    new one, after a jittered backoff, from the last event id seen, so no event is lost or
    repeated; when that cannot be promised, a Gap comes first. A broker never reached raises
    Unreachable after `client.retries` attempts; once the feed has been live it keeps trying.
    A 4xx raises BrokerError (404 `not_found`: a broker without the feed)."""
    params = {name: value for name, value in (
        ("job_id", ",".join(job_ids)), ("runtime", runtime), ("status", status)) if value}
    cursor = _Cursor(last_event_id or "")
    while True:
        error: Exception | None = None
        try:
            async with aclosing(_connection(client, params, cursor)) as connection:
                async for event in connection:
                    yield event
        except httpx.TransportError as exc:
            error = exc
        except BrokerError as exc:
            if exc.status < 500:
                raise
            error = exc
        if not cursor.live and cursor.failures >= client.retries:
            raise Unreachable(f"{client.url}: {error or 'the feed ended before it was live'}"
                              ) from error
        await asyncio.sleep(backoff(cursor.failures, base=cursor.retry, cap=RECONNECT_CAP))
        cursor.failures += 1


async def _connection(client: BrokerClient, params: dict[str, str],
                      cursor: _Cursor) -> AsyncGenerator[Event, None]:
    headers = {"Last-Event-ID": cursor.last_id} if cursor.last_id else {}
    # Without an id to resume from, whatever happened while disconnected is not replayed.
    blind = cursor.live and not cursor.last_id
    async with client._http.stream("GET", "/events", params=params, headers=headers,
                                   timeout=STREAM_TIMEOUT) as resp:
        await _check(resp)
        parser = SSEParser(cursor.last_id)
        async for chunk in resp.aiter_bytes():
            for message in parser.feed(chunk):
                cursor.last_id = message.id
                event = typed(message)
                if isinstance(event, Ready):
                    cursor.live, cursor.failures = True, 0
                    if blind:
                        blind = False
                        yield Gap(BLIND, "")
                if event is not None:
                    yield event
            if parser.retry is not None:
                cursor.retry = max(parser.retry / 1000, 0.1)


async def _check(resp: httpx.Response) -> None:
    if not resp.is_success:
        await resp.aread()
        _raise_for(resp)


# -- a job's log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPart:
    """What GET /job/log answered: `data` starts at max(offset asked, start); `start` is the
    first byte the broker still keeps, `size` every byte written so far."""

    data: bytes
    start: int
    size: int


def _log_headers(resp: httpx.Response, offset: int) -> tuple[int, int]:
    start = int(resp.headers.get("X-Log-Start") or 0)
    return start, int(resp.headers.get("X-Log-Size") or max(start, offset))


async def read_log(client: BrokerClient, job_id: str, offset: int = 0) -> LogPart:
    """The log as it is now, from byte `offset` (retried like any read)."""
    async def call() -> LogPart:
        resp = await client._http.get("/job/log", headers={"X-Job-Id": job_id},
                                      params={"offset": offset})
        _raise_for(resp)
        return LogPart(resp.content, *_log_headers(resp, offset))
    return await client._retrying(call)


@asynccontextmanager
async def _log_stream(client: BrokerClient, job_id: str,
                      offset: int) -> AsyncIterator[httpx.Response]:
    async with client._http.stream("GET", "/job/log", headers={"X-Job-Id": job_id},
                                   params={"offset": offset, "follow": "1"},
                                   timeout=STREAM_TIMEOUT) as resp:
        await _check(resp)
        yield resp


Skipped = Callable[[int, int], None]  # told (from, to) when bytes were no longer kept


async def follow_log(client: BrokerClient, job_id: str, offset: int = 0,
                     skipped: Skipped | None = None) -> AsyncGenerator[bytes, None]:
    """The job's log from byte `offset`, then what its function writes, until the job has
    finished or is deleted. After a dropped connection it goes on from the bytes received so
    far. Raises BrokerError (404 `unknown_job`) only when the job is unknown at the start."""
    failures, started = 0, False
    while True:
        try:
            async with _log_stream(client, job_id, offset) as resp:
                failures, started = 0, True
                offset = _skip(resp, offset, skipped)
                async for chunk in resp.aiter_bytes():
                    offset += len(chunk)
                    yield chunk
        except httpx.TransportError:
            failures += 1
        except BrokerError as exc:
            if exc.status == 404 and started:
                return  # deleted while followed
            if exc.status < 500:
                raise
            failures += 1
        # The body ends when the job has, but also when the broker drops a follower (a slow
        # one, or at shutdown), and a quiet log sends nothing to tell a live connection from
        # a dead one: the job's status says which.
        if await _over(client, job_id):
            async for tail in _tail(client, job_id, offset, skipped):
                yield tail
            return
        await asyncio.sleep(backoff(failures) if failures else 0)


def _skip(resp: httpx.Response, offset: int, skipped: Skipped | None) -> int:
    start, _ = _log_headers(resp, offset)
    if start > offset:
        if skipped is not None:
            skipped(offset, start)
        return start
    return offset


async def _over(client: BrokerClient, job_id: str) -> bool:
    try:
        job = await client.get_job(job_id)
    except BrokerError as exc:
        if exc.status == 404:
            return True
        raise
    return job["status"] in FINAL


async def _tail(client: BrokerClient, job_id: str, offset: int,
                skipped: Skipped | None) -> AsyncGenerator[bytes, None]:
    """What was written between the last read of a dropped stream and the job's end."""
    try:
        part = await read_log(client, job_id, offset)
    except BrokerError as exc:
        if exc.status == 404:
            return
        raise
    if part.start > offset and skipped is not None:
        skipped(offset, part.start)
    if part.data:
        yield part.data
