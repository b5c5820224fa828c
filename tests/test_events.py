"""Job events against real Redis and real broker processes: every transition recorded by the
script that makes it (a job's history and the stream agree with what happened), the live feed
(GET /events: filters, resuming with Last-Event-ID, the gap event, many clients at once), and
jobs' live logs (fenced appends, the kept tail, following)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from broker import wire
from broker.store.keys import Keys
from tests.brokerproc import BrokerProcess
from tests.helpers import assert_error, contract, job, put_job, register, submit, until
from tests.inprocess import InProcess

KEYS = Keys()


def history(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    resp = client.get("/job/events", headers={"X-Job-Id": job_id})
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()["events"]
    return events


def steps(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["event"], e["from"], e["to"], e["worker_id"], e["attempt"], e["reason"])
            for e in events]


def take(client: httpx.Client, worker: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next contract for `worker`, asking until one comes."""
    deadline = time.monotonic() + timeout
    while (resp := contract(client, worker)).status_code != 200:
        assert time.monotonic() < deadline, "no contract came"
        time.sleep(0.02)
    body: dict[str, Any] = resp.json()
    return body


def report(client: httpx.Client, c: dict[str, Any], body: dict[str, Any]) -> None:
    resp = put_job(client, c["job_id"], body, X_Worker_Id=c["worker_id"], X_Lease=c["lease"])
    assert resp.status_code == 204, resp.text


# -- the history -------------------------------------------------------------------------------

