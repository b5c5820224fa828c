"""Small HTTP helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


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


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for `check` to hold, polling; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
