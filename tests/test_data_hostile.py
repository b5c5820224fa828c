"""Uploads a client should not send: wrong types, malformed or endless multipart, bodies over the
limit, bodies cut off. Each is refused in the one error shape and leaves nothing behind."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import (
    BOUNDARY,
    MULTIPART,
    assert_error,
    body_of,
    closing,
    data_files,
    data_keys,
    get_raw,
    part_head,
    post,
    put,
    sha,
    temp_files,
    until,
)


def send_multipart(client: httpx.Client, body: bytes, method: str = "POST",
                   **headers: str) -> httpx.Response:
    return client.request(method, "/data", content=body,
                          headers={"Content-Type": MULTIPART, **headers})


def raw_head(port: int, content_length: int, method: str = "POST") -> bytes:
    return (f"{method} /data HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()


def read_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return int(received.split(b" ", 2)[1])


# -- content type --------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "application/x-www-form-urlencoded",
                                          "multipart/mixed; boundary=x", None])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_anything_but_multipart_form_data_is_415(client: httpx.Client, r: redis.Redis,
                                                  method: str, content_type: str | None) -> None:
    headers = {"X-Data-Id": "00000000"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.request(method, "/data", content=b'{"file": "x"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")
    assert data_keys(r) == []


def test_json_sent_to_post_data_is_415(client: httpx.Client) -> None:
    assert_error(client.post("/data", json={"file": "abc"}), 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; charset=x",
                                          "multipart/form-data; boundary=",
                                          "multipart/form-data; boundary=" + "b" * 300])
def test_multipart_without_a_usable_boundary_is_400(client: httpx.Client,
                                                   content_type: str) -> None:
    response = client.post("/data", content=body_of(b"x"), headers={"Content-Type": content_type})
    body = assert_error(response, 400, "missing_boundary")
    assert "boundary" in str(body["detail"])


# -- the parts -----------------------------------------------------------------------------------

def test_a_body_without_a_file_part_is_400(client: httpx.Client, r: redis.Redis,
                                           broker_proc: BrokerProcess) -> None:
    response = client.post("/data", data={"note": "no file here"})  # urlencoded
    assert_error(response, 415, "unsupported_media_type")
    only_field = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                  "hello").encode() + closing()
    assert_error(send_multipart(client, only_field), 400, "missing_file")
    assert_error(send_multipart(client, f"--{BOUNDARY}--\r\n".encode()), 400, "missing_file")
    assert data_keys(r) == []
    assert temp_files(broker_proc.data_dir) == []


def test_two_file_parts_are_400_and_leave_nothing(client: httpx.Client, r: redis.Redis,
                                                  broker_proc: BrokerProcess) -> None:
    before = data_files(broker_proc.data_dir)
    response = client.post("/data", files=[("file", ("a", b"first")), ("file", ("b", b"second"))])
    assert_error(response, 400, "too_many_files")
    response = client.post("/data", files=[("file", ("a", b"first")), ("other", ("b", b"2nd"))])
    assert_error(response, 400, "too_many_files")
    assert data_keys(r) == []
    assert temp_files(broker_proc.data_dir) == []
    assert data_files(broker_proc.data_dir) == before


@pytest.mark.parametrize("count", [17, 5000])
def test_too_many_parts_are_400(client: httpx.Client, r: redis.Redis, count: int) -> None:
    field = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n').encode()
    body = field * count + body_of(b"the file")  # the file part last
    assert_error(send_multipart(client, body), 400, "too_many_parts")
    assert data_keys(r) == []


def test_sixteen_parts_with_one_file_are_accepted(client: httpx.Client) -> None:
    field = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n').encode()
    response = send_multipart(client, field * 15 + body_of(b"the file"))
    assert response.status_code == 200, response.text
    assert get_raw(client, response.text).content == b"the file"


def test_a_huge_part_header_is_400(client: httpx.Client, broker_proc: BrokerProcess) -> None:
    body = part_head(filename="n" * 200_000) + b"data" + closing()
    assert_error(send_multipart(client, body), 400, "malformed_multipart")
    many = (f"--{BOUNDARY}\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(50))
            + 'Content-Disposition: form-data; name="file"\r\n\r\n').encode() + b"x" + closing()
    assert_error(send_multipart(client, many), 400, "malformed_multipart")
    assert temp_files(broker_proc.data_dir) == []


TRUNCATED, MALFORMED = "truncated_multipart", "malformed_multipart"


@pytest.mark.parametrize(("body", "code"), [
    (b"", TRUNCATED), (b"--", TRUNCATED), (b"\r\n\r\n", TRUNCATED),
    (b"not multipart at all", MALFORMED),
    (f"--{BOUNDARY}\r\n\r\nno disposition".encode() + closing(), MALFORMED),
    (f"--{BOUNDARY}\r\nContent-Disposition: attachment\r\n\r\nx".encode() + closing(),
     MALFORMED),
    (f"--{BOUNDARY}\r\nno colon here\r\n\r\nx".encode() + closing(), MALFORMED),
    (f"--{BOUNDARY}\r\n: empty name\r\n\r\nx".encode() + closing(), MALFORMED),
    (f"--{BOUNDARY}X\r\n".encode(), MALFORMED),
    (part_head() + b"data without an end", TRUNCATED),
    (part_head() + b"x" + closing()[:-5], TRUNCATED),
])
def test_malformed_multipart_is_400_and_leaves_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess, body: bytes,
        code: str) -> None:
    assert_error(send_multipart(client, body), 400, code)
    assert data_keys(r) == []
    assert temp_files(broker_proc.data_dir) == []


def test_an_epilogue_after_the_closing_boundary_is_ignored(client: httpx.Client) -> None:
    content = b"\x00\xff\r\n--" * 1000
    response = send_multipart(client, body_of(content) + b"epilogue" * 1000)
    assert response.status_code == 200, response.text
    assert get_raw(client, response.text).content == content


def test_a_body_that_ends_before_the_closing_boundary_is_400_and_leaves_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    response = send_multipart(client, part_head() + os.urandom(200_000))
    assert_error(response, 400, "truncated_multipart")
    assert data_keys(r) == []
    assert temp_files(broker_proc.data_dir) == []


def test_an_upload_cut_off_midway_leaves_no_temp_file_and_no_metadata(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    sent = part_head() + os.urandom(300_000)
    with socket.create_connection(("127.0.0.1", broker_proc.port)) as sock:
        sock.sendall(raw_head(broker_proc.port, len(sent) + 1_000_000) + sent)
        until(lambda: bool(temp_files(broker_proc.data_dir)))  # the broker is writing it
    until(lambda: not temp_files(broker_proc.data_dir))
    assert data_keys(r) == []
    assert client.get("/data", headers={"X-Data-Id": "00000000"}).status_code == 404


def test_a_put_cut_off_midway_keeps_the_old_content(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    data_id = post(client, b"old content")
    meta = r.hgetall(f"broker:data:{data_id}")
    sent = part_head() + os.urandom(300_000)
    with socket.create_connection(("127.0.0.1", broker_proc.port)) as sock:
        head = raw_head(broker_proc.port, len(sent) + 1_000_000, "PUT")
        sock.sendall(head.replace(b"\r\n\r\n", f"\r\nX-Data-Id: {data_id}\r\n\r\n".encode())
                     + sent)
        until(lambda: bool(temp_files(broker_proc.data_dir)))
    until(lambda: not temp_files(broker_proc.data_dir))
    assert get_raw(client, data_id).content == b"old content"
    assert r.hgetall(f"broker:data:{data_id}") == meta


# -- the size limit ------------------------------------------------------------------------------

@pytest.fixture
def small(start_broker: Callable[..., BrokerProcess]) -> Iterator[tuple[BrokerProcess,
                                                                        httpx.Client]]:
    proc = start_broker(BROKER_MAX_DATA_SIZE="1000")
    with httpx.Client(base_url=proc.url, timeout=30.0) as c:
        yield proc, c


def test_an_upload_at_the_limit_is_accepted(small: tuple[BrokerProcess, httpx.Client]) -> None:
    _, client = small
    assert get_raw(client, post(client, b"x" * 1000)).content == b"x" * 1000


def test_an_upload_over_the_limit_is_413_naming_it_and_leaves_nothing(
        small: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, client = small
    response = client.post("/data", files={"file": ("x", b"x" * 1001)})
    body = assert_error(response, 413, "too_large")
    assert body["limit"] == 1000
    assert "1000" in str(body["detail"])
    assert data_keys(r) == []
    assert temp_files(proc.data_dir) == [] and data_files(proc.data_dir) == []


def test_a_chunked_upload_over_the_limit_is_413_and_leaves_nothing(
        small: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, client = small

    def body() -> Iterator[bytes]:  # no Content-Length: only the stream can tell
        yield part_head()
        for _ in range(50):
            yield os.urandom(4096)
        yield closing()

    response = client.post("/data", content=body(), headers={"Content-Type": MULTIPART})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "too_large")
    assert data_keys(r) == []
    assert temp_files(proc.data_dir) == [] and data_files(proc.data_dir) == []


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
        small: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, _ = small
    with socket.create_connection(("127.0.0.1", proc.port)) as sock:
        sock.sendall(raw_head(proc.port, 10**12))  # and no body at all
        assert read_status(sock) == 413
    assert temp_files(proc.data_dir) == [] and data_keys(r) == []


def test_ignored_fields_cannot_smuggle_a_body_past_the_limit(
        small: tuple[BrokerProcess, httpx.Client]) -> None:
    _, client = small

    def body() -> Iterator[bytes]:
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'.encode()
        for _ in range(40):
            yield b"p" * 4096
        yield body_of(b"small")

    response = client.post("/data", content=body(), headers={"Content-Type": MULTIPART})
    assert_error(response, 413, "too_large")


def test_form_fields_beside_the_file_are_bounded_whatever_the_limit(
        client: httpx.Client, broker_proc: BrokerProcess) -> None:
    def body() -> Iterator[bytes]:
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'.encode()
        for _ in range(100):
            yield b"p" * 4096
        yield body_of(b"small")

    response = client.post("/data", content=body(), headers={"Content-Type": MULTIPART})
    assert assert_error(response, 413, "too_large")["limit"] == 64 * 1024
    assert temp_files(broker_proc.data_dir) == []


def test_a_put_over_the_limit_keeps_the_old_content(
        small: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, client = small
    data_id = post(client, b"old")
    assert_error(put(client, data_id, b"y" * 1001), 413, "too_large")
    assert get_raw(client, data_id).content == b"old"
    assert r.hget(f"broker:data:{data_id}", "sha256") == sha(b"old")
    assert temp_files(proc.data_dir) == []


def test_nothing_is_left_in_the_data_dir_but_data_and_locks(
        small: tuple[BrokerProcess, httpx.Client]) -> None:
    proc, client = small
    data_id = post(client, b"x")
    client.post("/data", files={"file": ("x", b"x" * 5000)})
    assert sorted(p.name for p in Path(proc.data_dir).iterdir()) == [".locks", data_id]
