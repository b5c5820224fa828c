"""Redis going quiet for longer than the broker waits (a slow fork or fsync, a failover, a
partition; here SIGSTOP): the broker answers 503, and Redis may run the command after all. No
such answer may hide a change: a repeat of the request reaches the right end state, and the
data on disk always agrees with its metadata."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pytest_redis.executor import RedisExecutor

from tests.brokerproc import BrokerProcess
from tests.helpers import (
    MULTIPART,
    REDIS_TIMEOUT,
    closing,
    contract,
    job,
    part_head,
    put_job,
    register,
    stall,
    stalled,
    submit,
    temp_files,
    until,
)


@pytest.fixture
def stallable(own_redis: Callable[..., RedisExecutor],
              tmp_path: Path) -> Iterator[tuple[RedisExecutor, BrokerProcess, httpx.Client]]:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data",
                         {"BROKER_REDIS_TIMEOUT": str(REDIS_TIMEOUT)}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            # Connections to Redis made now: in a stall a new one would wait in its handshake
            # and never send the command, which is not the case under test.
            for _ in range(3):
                assert client.post("/data", files={"file": ("f", b"warm")}).status_code == 200
            yield server, proc, client
    finally:
        proc.stop()


def _raw(client: httpx.Client, data_id: str) -> httpx.Response:
    return client.get("/data", headers={"X-Data-Id": data_id,
                                        "Accept": "application/octet-stream"})


def _until_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_an_upload_answered_503_in_a_stall_is_kept_for_the_retry_under_its_key(
        stallable: tuple[RedisExecutor, BrokerProcess, httpx.Client]) -> None:
    server, _, client = stallable
    content = os.urandom(3 * 1024 * 1024)
    headers = {"Idempotency-Key": "stalled-upload"}
    with stalled(server):
        first = client.post("/data", files={"file": ("f", content)}, headers=headers)
    assert first.status_code == 503 and first.json()["error"] == "redis_unavailable"
    _until_ready(client)
    retry = client.post("/data", files={"file": ("f", content)}, headers=headers)
    assert retry.status_code == 200, retry.text
    got = _raw(client, retry.text)
    assert got.status_code == 200 and got.content == content


def test_a_replacement_answered_503_in_a_stall_leaves_metadata_that_matches_the_bytes(
        stallable: tuple[RedisExecutor, BrokerProcess, httpx.Client]) -> None:
    server, proc, client = stallable
    data_id = client.post("/data", files={"file": ("f", b"x" * 120)}).text
    new = os.urandom(2 * 1024 * 1024)

    wakes = []

    def body() -> Iterator[bytes]:  # the stall begins once the PUT is let in and streaming
        yield part_head() + new[:1024]
        until(lambda: bool(temp_files(proc.data_dir)))
        wakes.append(stall(server))
        yield new[1024:] + closing()

    answer = client.put("/data", content=body(), headers={"X-Data-Id": data_id,
                                                          "Content-Type": MULTIPART})
    wakes[0].join()
    assert answer.status_code == 503, answer.text
    _until_ready(client)
    got = _raw(client, data_id)
    assert got.status_code == 200
    # Whichever content Redis settled on, the checksum it serves is that of the bytes it serves.
    assert got.content in (b"x" * 120, new)
    assert got.headers["x-content-sha256"] == hashlib.sha256(got.content).hexdigest()
    again = client.put("/data", files={"file": ("f", new)}, headers={"X-Data-Id": data_id})
    assert again.status_code == 200 and _raw(client, data_id).content == new


def test_a_data_file_replaced_by_a_directory_is_a_clear_error_and_put_mends_it(
        broker_proc: BrokerProcess, client: httpx.Client) -> None:
    data_id = client.post("/data", files={"file": ("f", b"content")}).text
    path = broker_proc.data_dir / data_id
    path.unlink()
    path.mkdir()
    broken = _raw(client, data_id)
    assert broken.status_code == 404 and broken.json()["error"] == "unknown_data"
    assert "not a regular file" in broken.json()["detail"]
    mended = client.put("/data", files={"file": ("f", b"new")}, headers={"X-Data-Id": data_id})
    assert mended.status_code == 200, mended.text
    assert _raw(client, data_id).content == b"new"


def test_a_contract_answered_503_in_a_stall_is_back_in_its_queue_within_the_lease(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data", {
        "BROKER_REDIS_TIMEOUT": str(REDIS_TIMEOUT), "BROKER_LEASE_TIMEOUT": "1",
        "BROKER_SWEEP_INTERVAL": "0.1"}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            worker = register(c, "sh")
            job_id = submit(c, "sh")
            contract(c, register(c, "warm"))  # a live connection for the claim to go out on
            with stalled(server):
                lost = contract(c, worker)
            assert lost.status_code == 503
            _until_ready(c)
            # Redis ran the claim after all: the job is running under a lease nobody has.
            assert job(c, job_id)["status"] in ("running", "pending")
            given = contract(c, worker, wait=10)
            assert given.status_code == 200 and given.json()["job_id"] == job_id
            assert given.json()["attempts"] == 2
    finally:
        proc.stop()


def test_a_job_whose_worker_heartbeats_it_keeps_its_lease_and_one_that_does_not_loses_it(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker(BROKER_LEASE_TIMEOUT="0.6", BROKER_SWEEP_INTERVAL="0.05")
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        worker = register(c, "sh")
        kept, dropped = submit(c, "sh"), submit(c, "sh")
        first = contract(c, worker).json()
        second = contract(c, worker).json()
        assert (first["job_id"], second["job_id"]) == (kept, dropped)
        assert first["heartbeat_interval"] == 0.2  # a third of the lease
        for _ in range(12):  # 2.4 s, four leases' worth, heartbeating only the first job
            beat = put_job(c, kept, {"status": "running"}, X_Worker_Id=worker,
                           X_Lease=first["lease"])
            assert beat.status_code == 204
            time.sleep(0.2)
        assert job(c, kept)["status"] == "running"
        back = job(c, dropped)
        assert back["status"] == "pending" and back["worker_id"] is None
        late = put_job(c, dropped, {"status": "succeeded"}, X_Worker_Id=worker,
                       X_Lease=second["lease"])
        assert late.status_code == 409 and late.json()["error"] == "lease_lost"
        done = put_job(c, kept, {"status": "succeeded"}, X_Worker_Id=worker,
                       X_Lease=first["lease"])
        assert done.status_code == 204


def test_a_redis_outage_longer_than_the_worker_timeout_does_not_count_against_workers(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data", {
        "BROKER_REDIS_TIMEOUT": str(REDIS_TIMEOUT), "BROKER_WORKER_TIMEOUT": "2",
        "BROKER_LEASE_TIMEOUT": "2", "BROKER_SWEEP_INTERVAL": "0.1"}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            worker = register(c, "sh")
            job_id = submit(c, "sh")
            given = contract(c, worker).json()
            with stalled(server, seconds=4.5):  # more than twice the worker timeout
                pass
            _until_ready(c)
            done = put_job(c, job_id, {"status": "succeeded"}, X_Worker_Id=worker,
                           X_Lease=given["lease"])
            assert done.status_code == 204, done.text
            assert job(c, job_id)["status"] == "succeeded"
            assert c.get("/worker", headers={"X-Worker-Id": worker}).status_code == 200
    finally:
        proc.stop()