def test_a_retried_given_back_and_finished_job_has_exactly_its_transitions_in_order(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    client = app_with(BROKER_RETRY_BASE="0.01", BROKER_SWEEP_INTERVAL="0.05")
    worker = register(client, "py")
    job_id = submit(client, "py", max_attempts=5)  # type: ignore[arg-type]
    first = take(client, worker)
    report(client, first, {"status": "failed", "error": "boom: the input was odd"})
    second = take(client, worker)  # the retry, once its backoff is over
    report(client, second, {"status": "pending"})  # the worker gives it back
    third = take(client, worker)
    report(client, third, {"status": "succeeded"})

    events = history(client, job_id)
    assert steps(events) == [
        ("created", None, "pending", None, None, None),
        ("running", "pending", "running", worker, 1, None),
        ("retried", "running", "pending", worker, 1, "boom: the input was odd"),
        ("running", "pending", "running", worker, 2, None),
        ("given_back", "running", "pending", worker, 2, "released"),
        ("running", "pending", "running", worker, 3, None),
        ("succeeded", "running", "succeeded", worker, 3, None),
    ]
    assert all(e["job_id"] == job_id and e["runtime"] == "py" for e in events)
    stamps = [e["time"] for e in events]
    assert stamps == sorted(stamps)
    # The stream holds the same events, under the same ids, in the same order.
    streamed = [(i, f) for i, f in r.xrange(KEYS.events) if f["job"] == job_id]
    assert [i for i, _ in streamed] == [e["id"] for e in events]
    assert [f["event"] for _, f in streamed] == [e["event"] for e in events]
    assert [wire.iso(f["time"]) for _, f in streamed] == stamps
    assert r.object("encoding", KEYS.job(job_id)) == "listpack"  # still the compact hash


def test_timeouts_expiry_and_deletion_are_events_and_the_history_goes_with_the_job(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    client = app_with(BROKER_SWEEP_INTERVAL="0.05")
    worker = register(client, "py")
    slow = submit(client, "py", max_attempts=2, timeout=0.2, ttl=1)  # type: ignore[arg-type]
    take(client, worker)
    take(client, worker)  # given back when its time ran out, then handed out again
    until(lambda: job(client, slow)["status"] == "failed")
    assert steps(history(client, slow)) == [
        ("created", None, "pending", None, None, None),
        ("running", "pending", "running", worker, 1, None),
        ("given_back", "running", "pending", worker, 1, "timeout"),
        ("running", "pending", "running", worker, 2, None),
        ("failed", "running", "failed", worker, 2, "timeout"),
    ]
    until(lambda: client.get("/job", headers={"X-Job-Id": slow}).status_code == 404)
    assert not r.exists(KEYS.job(slow))  # its history was fields of its hash
    last = [f for _, f in r.xrange(KEYS.events) if f["job"] == slow][-1]
    assert (last["event"], last["from"], last["to"]) == ("expired", "failed", "")

    gone = submit(client, "py")
    assert client.delete("/job", headers={"X-Job-Id": gone}).status_code == 204
    assert not r.exists(KEYS.job(gone))
    last = [f for _, f in r.xrange(KEYS.events) if f["job"] == gone][-1]
    assert (last["event"], last["from"], last["to"]) == ("deleted", "pending", "")
    assert_error(client.get("/job/events", headers={"X-Job-Id": gone}), 404, "unknown_job")


def test_scheduled_waiting_cancelled_and_failed_upstream_are_recorded(
        client: httpx.Client) -> None:
    later = submit(client, "py", delay=3600)  # type: ignore[arg-type]
    upstream = submit(client, "py")
    downstream = client.post("/job", json={"function_id": "fn", "runtime": "py",
                                           "after": [upstream]}).json()["job_id"]
    put_job(client, later, {"status": "cancelled"})
    put_job(client, upstream, {"status": "cancelled"})
    assert steps(history(client, later)) == [
        ("created", None, "scheduled", None, None, None),
        ("cancelled", "scheduled", "cancelled", None, None, None)]
    down = steps(history(client, downstream))
    assert down[0] == ("created", None, "waiting", None, None, None)
    assert down[1][:3] == ("failed", "waiting", "failed")
    assert down[1][5].startswith(f"upstream_failed: job {upstream}")


def test_the_stream_is_capped_near_its_setting(app_with: Callable[..., InProcess],
                                                r: redis.Redis) -> None:
    client = app_with(BROKER_EVENTS_MAXLEN="200")
    resp = client.post("/jobs", json={"jobs": [{"function_id": "f", "runtime": "py"}] * 100})
    assert resp.status_code == 200
    for _ in range(5):
        client.post("/jobs", json={"jobs": [{"function_id": "f", "runtime": "py"}] * 100})
    # MAXLEN ~ trims whole nodes of the stream (100 entries each by default), never below 200.
    assert 200 <= r.xlen(KEYS.events) <= 300


# -- the live feed -----------------------------------------------------------------------------

class Feed:
    """A GET /events stream read in a thread: each (name, id, data) as it arrives."""

    def __init__(self, url: str, params: dict[str, Any] | None = None,
                 last_event_id: str | None = None) -> None:
        self.got: list[tuple[str, str | None, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.ended = threading.Event()
        self._resp: httpx.Response
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(5, read=60))
        self._stream = self._client.stream("GET", "/events", params=params, headers=headers)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "no ready event"

    def _read(self) -> None:
        try:
            with self._stream as resp:
                self._resp = resp
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                name, event_id, data = "message", None, ""
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data += line[6:]
                    elif line == "" and data:
                        self.got.append((name, event_id, orjson.loads(data)))
                        if name == "ready":
                            self.ready.set()
                        name, event_id, data = "message", None, ""
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self.ended.set()

    def jobs(self) -> list[dict[str, Any]]:
        return [data for name, _, data in self.got if name == "job"]

    def names(self) -> list[str]:
        return [name for name, _, _ in self.got]

    def close(self) -> None:
        """Hang up: shut the socket, which ends the reader's blocked read at once."""
        if not self.ended.is_set():
            sock = self._resp.extensions["network_stream"].get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            assert self.ended.wait(5)
        self._client.close()


@contextmanager
def feed(url: str, **kwargs: Any) -> Iterator[Feed]:
    f = Feed(url, **kwargs)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def broker(start_broker: Callable[..., BrokerProcess]) -> BrokerProcess:
    return start_broker()


def test_the_feed_sends_each_event_once_and_filters_by_job_runtime_and_status(
        broker: BrokerProcess) -> None:
    with httpx.Client(base_url=broker.url) as client, feed(broker.url) as every, \
            feed(broker.url, params={"runtime": "sh"}) as sh, \
            feed(broker.url, params={"status": "succeeded"}) as done:
        worker = register(client, "py", "sh")
        a = submit(client, "py")
        b = submit(client, "sh")
        with feed(broker.url, params={"job_id": f"{a},zzzzzzzz"}) as only_a:
            c = take(client, worker)
            report(client, c, {"status": "succeeded"})
            until(lambda: len(only_a.jobs()) == 2)
            assert [e["event"] for e in only_a.jobs()] == ["running", "succeeded"]
        until(lambda: len(every.jobs()) == 4 and len(done.jobs()) == 1)
        assert [(e["job_id"], e["event"]) for e in every.jobs()] == [
            (a, "created"), (b, "created"), (a, "running"), (a, "succeeded")]
        ids = [e["id"] for e in every.jobs()]
        assert len(set(ids)) == 4
        assert [(e["job_id"], e["event"]) for e in sh.jobs()] == [(b, "created")]
        assert done.jobs()[0]["job_id"] == a
        # Bad filters are a clear 400, not a stream.
        assert_error(client.get("/events", params={"status": "done"}), 400, "invalid_query")
        assert_error(client.get("/events", headers={"Last-Event-ID": "yesterday"}), 400,
                     "invalid_query")


def test_a_client_that_reconnects_with_last_event_id_misses_nothing(
        broker: BrokerProcess, r: redis.Redis) -> None:
    with httpx.Client(base_url=broker.url) as client:
        worker = register(client, "py")
        with feed(broker.url) as first:
            before = submit(client, "py")
            until(lambda: len(first.jobs()) == 1)
        last_seen = first.jobs()[-1]["id"]
        # While it is away: a job is created, run, and finished; another is created.
        c = take(client, worker)
        report(client, c, {"status": "succeeded"})
        away = submit(client, "py")
        with feed(broker.url, last_event_id=last_seen) as second:
            after = submit(client, "py")
            until(lambda: any(e["job_id"] == after for e in second.jobs()))
            got = [(e["job_id"], e["event"]) for e in second.jobs()]
            assert got == [(before, "running"), (before, "succeeded"), (away, "created"),
                           (after, "created")]
            assert second.names().index("ready") == 3  # three caught up, then live
            assert "gap" not in second.names()
        every = [i for i, _ in r.xrange(KEYS.events)]
        assert [e["id"] for e in first.jobs() + second.jobs()] == every


def test_a_coalesced_feed_sums_up_a_burst_in_few_messages_and_is_never_dropped(
        broker: BrokerProcess, r: redis.Redis) -> None:
    with httpx.Client(base_url=broker.url) as client, \
            feed(broker.url, params={"every": "1"}) as summed:
        assert summed.names() == ["ready"]  # no catch-up: it reads the state when ready
        first = submit(client, "py")
        until(lambda: "changed" in summed.names())
        body = {"jobs": [{"function_id": "fn", "runtime": "sh"} for _ in range(1000)]}
        for _ in range(2):  # 2,000 events at once: twice what a subscription's queue holds
            assert client.post("/jobs", json=body).status_code == 200

        def changes() -> list[tuple[str | None, dict[str, Any]]]:
            return [(i, d) for name, i, d in summed.got if name == "changed"]
        until(lambda: sum(d["events"] for _, d in changes()) == 2001)
        assert changes()[0] == (changes()[0][0], {
            "events": 1, "job_ids": [first], "runtimes": ["py"], "statuses": ["pending"],
            "complete": True})
        assert len(changes()) <= 3  # one a second at most: the burst in one or two
        burst = changes()[1:]
        assert all(d["runtimes"] == ["sh"] and not d["complete"] for _, d in burst)
        assert all(len(d["job_ids"]) == 100 for _, d in burst)
        assert burst[-1][0] == r.xrevrange(KEYS.events, count=1)[0][0]
        later_job = submit(client, "py")  # still subscribed, not dropped
        until(lambda: changes()[-1][1]["job_ids"] == [later_job])
        assert_error(client.get("/events", params={"every": "0"}), 400, "invalid_query")
        assert_error(client.get("/events", params={"every": "61"}), 400, "invalid_query")


def test_a_client_that_resumes_after_its_events_were_trimmed_is_told_of_the_gap(
        broker: BrokerProcess, r: redis.Redis) -> None:
    with httpx.Client(base_url=broker.url) as client:
        old = submit(client, "py")
        with feed(broker.url) as first:
            submit(client, "py")
            submit(client, "py")
            until(lambda: len(first.jobs()) == 2)
        r.xtrim(KEYS.events, maxlen=1, approximate=False)  # what a full stream does
        with feed(broker.url, last_event_id=first.jobs()[0]["id"]) as resumed:
            assert resumed.names()[0] == "gap"
            assert resumed.got[0][2]["first_id"] == first.jobs()[1]["id"]
            assert [e["id"] for e in resumed.jobs()] == [first.jobs()[1]["id"]]
        assert old  # created before the feed: not part of either


def test_a_broker_that_loses_redis_ends_its_feeds_and_they_resume_with_nothing_missed(
        own_redis: Callable[..., Any], tmp_path: Path) -> None:
    server = own_redis(appendonly="yes")
    url = f"redis://127.0.0.1:{server.port}/0"
    broker = BrokerProcess(url, tmp_path / "data").start()
    try:
        with httpx.Client(base_url=broker.url) as client:
            first = Feed(broker.url)
            before = submit(client, "py")
            until(lambda: len(first.jobs()) == 1)
            server.stop()
            assert first.ended.wait(15), "the feed outlived Redis"
            first.close()
            server.start()
            until(lambda: client.get("/readyz").status_code == 200, timeout=30)
            after = submit(client, "py")
            with feed(broker.url, last_event_id=first.jobs()[-1]["id"]) as second:
                until(lambda: len(second.jobs()) == 1)
                assert [e["job_id"] for e in second.jobs()] == [after]
                assert "gap" not in second.names()
            assert before != after
    finally:
        broker.stop()


def test_two_hundred_clients_on_one_broker_each_receive_every_event(
        broker: BrokerProcess) -> None:
    clients, jobs = 200, 20

    async def run() -> list[list[str]]:
        limits = httpx.Limits(max_connections=clients + 10)
        async with httpx.AsyncClient(base_url=broker.url, limits=limits,
                                     timeout=httpx.Timeout(10, read=60)) as http:
            ready = [asyncio.Event() for _ in range(clients)]
            seen: list[list[str]] = [[] for _ in range(clients)]

            async def follow(i: int) -> None:
                async with http.stream("GET", "/events", params={"status": "pending"}) as resp:
                    async for line in resp.aiter_lines():
                        if line.startswith("event: ready"):
                            ready[i].set()
                        elif line.startswith("data: {\"id\""):
                            seen[i].append(orjson.loads(line[6:])["job_id"])
                            if len(seen[i]) == jobs:
                                return

            alone = broker.rss_kib()
            tasks = [asyncio.create_task(follow(i)) for i in range(clients)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
            idle = broker.rss_kib()
            body = {"jobs": [{"function_id": "f", "runtime": "py"}] * jobs}
            created = (await http.post("/jobs", json=body)).json()["results"]
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            busy = broker.rss_kib()
            print(f"\n200 SSE clients: broker RSS {alone} KiB before, {idle} KiB with all "
                  f"subscribed, {busy} KiB after each got {jobs} events")
            return [[c["job_id"] for c in created], *seen]

    created, *seen = asyncio.run(run())
    assert all(got == created for got in seen)


# -- live logs ---------------------------------------------------------------------------------

def append(client: httpx.Client, c: dict[str, Any], chunk: bytes, *,
           worker: str | None = None, lease: str | None = None) -> httpx.Response:
    return client.post("/job/log", content=chunk, headers={
        "X-Job-Id": c["job_id"], "X-Worker-Id": worker or c["worker_id"],
        "X-Lease": c["lease"] if lease is None else lease,
        "Content-Type": "application/octet-stream"})


def read_log(client: httpx.Client, job_id: str, **params: Any) -> httpx.Response:
    resp = client.get("/job/log", headers={"X-Job-Id": job_id}, params=params)
    assert resp.status_code == 200, resp.text
    return resp


def test_only_the_holder_of_the_current_lease_appends_to_a_running_jobs_log(
        client: httpx.Client) -> None:
    worker, other = register(client, "py"), register(client, "py")
    job_id = submit(client, "py", max_attempts=3)  # type: ignore[arg-type]
    c = take(client, worker)
    assert append(client, c, b"line one\n").status_code == 204
    assert_error(append(client, c, b"not mine\n", worker=other), 409, "lease_lost")
    assert_error(append(client, c, b"old lease\n", lease="x" * 16), 409, "lease_lost")
    report(client, c, {"status": "pending"})  # given back: that lease is void now
    assert_error(append(client, c, b"stale\n"), 409, "lease_lost")
    c2 = take(client, other)
    assert append(client, c2, b"line two\n").status_code == 204
    report(client, c2, {"status": "succeeded"})
    assert_error(append(client, c2, b"after the end\n"), 409, "illegal_transition")
    assert read_log(client, job_id).content == b"line one\nline two\n"
    assert_error(client.get("/job/log", headers={"X-Job-Id": "zzzzzzzz"}), 404, "unknown_job")
    assert_error(append(client, c2, b""), 400, "missing_body")
    big = b"x" * (256 * 1024 + 1)
    assert_error(append(client, c2, big), 413, "too_large")


def test_the_log_keeps_its_last_bytes_and_offsets_count_every_byte(
        app_with: Callable[..., InProcess], r: redis.Redis) -> None:
    client = app_with(BROKER_LOG_MAX="100")
    worker = register(client, "py")
    job_id = submit(client, "py")
    c = take(client, worker)
    written = b"".join(bytes([65 + i]) * 60 for i in range(3))  # 60 A, 60 B, 60 C
    for i in range(3):
        assert append(client, c, written[i * 60:(i + 1) * 60]).status_code == 204
    whole = read_log(client, job_id)
    assert whole.content == written[-100:]
    assert (whole.headers["X-Log-Start"], whole.headers["X-Log-Size"]) == ("80", "180")
    assert read_log(client, job_id, offset=150).content == written[150:]
    assert read_log(client, job_id, offset=10).content == written[80:]  # dropped before 80
    assert read_log(client, job_id, offset=180).content == b""
    assert sum(len(x) for x in r.lrange(KEYS.log(job_id), 0, -1)) == 100
    report(client, c, {"status": "succeeded"})
    client.delete("/job", headers={"X-Job-Id": job_id})
    assert not r.exists(KEYS.log(job_id))


def test_a_follower_gets_each_chunk_as_it_is_written_and_the_end(
        broker: BrokerProcess) -> None:
    with httpx.Client(base_url=broker.url, timeout=30) as client:
        worker = register(client, "py")
        job_id = submit(client, "py")
        got: list[bytes] = []
        ended = threading.Event()

        def follow() -> None:
            with client.stream("GET", "/job/log", headers={"X-Job-Id": job_id},
                               params={"follow": "1"}) as resp:
                for chunk in resp.iter_bytes():
                    got.append(chunk)
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        c = take(client, worker)
        for i in range(3):
            assert append(client, c, f"step {i}\n".encode()).status_code == 204
            until(lambda i=i: f"step {i}".encode() in b"".join(got), timeout=5)  # type: ignore[misc]
        assert not ended.is_set()
        report(client, c, {"status": "succeeded"})
        assert ended.wait(10)
        assert b"".join(got) == b"step 0\nstep 1\nstep 2\n"
