"""The CLI on the broker's live feed: the SSE reader on literal byte streams, its reconnections
and the log follower against a scripted transport, and `watch`, `submit --wait` and `logs` as
subprocesses against a real broker and agent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.cli import follow
from broker.client import events as feed
from broker.client.api import BrokerClient, BrokerError, Unreachable
from broker.client.events import Gap, JobEvent, Message, Ready, SSEParser
from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import job, put_job, register, requests_served, submit, until, upload

# -- the wire format -------------------------------------------------------------------------

STREAM = (b"\xef\xbb\xbfretry: 2000\r\n\r\n"
          b": keepalive\r\n\r\n"
          b"event: ready\r\ndata: {\"last_id\": \"\"}\r\n\r\n"
          b"id: 1-0\nevent: job\ndata: first line\ndata: second line\n\n"
          b"data:no space\rdata:  two spaces\r\r"
          b"event: gap\r\nid: 2-5\r\ndata\r\n\r\n"
          b"id\n: a comment between fields\ndata: \xc3\xa9t\xc3\xa9\n\n"
          b"id: 3\x00-0\nfoo: bar\nretry: soon\ndata: cut off by the end")
EXPECTED = [
    Message("ready", '{"last_id": ""}', ""),
    Message("job", "first line\nsecond line", "1-0"),
    Message("message", "no space\n two spaces", "1-0"),
    Message("gap", "", "2-5"),
    Message("message", "\u00e9t\u00e9", ""),
]


def parse(chunks: list[bytes]) -> tuple[list[Message], SSEParser]:
    parser = SSEParser()
    return [m for chunk in chunks for m in parser.feed(chunk)], parser


def test_the_sse_parser_reads_fields_comments_and_every_line_ending() -> None:
    messages, parser = parse([STREAM])
    assert messages == EXPECTED
    assert parser.retry == 2000 and parser.last_id == ""  # "id" alone empties it


def test_the_sse_parser_gives_the_same_events_however_the_bytes_are_cut() -> None:
    for size in range(1, 12):
        chunks = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
        assert parse(chunks)[0] == EXPECTED, size
    for cut in range(len(STREAM) + 1):  # every single cut: mid-line, mid-CRLF, mid-character
        assert parse([STREAM[:cut], b"", STREAM[cut:]])[0] == EXPECTED, cut


def test_a_crlf_cut_between_chunks_ends_one_line_not_two() -> None:
    # Read as CR, then LF, the blank line between would dispatch "a" alone.
    messages, _ = parse([b"data: a\r", b"\ndata: b\r\n\r", b"\n"])
    assert messages == [Message("message", "a\nb", "")]
    messages, _ = parse([b"data: a\r", b"\r", b"data: b\n\n"])  # CR CR: a blank line
    assert messages == [Message("message", "a", ""), Message("message", "b", "")]


def test_messages_become_typed_events_and_a_malformed_one_is_an_error() -> None:
    body = {"id": "7-1", "event": "running", "job_id": "k3j4h5g6", "runtime": "py",
            "from": "pending", "to": "running", "worker_id": "abcd1234", "attempt": 1,
            "time": "2026-12-05T15:00:01.123Z", "reason": None}
    event = feed.typed(Message("job", json.dumps(body), "7-1"))
    assert isinstance(event, JobEvent) and not event.finished
    assert (event.from_, event.to, event.attempt, event.worker_id) == (
        "pending", "running", 1, "abcd1234")
    assert JobEvent.from_json({**body, "event": "deleted", "to": None}).finished
    assert feed.typed(Message("gap", '{"detail": "lost", "first_id": "9-0"}', "")) == Gap(
        "lost", "9-0")
    assert feed.typed(Message("ready", '{"last_id": "7-1"}', "")) == Ready("7-1")
    assert feed.typed(Message("message", "{}", "")) is None
    with pytest.raises(ValueError, match="malformed job event"):
        feed.typed(Message("job", '{"id": "1-0"}', ""))
    assert follow.event_line(event) == ("2026-12-05T15:00:01.123Z  k3j4h5g6  running       "
                                        "pending -> running    worker=abcd1234 attempt=1")


# -- reconnecting, against a scripted transport ----------------------------------------------

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def sse(name: str, data: dict[str, Any], event_id: str = "") -> bytes:
    return (f"id: {event_id}\n" if event_id else "").encode() + \
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def job_body(event_id: str, job_id: str, to: str, frm: str | None = None) -> dict[str, Any]:
    return {"id": event_id, "event": to, "job_id": job_id, "runtime": "py", "from": frm,
            "to": to, "worker_id": None, "attempt": None, "time": "2026-12-05T15:00:01.123Z",
            "reason": None}


def job_event(event_id: str, job_id: str, to: str, frm: str | None = None) -> bytes:
    return sse("job", job_body(event_id, job_id, to, frm), event_id)


READY = b"retry: 1\n\n" + sse("ready", {"last_id": ""})


async def body(*chunks: bytes, drop: bool = False) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if drop:
        raise httpx.ReadError("the connection dropped (test)")


def scripted(handler: Handler) -> BrokerClient:
    return BrokerClient("http://broker.test", transport=httpx.MockTransport(handler),
                        retries=2)


async def take(client: BrokerClient, n: int, **params: Any) -> list[feed.Event]:
    got: list[feed.Event] = []
    async with client:
        stream = feed.events(client, **params)
        async for event in stream:
            got.append(event)
            if len(got) == n:
                break
        await stream.aclose()
    return got


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "backoff", lambda *args, **kwargs: 0.0)


def test_a_dropped_feed_resumes_after_the_last_event_it_delivered(no_backoff: None) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 2:
            return httpx.Response(503, json={"error": "redis_unavailable", "detail": "x"})
        if len(seen) == 1:  # the second job event is cut off mid-event by the drop
            stream = body(READY, job_event("5-0", "aaaaaaaa", "pending"),
                          job_event("6-0", "aaaaaaaa", "running")[:30], drop=True)
        else:
            stream = body(job_event("6-0", "aaaaaaaa", "running"), READY)
        return httpx.Response(200, content=stream,
                              headers={"content-type": "text/event-stream"})

    got = asyncio.run(take(scripted(handler), 4, job_ids=["aaaaaaaa", "bbbbbbbb"]))
    assert [type(e).__name__ for e in got] == ["Ready", "JobEvent", "JobEvent", "Ready"]
    assert [e.id for e in got if isinstance(e, JobEvent)] == ["5-0", "6-0"]
    assert seen[0].url.params["job_id"] == "aaaaaaaa,bbbbbbbb"
    assert "last-event-id" not in seen[0].headers
    assert [r.headers["last-event-id"] for r in seen[1:]] == ["5-0", "5-0"]


def test_a_feed_reconnected_with_no_id_to_resume_from_reports_a_gap(no_backoff: None) -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, content=body(READY))  # and the broker closes it

    got = asyncio.run(take(scripted(handler), 3))
    assert got[0] == Ready("") and isinstance(got[1], Gap) and got[2] == Ready("")


def test_a_broker_without_the_feed_or_never_reached_raises(no_backoff: None) -> None:
    async def old(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found",
                                         "detail": "no endpoint at /events"})

    with pytest.raises(BrokerError) as raised:
        asyncio.run(take(scripted(old), 1))
    assert follow.no_feed(raised.value)
    attempts = 0

    async def down(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused (test)")

    with pytest.raises(Unreachable):
        asyncio.run(take(scripted(down), 1))
    assert attempts == 3  # retries=2


def test_a_followed_log_goes_on_from_the_bytes_received_after_a_drop(no_backoff: None) -> None:
    offsets: list[str] = []
    status = iter(["running", "succeeded"])

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/job":
            return httpx.Response(200, json={"job_id": "aaaaaaaa", "status": next(status)})
        offsets.append(request.url.params["offset"])
        headers = {"X-Log-Start": "0", "X-Log-Size": "6"}
        if len(offsets) == 1:
            return httpx.Response(200, content=body(b"ab", b"c", drop=True), headers=headers)
        if len(offsets) == 2:  # ends as if the job had, yet it had not: follow again
            return httpx.Response(200, content=body(b"\xffe"), headers=headers)
        return httpx.Response(200, content=b"f" if offsets[-1] == "5" else b"",
                              headers=headers)

    async def read() -> bytes:
        async with scripted(handler) as client:
            return b"".join([c async for c in feed.follow_log(client, "aaaaaaaa")])

    assert asyncio.run(read()) == b"abc\xffef"
    assert offsets == ["0", "3", "5"]  # the last, not followed, reads the tail at the end


def test_wait_falls_back_to_polling_on_a_broker_without_the_feed() -> None:
    reads: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/events":
            return httpx.Response(404, json={"error": "not_found",
                                             "detail": "no endpoint at /events"})
        if request.url.path == "/runtimes":
            return httpx.Response(200, json={"runtimes": [{"runtime": "py", "workers": 1}]})
        reads.append(request.headers["x-job-id"])
        done = len(reads) > 2
        return httpx.Response(200, json={"job_id": reads[-1], "runtime": "py",
                                         "status": "succeeded" if done else "running"})

    async def wait() -> list[dict[str, Any]]:
        async with scripted(handler) as client:
            return await follow.follow_jobs(client, ["aaaaaaaa"], {"py"})

    assert [j["status"] for j in asyncio.run(wait())] == ["succeeded"]
    assert len(reads) == 3


def test_following_reads_the_jobs_once_live_and_again_after_a_gap() -> None:
    statuses = {"aaaaaaaa": "running", "bbbbbbbb": "pending"}
    reads: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        job_id = request.headers["x-job-id"]
        reads.append(job_id)
        return httpx.Response(200, json={"job_id": job_id, "status": statuses[job_id]})

    async def scripted_feed() -> AsyncGenerator[feed.Event, None]:
        yield Ready("")
        statuses["aaaaaaaa"] = "failed"
        yield JobEvent.from_json(job_body("4-0", "aaaaaaaa", "failed", "running"))
        statuses["bbbbbbbb"] = "succeeded"  # its event was lost
        yield Gap("trimmed", "9-0")
        raise AssertionError("read on after every job had finished")

    async def run() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with scripted(handler) as client:
            followed = follow.Followed(client, ["aaaaaaaa", "bbbbbbbb"])
            await followed.follow(scripted_feed())
            return await followed.finals(), followed.statuses()

    finals, ended = asyncio.run(run())
    assert reads == ["aaaaaaaa", "bbbbbbbb", "bbbbbbbb", "aaaaaaaa"]
    assert [j["status"] for j in finals] == ["failed", "succeeded"]
    assert ended == {"aaaaaaaa": "failed", "bbbbbbbb": "succeeded"}


# -- end to end: the CLI against a real broker -----------------------------------------------


def cli(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "broker", *args],
                          env={**os.environ, "BROKER_URL": url}, capture_output=True,
                          timeout=60)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Running:
    """A CLI command running in the background, its stdout lines collected as they come."""

    def __init__(self, url: str, *args: str) -> None:
        # Ctrl-C as a terminal sends it, whatever this suite was started from: a shell runs a
        # background job with SIGINT ignored, and a child would inherit that.
        self.proc = subprocess.Popen([sys.executable, "-m", "broker", *args],
                                     env={**os.environ, "BROKER_URL": url},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_sigint_default)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # and close the pipes


def columns(line: str) -> list[str]:
    """A watch line's event, from, to (the time and the job id dropped)."""
    parts = line.split()
    return [parts[2], parts[3], parts[5]]


