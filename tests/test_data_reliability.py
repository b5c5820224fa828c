"""Data that survives retries, crashes and stale workers, on a real broker and a real Redis:
PUT /data fenced by the job's lease, Idempotency-Key on POST /data and /data/reg, a replayed
data_create, and an upload cut off by kill -9."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from broker.store import scripts
from tests.brokerproc import BrokerProcess
from tests.helpers import (
    MULTIPART,
    assert_error,
    closing,
    contract,
    data_files,
    data_keys,
    get_raw,
    part_head,
    post,
    put_job,
    register,
    sha,
    submit,
    temp_files,
    until,
)

# -- fencing: only the worker holding the job writes its output -----------------------------------


def reserve(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/data/reg", headers=headers)


def put_as(client: httpx.Client, data_id: str, content: bytes, worker_id: str | None = None,
           lease: str | None = None) -> httpx.Response:
    headers = {"X-Data-Id": data_id}
    if worker_id is not None:
        headers["X-Worker-Id"] = worker_id
    if lease is not None:
        headers["X-Lease"] = lease
    return client.put("/data", files={"file": ("out", content)}, headers=headers)


def running_job(client: httpx.Client) -> tuple[str, str, str, str]:
    """A job whose output is a reserved data id, claimed by a fresh worker:
    (job_id, data_id, worker_id, lease)."""
    worker = register(client, "sh")
    data_id = reserve(client).text
    job_id = submit(client, "sh", function_id="f", data2_id=data_id)
    answer = contract(client, worker)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job_id"] == job_id
    return job_id, data_id, worker, answer.json()["lease"]


def snapshot(r: redis.Redis, data_id: str) -> dict[str, str]:
    meta: dict[str, str] = r.hgetall(f"broker:data:{data_id}")  # type: ignore[assignment]
    return meta


def test_the_worker_holding_the_job_writes_its_output_under_its_lease(
        client: httpx.Client, r: redis.Redis) -> None:
    job_id, data_id, worker, lease = running_job(client)
    assert snapshot(r, data_id)["job_id"] == job_id

    response = put_as(client, data_id, b"output", worker, lease)

    assert response.status_code == 200, response.text
    assert get_raw(client, data_id).content == b"output"
    # Without X-Lease the worker id alone is judged.
    assert put_as(client, data_id, b"output 2", worker).status_code == 200
    assert get_raw(client, data_id).content == b"output 2"


def test_a_wrong_lease_or_another_worker_is_409_lease_lost_and_changes_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    _, data_id, worker, lease = running_job(client)
    assert put_as(client, data_id, b"first", worker, lease).status_code == 200
    before = snapshot(r, data_id)
    other = register(client, "sh")

    for response in (put_as(client, data_id, b"stale", worker, "not-the-lease"),
                     put_as(client, data_id, b"intruder", other),
                     put_as(client, data_id, b"intruder", other, lease)):
        assert_error(response, 409, "lease_lost")
        assert data_id in response.json()["detail"]

    assert get_raw(client, data_id).content == b"first"
    assert snapshot(r, data_id) == before
    assert temp_files(broker_proc.data_dir) == []


def test_a_worker_that_gave_the_job_back_cannot_write_over_the_next_holder(
        client: httpx.Client) -> None:
    job_id, data_id, first, first_lease = running_job(client)
    given_back = put_job(client, job_id, {"status": "pending"}, X_Worker_Id=first,
                         X_Lease=first_lease)
    assert given_back.status_code == 204, given_back.text
    second = register(client, "sh")
    answer = contract(client, second).json()
    assert answer["job_id"] == job_id

    assert_error(put_as(client, data_id, b"late", first, first_lease), 409, "lease_lost")
    assert_error(put_as(client, data_id, b"late", first), 409, "lease_lost")
    assert put_as(client, data_id, b"fresh", second, answer["lease"]).status_code == 200
    assert get_raw(client, data_id).content == b"fresh"


def test_the_worker_of_a_cancelled_job_is_told_409_cancelled_and_stores_nothing(
        client: httpx.Client, r: redis.Redis) -> None:
    job_id, data_id, worker, lease = running_job(client)
    assert put_job(client, job_id, {"status": "cancelled"}).status_code == 204
    before = snapshot(r, data_id)

    assert_error(put_as(client, data_id, b"too late", worker, lease), 409, "cancelled")

    assert snapshot(r, data_id) == before
    assert_error(get_raw(client, data_id), 409, "data_not_ready")


def test_requesters_and_workers_writing_other_data_are_not_fenced(
        client: httpx.Client) -> None:
    _, output, _, _ = running_job(client)
    plain = post(client, b"plain")
    bystander = register(client, "sh")
    assert put_as(client, output, b"by the requester").status_code == 200
    assert put_as(client, plain, b"by a worker", bystander).status_code == 200
    assert get_raw(client, plain).content == b"by a worker"


@pytest.mark.parametrize(("headers", "code"), [
    ({"X-Lease": "abc"}, "missing_id"),
    ({"X-Worker-Id": "NOT-AN-ID"}, "invalid_id"),
    ({"X-Worker-Id": "abcd1234", "X-Lease": "x" * 129}, "wrong_type"),
])
def test_malformed_writer_headers_are_400(client: httpx.Client, headers: dict[str, str],
                                          code: str) -> None:
    data_id = post(client, b"kept")
    response = client.put("/data", files={"file": ("x", b"new")},
                          headers={"X-Data-Id": data_id, **headers})
    assert_error(response, 400, code)
    assert get_raw(client, data_id).content == b"kept"


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response off a raw socket: (status line and headers, body)."""
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return head, body


