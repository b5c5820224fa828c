"""Webhooks against real Redis, real broker processes running their rq notifier child, and a
receiver on loopback: signed deliveries, rq's retries, the failed job registry, the global
URL, where a callback may lead, and deliveries that survive a broker killed mid-way."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from broker.events.outbox import GROUP
from broker.store.keys import Keys
from tests.brokerproc import BrokerProcess
from tests.helpers import assert_error, contract, put_job, register, submit, until

SECRET = "webhook-secret-for-tests"
KEYS = Keys()
# Quick retries, so that a test sees them all: 1 s apart (rq counts whole seconds).
NOTIFIER = {"BROKER_NOTIFIER": "auto", "BROKER_WEBHOOK_SECRET": SECRET,
            "BROKER_WEBHOOK_RETRIES": "1,1", "BROKER_LOG_LEVEL": "warning"}


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """An HTTP server on loopback that answers 500 to its first `failures` calls (None: to
    every call), then 204, and keeps every call."""

    failures: int | None = 0
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = receiver.failures is None or len(receiver.calls) < receiver.failures
                status = 500 if failing else 204
                receiver.calls.append(Call(self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[Call]:
        return [c for c in self.calls if c.answered == 204]


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(failures: int | None = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for receiver in made:
        receiver.server.shutdown()
        receiver.server.server_close()


def finish(client: httpx.Client, job_id: str, status: str = "succeeded") -> None:
    """Run the job as a simulated worker would, and report `status` for good."""
    worker = register(client, "py")
    c = contract(client, worker).json()
    assert c["job_id"] == job_id
    resp = put_job(client, job_id, {"status": status, "retry": False},
                   X_Worker_Id=worker, X_Lease=c["lease"])
    assert resp.status_code == 204, resp.text


def with_callback(client: httpx.Client, url: str) -> str:
    resp = client.post("/job", json={"function_id": "fn", "runtime": "py",
                                     "callback_url": url + "?from=test"})
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def test_a_receiver_that_fails_twice_then_succeeds_gets_the_signed_delivery(
        start_broker: Callable[..., BrokerProcess],
        receivers: Callable[..., Receiver]) -> None:
    receiver = receivers(failures=2)
    broker = start_broker(**NOTIFIER)
    with httpx.Client(base_url=broker.url) as client:
        job_id = with_callback(client, receiver.url)
        assert client.get("/job", headers={"X-Job-Id": job_id}).json()["callback_url"] == \
            receiver.url + "?from=test"
        finish(client, job_id)
        until(lambda: len(receiver.delivered()) == 1, timeout=30)
    calls = receiver.calls
    assert [c.answered for c in calls] == [500, 500, 204]
    assert {c.headers["X-Broker-Delivery"] for c in calls} == {calls[0].headers[
        "X-Broker-Delivery"]}  # one delivery, tried three times
    final = calls[-1]
    assert final.path == "/hook?from=test"
    expected = "sha256=" + hmac.new(SECRET.encode(), final.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(final.headers["X-Broker-Signature"], expected)
    assert final.headers["X-Broker-Event"] == "succeeded"
    body = json.loads(final.body)
    assert body["event"]["job_id"] == job_id
    assert (body["event"]["event"], body["event"]["from"]) == ("succeeded", "running")
    assert body["job"]["job_id"] == job_id and body["job"]["status"] == "succeeded"


def test_a_receiver_that_always_fails_ends_in_the_failed_registry(
        start_broker: Callable[..., BrokerProcess],
        receivers: Callable[..., Receiver], r: redis.Redis) -> None:
    receiver = receivers(failures=None)
    broker = start_broker(**NOTIFIER)
    with httpx.Client(base_url=broker.url) as client:
        job_id = with_callback(client, receiver.url)
        finish(client, job_id, "failed")

        def failed_for_good() -> bool:
            return bool(client.get("/webhooks").json()["failed"] == 1)

        until(failed_for_good, timeout=30)
        state = client.get("/webhooks").json()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        status = subprocess.run([sys.executable, "-m", "broker", "status"], text=True,
                                env={**env, "BROKER_URL": broker.url}, capture_output=True,
                                timeout=30)
    assert len(receiver.calls) == 3  # the first try and the two retries
    assert (state["outbox"], state["queued"], state["retrying"]) == (0, 0, 0)
    assert state["notifiers"] >= 1
    failure = state["latest_failures"][0]
    assert failure["url"] == receiver.url + "?from=test"
    assert "answered 500" in failure["error"]
    assert r.zcard(f"rq:failed:{KEYS.webhook_queue}") == 1  # rq's own registry (rq info)
    assert status.returncode == 0, status.stderr
    assert "1 failed for good" in status.stdout
    assert receiver.url + "?from=test" in status.stdout and "answered 500" in status.stdout


def test_the_global_url_hears_every_end_and_a_job_without_one_hears_nothing(
        start_broker: Callable[..., BrokerProcess],
        receivers: Callable[..., Receiver]) -> None:
    every = receivers()
    broker = start_broker(**NOTIFIER, BROKER_WEBHOOK_URL=every.url)
    with httpx.Client(base_url=broker.url) as client:
        done = submit(client, "py")
        finish(client, done)
        cancelled = submit(client, "py")
        put_job(client, cancelled, {"status": "cancelled"})
        submit(client, "py")  # still pending: no end, no delivery
        until(lambda: len(every.delivered()) == 2, timeout=30)
    ends = {json.loads(c.body)["event"]["job_id"]: c.headers["X-Broker-Event"]
            for c in every.delivered()}
    assert ends == {done: "succeeded", cancelled: "cancelled"}


def test_a_callback_into_a_denied_network_is_refused_when_the_job_is_created(
        served: httpx.Client) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://[fe80::1]/x",
                "ftp://example.com/", "http://user:pw@example.com/", "not a url"):
        resp = served.post("/job", json={"function_id": "f", "runtime": "py",
                                         "callback_url": url})
        assert_error(resp, 400, "invalid_url")
    assert served.post("/job", json={"function_id": "f", "runtime": "py",
                                     "callback_url": "https://example.com/hook"}
                       ).status_code == 200


def test_a_broker_killed_right_after_a_job_ends_delivers_its_webhook_after_restart(
        start_broker: Callable[..., BrokerProcess], receivers: Callable[..., Receiver],
        tmp_path: Path) -> None:
    receiver = receivers()
    broker = start_broker(tmp_path / "data", **NOTIFIER)
    with httpx.Client(base_url=broker.url) as client:
        job_id = with_callback(client, receiver.url)
        finish(client, job_id)
    broker.kill()  # kill -9: the notifier child goes with it (PR_SET_PDEATHSIG)
    again = start_broker(tmp_path / "data", **NOTIFIER)
    until(lambda: len(receiver.delivered()) >= 1, timeout=30)
    assert json.loads(receiver.delivered()[0].body)["event"]["job_id"] == job_id
    assert again.proc is not None and again.proc.poll() is None


def test_an_entry_a_dead_pump_read_but_never_enqueued_is_delivered_by_another(
        start_broker: Callable[..., BrokerProcess], receivers: Callable[..., Receiver],
        r: redis.Redis) -> None:
    """The window between reading the outbox and enqueuing on rq: the entry stays pending
    under the dead pump's name, and a live pump claims it once it has been idle long enough."""
    receiver = receivers()
    event = {"id": "1-0", "url": receiver.url, "job": "zzzzzzzz", "runtime": "py",
             "event": "succeeded", "from": "running", "to": "succeeded",
             "time": str(int(time.time() * 1000))}  # as lua/lib/events.lua writes it
    r.xgroup_create(KEYS.outbox, GROUP, id="0", mkstream=True)
    r.xadd(KEYS.outbox, event)
    assert r.xreadgroup(GROUP, "dead-pump", {KEYS.outbox: ">"})  # read, never acknowledged
    start_broker(**NOTIFIER)
    until(lambda: len(receiver.delivered()) == 1, timeout=30)
    body = json.loads(receiver.delivered()[0].body)
    assert body["job"] is None  # the job is gone; its end is still told
    assert body["event"]["job_id"] == "zzzzzzzz"
    until(lambda: r.xlen(KEYS.outbox) == 0)
    assert r.xpending(KEYS.outbox, GROUP)["pending"] == 0
