"""A chaos run in the Jepsen manner: two broker processes on one Redis and one data directory,
submitters and workers recording every call (invoked; then ok, failed, or unknown), and while
the load runs a Redis stall longer than the brokers' wait, kill -9 of a broker, and a worker
paused past its lease. Then a drain, and a checker over the history:

- every acknowledged upload reads back with its bytes; every acknowledged job ends succeeded,
  with the output its input calls for (so the result kept came from a worker that held it);
- no job is finished by two accepted reports under different leases;
- no job is left running once the drain is over (a lost contract comes back within its lease);
- no answer is a 5xx other than 503.

Timeouts are short settings of the test, never sleeps of the production defaults."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_redis.executor import RedisExecutor

from tests.brokerproc import BrokerProcess
from tests.helpers import stalled

SETTINGS = {"BROKER_REDIS_TIMEOUT": "0.5", "BROKER_WORKER_TIMEOUT": "2",
            "BROKER_LEASE_TIMEOUT": "2", "BROKER_SWEEP_INTERVAL": "0.1",
            "BROKER_RETRY_BASE": "0.05", "BROKER_CONTRACT_WAIT_MAX": "1"}
LOAD_SECONDS = 12.0
DRAIN_SECONDS = 30.0


@dataclass
class Call:
    actor: str
    op: str
    key: str  # what the call is about: an idempotency key, a job id
    outcome: str = "invoked"  # then ok | failed | unknown
    status: int = 0
    value: str = ""  # the answer's text (an id), or why it failed
    body: bytes = b""


@dataclass
class History:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call) -> Call:
        with self.lock:
            self.calls.append(call)
        return call


class Cluster:
    """The brokers, any of which a client may call; a call to a dead one is unknown."""

    def __init__(self, procs: list[BrokerProcess], history: History) -> None:
        self.procs = procs
        self.history = history

    def call(self, actor: str, op: str, key: str, method: str, path: str,
             **kwargs: Any) -> Call:
        record = self.history.record(Call(actor, op, key))
        url = random.choice(self.procs).url
        try:
            resp = httpx.request(method, url + path, timeout=10, **kwargs)
        except httpx.TransportError as exc:
            record.outcome, record.value = "unknown", type(exc).__name__
            return record
        record.status, record.body = resp.status_code, resp.content
        if resp.status_code >= 500:
            record.outcome = "unknown"
        elif resp.status_code >= 400:
            record.outcome, record.value = "failed", resp.text[:200]
        else:
            record.outcome = "ok"
            record.value = resp.text.strip() if len(resp.content) < 1000 else ""
        return record

    def json(self, call: Call) -> Any:
        return httpx.Response(200, content=call.body).json()

    def until_answered(self, actor: str, op: str, key: str, method: str, path: str,
                       stop_at: float, **kwargs: Any) -> Call:
        """Repeat a call that is safe to repeat until it is answered, ok or failed."""
        while True:
            record = self.call(actor, op, key, method, path, **kwargs)
            if record.outcome != "unknown" or time.monotonic() > stop_at:
                return record
            time.sleep(0.1)


def expected_output(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def submitter(cluster: Cluster, name: str, stop: threading.Event, acked: dict[str, Any],
              lock: threading.Lock) -> None:
    while not stop.is_set():
        content = os.urandom(random.randint(100, 200_000))
        key = secrets.token_hex(8)
        deadline = time.monotonic() + DRAIN_SECONDS
        up = cluster.until_answered(name, "upload", key, "POST", "/data", deadline,
                                    files={"file": ("in", content)},
                                    headers={"Idempotency-Key": key})
        if up.outcome != "ok":
            continue
        with lock:
            acked["uploads"][up.value] = content
        body = {"function_id": "sha256", "runtime": "chaos", "data1_id": up.value,
                "max_attempts": 50}
        job = cluster.until_answered(name, "submit", key, "POST", "/job", deadline, json=body,
                                     headers={"Idempotency-Key": key})
        if job.outcome == "ok":
            with lock:
                acked["jobs"][cluster.json(job)["job_id"]] = content


def register(cluster: Cluster, name: str) -> str:
    registered = cluster.until_answered(name, "register", name, "POST", "/worker",
                                        time.monotonic() + DRAIN_SECONDS,
                                        json={"Runtime": ["chaos"]})
    worker_id: str = cluster.json(registered)["worker_id"]
    return worker_id


def worker(cluster: Cluster, name: str, stop: threading.Event, pause: threading.Event) -> None:
    worker_id = register(cluster, name)
    while not stop.is_set():
        got = cluster.call(name, "contract", worker_id, "GET", "/worker/contract",
                           params={"wait": 1}, headers={"X-Worker-Id": worker_id})
        if got.status == 404:  # declared dead while it could not be heard: join again
            worker_id = register(cluster, name)
            continue
        if got.outcome != "ok" or got.status == 204:
            time.sleep(0.05)
            continue
        contract = cluster.json(got)
        if pause.is_set():  # this worker stalls past its lease, then tries to finish
            pause.clear()
            time.sleep(float(SETTINGS["BROKER_LEASE_TIMEOUT"]) * 2)
        run_job(cluster, name, worker_id, contract)


def run_job(cluster: Cluster, name: str, worker_id: str, contract: dict[str, Any]) -> None:
    job_id, lease = contract["job_id"], contract["lease"]
    deadline = time.monotonic() + DRAIN_SECONDS
    headers = {"X-Worker-Id": worker_id, "X-Lease": lease}
    got = cluster.until_answered(name, "download", job_id, "GET", "/data", deadline,
                                 headers={"X-Data-Id": contract["data1_id"],
                                          "Accept": "application/octet-stream"})
    if got.outcome != "ok":
        return
    out_key = f"{job_id}-{lease}"
    up = cluster.until_answered(name, "output", out_key, "POST", "/data", deadline,
                                files={"file": ("out", expected_output(got.body))},
                                headers={"Idempotency-Key": out_key})
    if up.outcome != "ok":
        return
    cluster.until_answered(name, "report", f"{job_id} {lease}", "PUT", "/job", deadline,
                           json={"status": "succeeded", "data2_id": up.value},
                           headers={**headers, "X-Job-Id": job_id})


@pytest.fixture
def cluster(own_redis: Callable[..., RedisExecutor],
            tmp_path: Path) -> Iterator[tuple[Cluster, RedisExecutor]]:
    server = own_redis()
    url = f"redis://127.0.0.1:{server.port}/0"
    procs = [BrokerProcess(url, tmp_path / "data", SETTINGS).start() for _ in range(2)]
    try:
        yield Cluster(procs, History()), server
    finally:
        for proc in procs:
            proc.stop()


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_or_done_twice_under_faults(
        cluster: tuple[Cluster, RedisExecutor]) -> None:
    chaos, server = cluster
    no_more, stop, pause = threading.Event(), threading.Event(), threading.Event()
    lock = threading.Lock()
    acked: dict[str, Any] = {"uploads": {}, "jobs": {}}
    actors = [threading.Thread(target=submitter, args=(chaos, f"submitter{i}", no_more, acked,
                                                       lock)) for i in range(3)]
    actors += [threading.Thread(target=worker, args=(chaos, f"worker{i}", stop, pause))
               for i in range(4)]
    for actor in actors:
        actor.start()
    started = time.monotonic()
    time.sleep(2)
    with stalled(server, seconds=2.0):  # Redis silent for four times the brokers' wait
        pass
    time.sleep(1.5)
    victim = chaos.procs[0]
    victim.kill()  # kill -9 mid-load
    time.sleep(1)
    victim.start()
    pause.set()  # the next worker to get a job stalls past its lease
    time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - started)))
    no_more.set()  # no new work; the workers drain what is there
    for actor in actors[:3]:
        actor.join(DRAIN_SECONDS)
    drained = _drain(chaos, set(acked["jobs"]))
    stop.set()
    for actor in actors:
        actor.join(DRAIN_SECONDS)
    _check(chaos, acked, drained)


def _drain(chaos: Cluster, job_ids: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DRAIN_SECONDS
    final: dict[str, dict[str, Any]] = {}
    url = chaos.procs[1].url
    while time.monotonic() < deadline:
        for job_id in job_ids - set(final):
            body = httpx.get(url + "/job", headers={"X-Job-Id": job_id}, timeout=10).json()
            if body["status"] in ("succeeded", "failed", "cancelled"):
                final[job_id] = body
        running = httpx.get(url + "/jobs", params={"status": "running"}, timeout=10).json()
        pending = httpx.get(url + "/jobs", params={"status": "pending"}, timeout=10).json()
        if len(final) == len(job_ids) and not running["jobs"] and not pending["jobs"]:
            return final
        time.sleep(0.2)
    raise AssertionError(f"not drained: {len(job_ids) - len(final)} acknowledged jobs "
                         f"unfinished; running {running['jobs'][:3]}")


def _check(chaos: Cluster, acked: dict[str, Any], final: dict[str, dict[str, Any]]) -> None:
    url = chaos.procs[1].url
    calls = chaos.history.calls
    assert len([c for c in calls if c.op == "submit" and c.outcome == "ok"]) >= 20
    assert [c for c in calls if c.status >= 500 and c.status != 503] == []
    unknown = [c for c in calls if c.outcome == "unknown"]
    assert unknown, "no fault was felt: the run tested nothing"
    for data_id, content in acked["uploads"].items():
        got = httpx.get(url + "/data", headers={"X-Data-Id": data_id,
                                                "Accept": "application/octet-stream"},
                        timeout=30)
        assert got.status_code == 200 and got.content == content, data_id
    for job_id, content in acked["jobs"].items():
        body = final[job_id]
        assert body["status"] == "succeeded", body
        out = httpx.get(url + "/data", headers={"X-Data-Id": body["data2_id"],
                                                "Accept": "application/octet-stream"},
                        timeout=30)
        assert out.content == expected_output(content), job_id
    accepted: dict[str, set[str]] = {}
    for c in calls:
        if c.op == "report" and c.outcome == "ok":
            job_id, lease = c.key.split(" ")
            accepted.setdefault(job_id, set()).add(lease)
    assert {j: leases for j, leases in accepted.items() if len(leases) > 1} == {}
    lost_leases = [c for c in calls if c.op == "report" and c.outcome == "failed"]
    assert lost_leases, "the paused worker's late report was never refused"