def test_watch_prints_a_jobs_events_as_they_happen_and_exits_0_once_it_succeeded(
        broker_proc: BrokerProcess, served: httpx.Client, tmp_path: Path) -> None:
    code = upload(served, b"import time\ntime.sleep(0.3)\nprint('done')\n")
    job_id = served.post("/job", json={"function_id": code, "runtime": "python3"}).json()[
        "job_id"]
    watch = Running(broker_proc.url, "watch", job_id)
    agent = None
    try:
        until(lambda: len(watch.lines) == 1)  # its history: the feed is live
        agent = AgentProcess(broker_proc.url, tmp_path / "agent.log", "--runtime", "python3")
        code_, stderr = watch.wait()
    finally:
        watch.kill()
        if agent is not None:
            agent.kill()
    assert code_ == 0, stderr
    assert [columns(line) for line in watch.lines] == [
        ["created", "-", "pending"], ["running", "pending", "running"],
        ["succeeded", "running", "succeeded"]]
    assert all(line.split()[1] == job_id for line in watch.lines)
    assert "worker=" in watch.lines[1] and "attempt=1" in watch.lines[1]
    assert len({line.index(" -> ") for line in watch.lines}) == 1  # the columns line up


def test_watch_exits_1_when_a_job_is_cancelled_and_filters_what_it_prints(
        broker_proc: BrokerProcess, served: httpx.Client) -> None:
    job_id = submit(served, "nobody-runs-this")
    reads = requests_served(broker_proc.url, "GET", "/job")
    watch = Running(broker_proc.url, "watch", job_id, "--status", "cancelled")
    try:
        # It reads the job once its feed is live: a change after that comes as an event.
        until(lambda: requests_served(broker_proc.url, "GET", "/job") > reads)
        assert cli(broker_proc.url, "cancel", job_id).returncode == 0
        code, stderr = watch.wait()
    finally:
        watch.kill()
    assert code == 1 and stderr.strip() == f"broker: job {job_id} cancelled"
    assert [columns(line) for line in watch.lines] == [["cancelled", "pending", "cancelled"]]
    again = cli(broker_proc.url, "watch", job_id, "--status", "pending")  # finished already
    assert again.returncode == 1
    assert [columns(line) for line in again.stdout.decode().splitlines()] == [
        ["created", "-", "pending"]]
    unknown = cli(broker_proc.url, "watch", "zzzzzzzz")
    assert unknown.returncode == 1 and b"unknown_job" in unknown.stderr


