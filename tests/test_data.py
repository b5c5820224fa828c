"""The data endpoints on a real broker and a real Redis: uploads, downloads, reservations."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import (
    MULTIPART,
    body_of,
    closing,
    data_files,
    data_keys,
    get_raw,
    parse_multipart,
    part_head,
    post,
    put,
    sha,
    temp_files,
)


def test_a_curl_style_upload_comes_back_as_one_multipart_part_named_file(
        client: httpx.Client) -> None:
    content = os.urandom(300_000)
    data_id = post(client, content)
    assert re.fullmatch(r"[0-9a-z]{8}", data_id)

    response = client.get("/data", headers={"X-Data-Id": data_id})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(response.headers["content-length"]) == len(response.content)
    parts = parse_multipart(response.headers["content-type"], [response.content])
    assert len(parts) == 1
    assert parts[0].headers["content-disposition"] == (
        f'form-data; name="file"; filename="{data_id}"')
    assert bytes(parts[0].data) == content
    assert response.headers["x-data-id"] == data_id
    assert response.headers["x-content-sha256"] == sha(content)


def test_post_answers_the_data_id_as_text_plain(client: httpx.Client) -> None:
    response = client.post("/data", files={"file": ("x", b"hello")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text) == 8


def test_metadata_is_a_readable_hash_with_size_checksum_and_times(
        client: httpx.Client, r: redis.Redis) -> None:
    content = b"some bytes\n" * 1000
    data_id = post(client, content)

    meta = r.hgetall(f"broker:data:{data_id}")

    assert meta["data_id"] == data_id
    assert meta["state"] == "ready"
    assert meta["size"] == str(len(content))
    assert meta["sha256"] == sha(content)
    assert meta["created_at"] == meta["updated_at"]
    assert int(meta["created_at"]) > 1_600_000_000_000


def test_the_file_on_disk_is_named_by_its_data_id(client: httpx.Client,
                                                  broker_proc: BrokerProcess) -> None:
    data_id = post(client, b"on disk")
    assert (broker_proc.data_dir / data_id).read_bytes() == b"on disk"
    assert temp_files(broker_proc.data_dir) == []


def test_a_single_file_part_under_another_field_name_is_accepted(client: httpx.Client) -> None:
    data_id = post(client, b"named otherwise", name="upload")
    assert get_raw(client, data_id).content == b"named otherwise"


def test_a_file_part_without_a_filename_counts_under_the_default_name(
        client: httpx.Client) -> None:
    body = part_head(filename=None) + b"no filename" + closing()
    response = client.post("/data", content=body, headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    assert get_raw(client, response.text).content == b"no filename"


def test_plain_form_fields_beside_the_file_are_ignored(client: httpx.Client) -> None:
    response = client.post("/data", data={"note": "ignored", "other": "too"},
                           files={"file": ("x", b"the content")})
    assert response.status_code == 200, response.text
    assert get_raw(client, response.text).content == b"the content"


def test_an_empty_file_is_stored_as_empty(client: httpx.Client) -> None:
    data_id = post(client, b"")
    response = get_raw(client, data_id)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-content-sha256"] == sha(b"")


def test_accept_octet_stream_gives_the_raw_bytes(client: httpx.Client) -> None:
    content = os.urandom(1_000_000)
    data_id = post(client, content)

    response = get_raw(client, data_id)

    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(content))
    assert response.content == content


def test_the_etag_is_the_same_for_both_forms_and_answers_304(client: httpx.Client) -> None:
    data_id = post(client, b"cache me")
    multipart = client.get("/data", headers={"X-Data-Id": data_id})
    raw = get_raw(client, data_id)
    tag = raw.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    assert multipart.headers["etag"] == tag

    again = client.get("/data", headers={"X-Data-Id": data_id, "If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    other = client.get("/data", headers={"X-Data-Id": data_id, "If-None-Match": '"nope"'})
    assert other.status_code == 200


def test_head_answers_the_headers_of_get_without_a_body(client: httpx.Client) -> None:
    data_id = post(client, b"x" * 5000)
    full = get_raw(client, data_id)
    head = client.head("/data", headers={"X-Data-Id": data_id,
                                         "Accept": "application/octet-stream"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == full.headers["content-length"] == "5000"
    assert head.headers["etag"] == full.headers["etag"]


def test_the_data_id_may_come_in_a_json_body(client: httpx.Client) -> None:
    data_id = post(client, b"by body")
    response = client.request("GET", "/data", json={"data_id": data_id},
                              headers={"Accept": "application/octet-stream"})
    assert response.content == b"by body"


def test_a_header_and_a_body_that_disagree_are_refused(client: httpx.Client) -> None:
    data_id = post(client, b"x")
    response = client.request("GET", "/data", json={"data_id": "00000000"},
                              headers={"X-Data-Id": data_id})
    assert response.status_code == 400
    assert response.json()["error"] == "id_mismatch"


# -- replace, reserve, delete ------------------------------------------------------------------

def test_put_replaces_the_content_and_its_etag(client: httpx.Client, r: redis.Redis) -> None:
    data_id = post(client, b"first version")
    before = get_raw(client, data_id).headers["etag"]

    response = put(client, data_id, b"second, longer version")

    assert response.status_code == 200
    assert response.text == data_id
    after = get_raw(client, data_id)
    assert after.content == b"second, longer version"
    assert after.headers["etag"] != before
    meta = r.hgetall(f"broker:data:{data_id}")
    assert meta["sha256"] == sha(b"second, longer version")
    assert meta["size"] == "22"


def test_put_to_an_unknown_id_is_404_and_stores_nothing(
        client: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    response = put(client, "zzzzzzzz", b"orphan")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_data"
    assert data_keys(r) == []
    assert "zzzzzzzz" not in data_files(broker_proc.data_dir)
    assert temp_files(broker_proc.data_dir) == []


def test_put_needs_the_data_id_header(client: httpx.Client) -> None:
    response = client.put("/data", files={"file": ("x", b"x")})
    assert response.status_code == 400
    assert response.json()["error"] == "missing_id"


def test_a_reserved_id_is_not_ready_until_put_fills_it(client: httpx.Client,
                                                       r: redis.Redis) -> None:
    reserved = client.post("/data/reg")
    assert reserved.status_code == 200
    assert reserved.headers["content-type"].startswith("text/plain")
    data_id = reserved.text
    meta = r.hgetall(f"broker:data:{data_id}")
    assert (meta["state"], meta["size"], meta["sha256"]) == ("reserved", "0", "")

    early = client.get("/data", headers={"X-Data-Id": data_id})
    assert early.status_code == 409
    assert early.json()["error"] == "data_not_ready"
    assert "PUT" in early.json()["detail"]

    assert put(client, data_id, b"filled").status_code == 200
    assert get_raw(client, data_id).content == b"filled"
    assert r.hget(f"broker:data:{data_id}", "state") == "ready"


def test_delete_removes_the_metadata_and_the_file(client: httpx.Client, r: redis.Redis,
                                                  broker_proc: BrokerProcess) -> None:
    data_id = post(client, b"short-lived")

    response = client.delete("/data", headers={"X-Data-Id": data_id})

    assert response.status_code == 204
    assert response.content == b""
    assert data_keys(r) == []
    assert data_id not in data_files(broker_proc.data_dir)
    assert client.get("/data", headers={"X-Data-Id": data_id}).status_code == 404
    assert client.delete("/data", headers={"X-Data-Id": data_id}).status_code == 404


def test_a_reserved_id_can_be_deleted(client: httpx.Client, r: redis.Redis) -> None:
    data_id = client.post("/data/reg").text
    assert client.delete("/data", headers={"X-Data-Id": data_id}).status_code == 204
    assert data_keys(r) == []


def test_an_unknown_id_is_404(client: httpx.Client) -> None:
    response = client.get("/data", headers={"X-Data-Id": "00000000"})
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_data", "detail": "no data 00000000"}


def test_metadata_without_its_file_is_404_with_a_clear_detail(
        client: httpx.Client, r: redis.Redis) -> None:
    # As left by a crash between the metadata commit and the rename.
    r.hset("broker:data:abcd1234", mapping={"data_id": "abcd1234", "state": "ready",
                                            "size": "3", "sha256": sha(b"abc")})
    response = client.get("/data", headers={"X-Data-Id": "abcd1234"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_data"
    assert "file is missing" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["ABCDEFGH", "abc", "abcdefghi", "../../etc", "abcd-123",
                                 "abcd123\u00e9"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_malformed_id_is_refused_before_anything_is_touched(
        client: httpx.Client, r: redis.Redis, method: str, bad: str) -> None:
    files = {"file": ("x", b"x")} if method == "PUT" else None
    response = client.request(method, "/data", headers={b"X-Data-Id": bad.encode("utf-8")},
                              files=files)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_id"
    assert data_keys(r) == []


def test_a_malformed_id_in_a_json_body_is_refused(client: httpx.Client) -> None:
    response = client.request("DELETE", "/data", json={"data_id": "../x"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_id"


def test_a_download_streams_chunks_from_one_file(served: httpx.Client) -> None:
    content = os.urandom(3 * 256 * 1024 + 17)  # several read chunks and a ragged end
    data_id = post(served, content)
    with served.stream("GET", "/data", headers={"X-Data-Id": data_id}) as response:
        parts = parse_multipart(response.headers["content-type"], response.iter_raw())
    assert parts[0].hash.hexdigest() == sha(content)
    assert parts[0].size == len(content)


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_chunked_upload_without_content_length_is_accepted(client: httpx.Client) -> None:
    content = os.urandom(500_000)
    response = client.post("/data", content=chunks_of(body_of(content), 7000),
                           headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    assert get_raw(client, response.text).content == content
