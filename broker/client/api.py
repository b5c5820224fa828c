"""One small async client over the broker's HTTP API, used by the agent, the CLI and tests.

Uploads and downloads stream: a file of any size goes through without being held in memory.
Errors the broker answers become BrokerError carrying its `error` code and `detail`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from broker.client.transfer import Counting, Progress, save_body
from broker.wire import Contract

T = TypeVar("T")


class BrokerError(Exception):
    """The broker answered an error: `status`, and its `code` and `detail`."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class Unreachable(Exception):
    """The broker could not be reached, or answered 5xx, after every retry."""


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    try:
        body = resp.json()
        code, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        body, code, detail = {}, "http_error", resp.text[:200] or resp.reason_phrase
    raise BrokerError(resp.status_code, code, detail, body)


def backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))


class BrokerClient:
    def __init__(self, url: str, *, token: str = "", timeout: float = 30.0, retries: int = 5,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # An http:// broker needs no TLS, and no redirect is followed to one that does: no SSL
        # context is built (loading the CA bundle is a third of a CLI command's time).
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport,
                                       headers=headers,
                                       verify=not self.url.startswith("http://"))

    async def aclose(self) -> None:
        await self._http.aclose()

    def use_token(self, token: str) -> None:
        """Send `token` from now on (a worker's own, from its registration); registering again
        still sends the token the client was made with."""
        self._http.headers["Authorization"] = f"Bearer {token}"

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` again on a transport error or a 5xx, with backoff and jitter. Only calls
        that are safe to repeat come here (reads, PUT, DELETE, creates under an idempotency
        key)."""
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except httpx.TransportError as exc:
                error: Exception = exc
            except BrokerError as exc:
                if exc.status < 500:
                    raise
                error = exc
            if attempt == self.retries:
                raise Unreachable(f"{self.url}: {error}") from error
            await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, *, retry: bool = True,
                    headers: dict[str, str] | None = None, json: Any = None,
                    params: dict[str, Any] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            resp = await self._http.request(method, path, headers=headers, json=json,
                                            params=params)
            _raise_for(resp)
            return resp
        return await self._retrying(call) if retry else await call()

    # -- workers ---------------------------------------------------------------------------
    async def register(self, runtimes: list[str]) -> dict[str, Any]:
        """POST /worker with the shared token; the answer may carry the worker's own token."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        resp = await self._json("POST", "/worker", json={"Runtime": runtimes}, retry=False,
                                headers=headers)
        body: dict[str, Any] = resp.json()
        return body

    async def get_worker(self, worker_id: str) -> dict[str, Any]:
        resp = await self._json("GET", "/worker", headers={"X-Worker-Id": worker_id})
        body: dict[str, Any] = resp.json()
        return body

    async def unregister(self, worker_id: str) -> None:
        await self._json("DELETE", "/worker", headers={"X-Worker-Id": worker_id})

    async def contract(self, worker_id: str, wait: float = 0) -> Contract | None:
        """Ask once for a job (never retried here: a lost answer is recovered by the lease)."""
        params = {"wait": wait} if wait else None
        resp = await self._http.get("/worker/contract", headers={"X-Worker-Id": worker_id},
                                    params=params, timeout=wait + 30)
        _raise_for(resp)
        return None if resp.status_code == 204 else Contract.from_json(resp.json())

    # -- jobs ------------------------------------------------------------------------------
    async def submit(self, runtime: str, function_id: str, data1_id: str = "",
                     data2_id: str = "", **options: Any) -> str:
        """POST /job under a fresh Idempotency-Key, so that retrying it is safe."""
        body = {"runtime": runtime, "function_id": function_id, "data1_id": data1_id,
                "data2_id": data2_id, **options}
        resp = await self._json("POST", "/job", json=body,
                                headers={"Idempotency-Key": self.idempotency_key()})
        job_id: str = resp.json()["job_id"]
        return job_id

    async def get_job(self, job_id: str) -> dict[str, Any]:
        resp = await self._json("GET", "/job", headers={"X-Job-Id": job_id})
        body: dict[str, Any] = resp.json()
        return body

    async def put_job(self, job_id: str, fields: dict[str, Any], *, worker_id: str = "",
                      lease: str = "") -> None:
        headers = {"X-Job-Id": job_id}
        if worker_id:
            headers["X-Worker-Id"] = worker_id
        if lease:
            headers["X-Lease"] = lease
        await self._json("PUT", "/job", headers=headers, json=fields)

    async def report_and_take(self, job_id: str, fields: dict[str, Any], *, worker_id: str,
                              lease: str) -> tuple[Contract | None, bool]:
        """A final report that also takes the worker's next job (PUT /job?next=1): that
        contract, or None (none pending, or a broker without `next`), and whether the job
        reported on had been cancelled meanwhile. Retried like put_job: a resent report
        changes nothing, and a job that a lost answer took comes back when its lease ends."""
        headers = {"X-Job-Id": job_id, "X-Worker-Id": worker_id}
        if lease:
            headers["X-Lease"] = lease
        resp = await self._json("PUT", "/job", headers=headers, json=fields,
                                params={"next": 1})
        cancelled = resp.headers.get("X-Report-Error") == "cancelled"
        if resp.status_code == 204:
            return None, cancelled
        return Contract.from_json(resp.json()), cancelled

    async def append_log(self, job_id: str, chunk: bytes, *, worker_id: str,
                         lease: str) -> None:
        """POST /job/log: add to the live log of the job this worker holds. Retried like the
        other calls: a chunk whose answer was lost may appear twice in the log."""
        headers = {"X-Job-Id": job_id, "X-Worker-Id": worker_id,
                   "Content-Type": "application/octet-stream"}
        if lease:
            headers["X-Lease"] = lease

        async def call() -> None:
            _raise_for(await self._http.post("/job/log", headers=headers, content=chunk))
        await self._retrying(call)

    async def delete_job(self, job_id: str) -> None:
        await self._json("DELETE", "/job", headers={"X-Job-Id": job_id})

    async def submit_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /jobs under a fresh Idempotency-Key, so that retrying it is safe: one result
        per job, in order ({"job_id"} or {"error", "detail"})."""
        resp = await self._json("POST", "/jobs", json={"jobs": jobs},
                                headers={"Idempotency-Key": self.idempotency_key()})
        results: list[dict[str, Any]] = resp.json()["results"]
        return results

    # -- listings --------------------------------------------------------------------------
    async def jobs_page(self, status: str | None = None, runtime: str | None = None,
                        limit: int = 20, cursor: str | None = None) -> tuple[
                            list[dict[str, Any]], str | None]:
        """One page of GET /jobs, newest first, and the cursor of the next (None: no more)."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("status", status), ("runtime", runtime), ("cursor", cursor)):
            if value:
                params[name] = value
        body = (await self._json("GET", "/jobs", params=params)).json()
        return body["jobs"], body["next_cursor"] or None

    async def list_jobs(self, status: str | None = None, runtime: str | None = None,
                        limit: int = 20) -> list[dict[str, Any]]:
        return (await self.jobs_page(status, runtime, limit))[0]

    async def list_workers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            body = (await self._json("GET", "/workers", params=params)).json()
            found.extend(body["workers"])
            if not body["next_cursor"]:
                return found
            cursor = body["next_cursor"]

    async def runtimes(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await self._json("GET", "/runtimes")).json()["runtimes"]
        return rows

    async def pause(self, runtime: str, paused: bool) -> None:
        """PUT /runtimes: pause a runtime, or resume it."""
        await self._json("PUT", "/runtimes", json={"runtime": runtime, "paused": paused})

    # -- data ------------------------------------------------------------------------------
    async def upload(self, path: Path, progress: Progress | None = None) -> str:
        """POST /data from a file, streamed, under a fresh Idempotency-Key (so retried safely);
        the new data_id."""
        headers = {"Idempotency-Key": self.idempotency_key()}
        return await self._send_file("POST", path, headers, progress, retry=True)

    async def put_data(self, data_id: str, path: Path, *, worker_id: str = "",
                       lease: str = "", progress: Progress | None = None) -> str:
        headers = {"X-Data-Id": data_id}
        if worker_id:
            headers["X-Worker-Id"] = worker_id
        if lease:
            headers["X-Lease"] = lease
        return await self._send_file("PUT", path, headers, progress, retry=True)

    async def reserve(self) -> str:
        resp = await self._json("POST", "/data/reg",
                                headers={"Idempotency-Key": self.idempotency_key()})
        return resp.text.strip()

    async def delete_data(self, data_id: str) -> None:
        await self._json("DELETE", "/data", headers={"X-Data-Id": data_id})

    async def _send_file(self, method: str, path: Path, headers: dict[str, str],
                         progress: Progress | None, *, retry: bool) -> str:
        async def call() -> str:
            with path.open("rb") as f:
                source: Any = Counting(f, progress) if progress else f
                resp = await self._http.request(method, "/data", headers=headers,
                                                files={"file": ("file", source)})
            _raise_for(resp)
            return resp.text.strip()
        return await self._retrying(call) if retry else await call()

    async def download(self, data_id: str, dest: Path, *, etag: str | None = None,
                       progress: Progress | None = None) -> str | None:
        """GET /data into `dest` (written whole or not at all), parsing the seed's multipart
        answer as it streams. Answers the ETag, or None when `etag` still matches (304)."""
        async def call() -> str | None:
            headers = {"X-Data-Id": data_id}
            if etag:
                headers["If-None-Match"] = etag
            async with self._http.stream("GET", "/data", headers=headers) as resp:
                if resp.status_code == 304:
                    return None
                if not resp.is_success:
                    await resp.aread()
                    _raise_for(resp)
                await save_body(resp, dest, progress)
                return str(resp.headers.get("etag", ""))
        return await self._retrying(call)

    @staticmethod
    def idempotency_key() -> str:
        return secrets.token_hex(16)