def test_watch_without_job_ids_follows_every_job_of_a_runtime_until_interrupted(
        broker_proc: BrokerProcess, served: httpx.Client) -> None:
    watch = Running(broker_proc.url, "watch", "--runtime", "watched")
    try:
        # Nothing says when its feed is live: jobs until one shows.
        until(lambda: bool(watch.lines) or not submit(served, "watched"), timeout=30)
        other = submit(served, "elsewhere")
        last = submit(served, "watched")
        until(lambda: any(last in line for line in watch.lines))
        watch.proc.send_signal(signal.SIGINT)
        code, _ = watch.wait()
    finally:
        watch.kill()
    assert code == 130
    assert watch.lines[-1].split()[1] == last and not any(other in x for x in watch.lines)
    assert all(columns(line) == ["created", "-", "pending"] for line in watch.lines)


def test_submit_wait_follows_the_feed_and_reads_each_job_only_twice(
        broker_proc: BrokerProcess, served: httpx.Client, tmp_path: Path) -> None:
    agent = AgentProcess(broker_proc.url, tmp_path / "agent.log", "--runtime", "python3")
    try:
        agent.wait_for_log("registered as worker")
        fn = tmp_path / "f.py"
        fn.write_text("import sys, time\ntime.sleep(2)\nsys.stdout.write('slept')\n")
        reads = requests_served(broker_proc.url, "GET", "/job")
        done = cli(broker_proc.url, "submit", "--runtime", "python3", "--function", str(fn),
                   "--wait", "--output", str(tmp_path / "out"))
    finally:
        agent.kill()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_text() == "slept"
    # Polling would ask a dozen times in two seconds: once live, then once finished.
    assert requests_served(broker_proc.url, "GET", "/job") - reads == 2
    assert job(served, done.stdout.decode().strip())["status"] == "succeeded"


