"""What the tests share: small HTTP calls, waiting for a condition, jobs run by real agents,
multipart bodies and data files, and stalling a real Redis."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from pytest_redis.executor import RedisExecutor
from python_multipart.multipart import MultipartParser, parse_options_header


def register(client: httpx.Client, *runtimes: str) -> str:
    resp = client.post("/worker", json={"Runtime": list(runtimes)})
    assert resp.status_code == 200, resp.text
    worker_id: str = resp.json()["worker_id"]
    return worker_id


def submit(client: httpx.Client, runtime: str = "python3", **fields: str) -> str:
    resp = client.post("/job", json={"function_id": "fn", "runtime": runtime, **fields})
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def contract(client: httpx.Client, worker_id: str, **params: Any) -> httpx.Response:
    return client.get("/worker/contract", headers={"X-Worker-Id": worker_id}, params=params)


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    resp = client.get("/job", headers={"X-Job-Id": job_id})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def put_job(client: httpx.Client, job_id: str, body: dict[str, Any],
            **headers: str) -> httpx.Response:
    h = {"X-Job-Id": job_id, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return client.put("/job", json=body, headers=h)


def upload(client: httpx.Client, content: bytes = b"payload") -> str:
    resp = client.post("/data", files={"file": ("file", content)})
    assert resp.status_code == 200, resp.text
    return resp.text.strip()


def requests_served(url: str, method: str, route: str) -> float:
    """How many `method route` requests the broker process at `url` has answered (its
    /metrics), whatever their status."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("broker_http_requests_total{") and f'route="{route}"' in line \
                and f'method="{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def quickstart_blocks(text: str) -> dict[str, str]:
    """Each `sh` block that follows a `<!-- quickstart: NAME -->` line, by NAME."""
    found = re.findall(r"^<!-- quickstart: (\w+) -->\n```sh\n(.*?)^```$", text, re.M | re.S)
    return dict(found)


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for `check` to hold, polling; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- jobs run by real agents ---------------------------------------------------------------------

def run_job(client: httpx.Client, runtime: str, code: bytes, data: bytes = b"",
            **fields: str | int) -> str:
    body = {"function_id": upload(client, code), "runtime": runtime,
            "data1_id": upload(client, data) if data else "", **fields}
    resp = client.post("/job", json=body)
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def finished(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = job(client, job_id)
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body['status']}"
        time.sleep(0.05)


def output(client: httpx.Client, data_id: str) -> bytes:
    resp = client.get("/data", headers={"X-Data-Id": data_id,
                                        "Accept": "application/octet-stream"})
    assert resp.status_code == 200
    return resp.content


# -- data ----------------------------------------------------------------------------------------

BOUNDARY = "test-boundary-7d1f"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def post(client: httpx.Client, content: bytes, name: str = "file",
         filename: str = "x.bin") -> str:
    """Upload as `curl -F name=@x.bin` does; return the new data_id."""
    response = client.post("/data", files={name: (filename, content)})
    assert response.status_code == 200, response.text
    return response.text


def put(client: httpx.Client, data_id: str, content: bytes) -> httpx.Response:
    return client.put("/data", files={"file": ("x.bin", content)},
                      headers={"X-Data-Id": data_id})


def get_raw(client: httpx.Client, data_id: str, **headers: str) -> httpx.Response:
    return client.get("/data", headers={"X-Data-Id": data_id,
                                        "Accept": "application/octet-stream", **headers})


def part_head(name: str = "file", filename: str | None = "x.bin",
              boundary: str = BOUNDARY) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def closing(boundary: str = BOUNDARY) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode()


def body_of(content: bytes, name: str = "file") -> bytes:
    return part_head(name) + content + closing()


def temp_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".tmp-"))


def data_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("."))


def data_keys(r: redis.Redis) -> list[str]:
    return sorted(str(k) for k in r.keys("broker:data:*"))


@dataclass
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0
    data: bytearray = field(default_factory=bytearray)


def parse_multipart(content_type: str, chunks: Iterable[bytes], *, keep: bool = True) -> list[Part]:
    """Parse a multipart body as it streams; each part's bytes are hashed (and kept if asked)."""
    _, options = parse_options_header(content_type)
    parts: list[Part] = []
    name, value = bytearray(), bytearray()

    def on_header_end() -> None:
        parts[-1].headers[name.decode().lower()] = value.decode()
        name.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        view = memoryview(data)[start:end]
        parts[-1].hash.update(view)
        parts[-1].size += len(view)
        if keep:
            parts[-1].data += view

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": lambda: parts.append(Part()),
        "on_header_field": lambda d, s, e: name.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    })
    for chunk in chunks:
        parser.write(chunk)
    return parts


# -- round trips -----------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- Redis stalls --------------------------------------------------------------------------------

REDIS_TIMEOUT = 0.5  # the broker's wait for Redis in these tests
STALL = 2.5  # longer than that, and than the three tries redis-py makes of a command


def stall(server: RedisExecutor, seconds: float = STALL) -> threading.Timer:
    """Stop Redis dead (SIGSTOP) now and wake it (SIGCONT) `seconds` later, when it runs
    whatever was sent to it meanwhile; the timer that wakes it."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    wake = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    wake.start()
    return wake


@contextlib.contextmanager
def stalled(server: RedisExecutor, seconds: float = STALL) -> Iterator[None]:
    """Redis stalled while the block runs, and until `seconds` from its start."""
    wake = stall(server, seconds)
    try:
        yield
    finally:
        wake.join()