def test_a_refused_put_is_answered_before_its_body_is_read(
        client: httpx.Client, broker_proc: BrokerProcess) -> None:
    _, data_id, worker, _ = running_job(client)
    head = (f"PUT /data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {50 * 1024**2}\r\nX-Data-Id: {data_id}\r\n"
            f"X-Worker-Id: {worker}\r\nX-Lease: stale\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", broker_proc.port)) as sock:
        sock.sendall(head + part_head())  # 50 MB announced, a few bytes sent
        status, body = read_answer(sock)
    assert status.startswith(b"HTTP/1.1 409"), status
    assert json.loads(body)["error"] == "lease_lost"
    assert temp_files(broker_proc.data_dir) == []


def test_a_job_cancelled_while_its_output_streams_is_refused_at_commit(
        served: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    job_id, data_id, worker, lease = running_job(served)
    assert put_as(served, data_id, b"old", worker, lease).status_code == 200
    before = snapshot(r, data_id)
    cancelled = threading.Event()

    def body() -> Iterator[bytes]:
        yield part_head() + b"new output, first half; "
        assert cancelled.wait(10)
        yield b"second half" + closing()

    with ThreadPoolExecutor(1) as pool:
        putting = pool.submit(served.put, "/data", content=body(), headers={
            "Content-Type": MULTIPART, "X-Data-Id": data_id, "X-Worker-Id": worker,
            "X-Lease": lease})
        until(lambda: bool(temp_files(broker_proc.data_dir)))  # past the early check, streaming
        with httpx.Client(base_url=broker_proc.url) as other:
            assert put_job(other, job_id, {"status": "cancelled"}).status_code == 204
        cancelled.set()
        response = putting.result()

    assert_error(response, 409, "cancelled")
    assert get_raw(served, data_id).content == b"old"
    assert snapshot(r, data_id) == before
    assert temp_files(broker_proc.data_dir) == []


# -- Idempotency-Key on POST /data and POST /data/reg ---------------------------------------------

def post_keyed(client: httpx.Client, content: bytes, key: str) -> httpx.Response:
    return client.post("/data", files={"file": ("x", content)}, headers={"Idempotency-Key": key})


def test_the_same_key_and_content_answer_the_same_id_and_store_it_once(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    before = data_files(broker_proc.data_dir)
    first = post_keyed(client, b"once", "upload-1")
    again = post_keyed(client, b"once", "upload-1")

    assert first.status_code == again.status_code == 200, again.text
    data_id = first.text
    assert again.text == data_id
    assert data_keys(r) == [f"broker:data:{data_id}"]
    assert sorted(set(data_files(broker_proc.data_dir)) - set(before)) == [data_id]
    assert temp_files(broker_proc.data_dir) == []
    record = json.loads(str(r.get("broker:idem:data:upload-1")))
    assert record == {"fingerprint": f"{sha(b'once')}:4", "id": data_id}
    assert 0 < int(r.ttl("broker:idem:data:upload-1")) <= 86400


def test_the_same_key_with_other_content_is_422_and_stores_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    data_id = post_keyed(client, b"first", "upload-2").text
    files = data_files(broker_proc.data_dir)

    response = post_keyed(client, b"second", "upload-2")

    assert_error(response, 422, "idempotency_mismatch")
    assert data_keys(r) == [f"broker:data:{data_id}"]
    assert data_files(broker_proc.data_dir) == files
    assert temp_files(broker_proc.data_dir) == []
    assert get_raw(client, data_id).content == b"first"


def test_concurrent_retries_under_one_key_make_one_data(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    before = data_files(broker_proc.data_dir)
    content = os.urandom(200_000)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post_keyed(client, content, "racing"), range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert len(data_keys(r)) == 1
    assert len(set(data_files(broker_proc.data_dir)) - set(before)) == 1
    assert get_raw(client, answers[0].text).content == content


def test_reserving_twice_under_one_key_answers_the_same_id(
        client: httpx.Client, r: redis.Redis) -> None:
    first = reserve(client, **{"Idempotency-Key": "reg-1"})
    again = reserve(client, **{"Idempotency-Key": "reg-1"})
    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    assert data_keys(r) == [f"broker:data:{first.text}"]
    # The key now stands for a reservation: an upload under it is another request.
    assert_error(post_keyed(client, b"x", "reg-1"), 422, "idempotency_mismatch")
    # Without a key, every call is a new id.
    assert reserve(client).text != reserve(client).text


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9"])
@pytest.mark.parametrize("path", ["/data", "/data/reg"])
def test_a_malformed_idempotency_key_is_400_and_stores_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess, key: str,
        path: str) -> None:
    files = data_files(broker_proc.data_dir)
    response = client.post(path, files={"file": ("x", b"x")} if path == "/data" else None,
                           headers=[(b"Idempotency-Key", key.encode())])
    assert_error(response, 400, "invalid_idempotency_key")
    assert data_keys(r) == []
    assert data_files(broker_proc.data_dir) == files


def test_a_255_character_key_is_accepted(client: httpx.Client) -> None:
    key = "k" * 254 + "~"
    assert post_keyed(client, b"a", key).text == post_keyed(client, b"a", key).text


# -- data_create replayed by redis-py after a lost reply -------------------------------------------

def create_args(data_id: str, now: int, key: str = "", fingerprint: str = "") -> list[str | int]:
    return [f"broker:data:{data_id}", f"broker:idem:data:{key}",
            data_id, "ready", 5, sha(b"hello"), now, fingerprint, 60]


def test_a_replayed_data_create_answers_ok_not_id_taken(r: redis.Redis) -> None:
    source = scripts.source("data_create")
    now = int(time.time() * 1000)

    assert r.eval(source, 2, *create_args("abcd1234", now)) == ["ok", "abcd1234"]
    assert r.eval(source, 2, *create_args("abcd1234", now)) == ["ok", "abcd1234"]
    # Another call that drew the same id is not a replay.
    assert r.eval(source, 2, *create_args("abcd1234", now + 1)) == ["id_taken"]
    assert r.hget("broker:data:abcd1234", "created_at") == str(now)


def test_a_replayed_data_create_under_a_key_answers_its_own_id(r: redis.Redis) -> None:
    source = scripts.source("data_create")
    now = int(time.time() * 1000)
    args = create_args("wxyz5678", now, "k", "fp")
    assert r.eval(source, 2, *args) == ["ok", "wxyz5678"]
    assert r.eval(source, 2, *args) == ["ok", "wxyz5678"]
    assert data_keys(r) == ["broker:data:wxyz5678"]


# -- an upload cut off by kill -9 ------------------------------------------------------------------

def test_an_upload_killed_midway_leaves_nothing_once_the_broker_is_back(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = start_broker(data_dir)
    head = (f"POST /data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {50 * 1024**2}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proc.port)) as sock:
        sock.sendall(head + part_head())
        for _ in range(4):  # 4 MiB of the 50 announced, then the broker dies mid-stream
            sock.sendall(os.urandom(1024**2))
        until(lambda: any((data_dir / t).stat().st_size > 0 for t in temp_files(data_dir)))
        left = temp_files(data_dir)
        proc.kill()
    assert len(left) == 1

    again = start_broker(data_dir)

    assert temp_files(data_dir) == []
    assert data_files(data_dir) == []
    assert data_keys(r) == []
    assert f"removed {data_dir / left[0]}" in again.log()


def test_a_temp_file_is_kept_while_its_writer_lives_whatever_its_age(
        start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    import fcntl

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    live, dead = data_dir / ".tmp-live", data_dir / ".tmp-dead"
    live.write_bytes(b"another broker's upload in progress")
    dead.write_bytes(b"left by a crash a moment ago")
    long_ago = time.time() - 2 * 3600
    os.utime(live, (long_ago, long_ago))
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = start_broker(data_dir)
        assert temp_files(data_dir) == [".tmp-live"]
    assert f"removed {dead}" in proc.log()