def test_logs_writes_the_jobs_log_bytes_and_follows_it_until_the_job_ends(
        broker_proc: BrokerProcess, served: httpx.Client) -> None:
    worker = register(served, "logged")
    job_id = submit(served, "logged")
    c = served.get("/worker/contract", headers={"X-Worker-Id": worker}).json()
    chunks = [b"step 1\n", b"\xff\xfe not UTF-8\r\n", b"step 3, no newline"]

    def append(chunk: bytes) -> None:  # as the agent sends what the function writes
        resp = served.post("/job/log", content=chunk, headers={
            "X-Job-Id": job_id, "X-Worker-Id": worker, "X-Lease": c["lease"],
            "Content-Type": "application/octet-stream"})
        assert resp.status_code == 204, resp.text

    append(chunks[0])
    follower = subprocess.Popen([sys.executable, "-m", "broker", "logs", "-f", job_id],
                                env={**os.environ, "BROKER_URL": broker_proc.url},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = bytearray()

    def read() -> None:
        assert follower.stdout is not None
        while chunk := follower.stdout.read1(65536):
            out.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        until(lambda: bytes(out) == chunks[0])
        for chunk in chunks[1:]:
            append(chunk)
        until(lambda: bytes(out) == b"".join(chunks))
        assert follower.poll() is None  # the job runs: it follows on
        resp = put_job(served, job_id, {"status": "succeeded"}, X_Worker_Id=worker,
                       X_Lease=c["lease"])
        assert resp.status_code == 204, resp.text
        assert follower.wait(30) == 0
        reader.join(10)
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()
    assert bytes(out) == b"".join(chunks)
    whole = cli(broker_proc.url, "logs", job_id)
    assert whole.returncode == 0 and whole.stdout == b"".join(chunks)
    missing = cli(broker_proc.url, "logs", "-f", "zzzzzzzz")
    assert missing.returncode == 1
    assert missing.stderr.decode().startswith("broker: unknown_job: ")
