"""The broker's HTTP calls the scenarios make, over aiohttp (README: "The API")."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

RUNTIME = "bench"
NOOP = {"function_id": "noop", "runtime": RUNTIME}
# The throughput calls send a body encoded once and read answers without parsing them, as the
# floor's calls do: what the load generator spends per request is not what is measured.
NOOP_BODY = json.dumps(NOOP).encode()
JSON = {"Content-Type": "application/json"}


class Refused(Exception):
    """The broker answered a status the scenario did not expect."""


async def _refused(resp: aiohttp.ClientResponse, what: str) -> Refused:
    text = (await resp.text())[:200]
    return Refused(f"{what} answered {resp.status}: {text}")


async def register(s: aiohttp.ClientSession, url: str, runtime: str = RUNTIME) -> str:
    async with s.post(url + "/worker", json={"Runtime": [runtime]}) as resp:
        if resp.status != 200:
            raise await _refused(resp, "POST /worker")
        worker_id: str = (await resp.json())["worker_id"]
        return worker_id


async def contract(s: aiohttp.ClientSession, url: str, worker_id: str, wait: float = 0,
                   most: int = 0) -> dict[str, Any] | None:
    """One GET /worker/contract: the answer (one contract, or {"contracts": [...]} with
    `most`), or None for a 204."""
    params = {"wait": str(wait)} if wait else {}
    if most:
        params["max"] = str(most)
    async with s.get(url + "/worker/contract", params=params,
                     headers={"X-Worker-Id": worker_id}) as resp:
        if resp.status == 204:
            await resp.read()
            return None
        if resp.status != 200:
            raise await _refused(resp, "GET /worker/contract")
        answer: dict[str, Any] = await resp.json()
        return answer


async def hand_out(s: aiohttp.ClientSession, url: str, worker_id: str) -> bool:
    """One GET /worker/contract for throughput: True for a contract, False for a 204."""
    async with s.get(url + "/worker/contract", headers={"X-Worker-Id": worker_id}) as resp:
        await resp.read()
        if resp.status not in (200, 204):
            raise await _refused(resp, "GET /worker/contract")
        return resp.status == 200


async def post_job(s: aiohttp.ClientSession, url: str, path: str = "/job") -> None:
    """One POST of the no-op job for throughput (to the floor's route too), its answer read
    but not parsed."""
    async with s.post(url + path, data=NOOP_BODY, headers=JSON) as resp:
        await resp.read()
        if resp.status != 200:
            raise await _refused(resp, f"POST {path}")


async def submit(s: aiohttp.ClientSession, url: str, runtime: str = RUNTIME) -> str:
    async with s.post(url + "/job", json={**NOOP, "runtime": runtime}) as resp:
        if resp.status != 200:
            raise await _refused(resp, "POST /job")
        job_id: str = (await resp.json())["job_id"]
        return job_id


async def submit_many(s: aiohttp.ClientSession, url: str, count: int,
                      runtime: str = RUNTIME) -> list[str]:
    async with s.post(url + "/jobs",
                      json={"jobs": [{**NOOP, "runtime": runtime}] * count}) as resp:
        if resp.status != 200:
            raise await _refused(resp, "POST /jobs")
        results = (await resp.json())["results"]
    bad = [r for r in results if "job_id" not in r]
    if bad or len(results) != count:
        raise Refused(f"POST /jobs refused {len(bad)} of {count} jobs: {bad[:1]}")
    return [r["job_id"] for r in results]


async def succeed(s: aiohttp.ClientSession, url: str, worker_id: str, job_id: str,
                  lease: str) -> None:
    headers = {"X-Worker-Id": worker_id, "X-Job-Id": job_id, "X-Lease": lease}
    async with s.put(url + "/job", json={"status": "succeeded"}, headers=headers) as resp:
        if resp.status != 204:
            raise await _refused(resp, "PUT /job")


async def succeed_next(s: aiohttp.ClientSession, url: str, worker_id: str, job_id: str,
                       lease: str, wait: float) -> dict[str, Any] | None:
    """A success report that takes the next job (PUT /job?next=1): its contract, or None."""
    headers = {"X-Worker-Id": worker_id, "X-Job-Id": job_id, "X-Lease": lease}
    async with s.put(url + "/job", json={"status": "succeeded"}, headers=headers,
                     params={"next": "1", "wait": str(wait)}) as resp:
        if resp.status == 204:
            await resp.read()
            return None
        if resp.status != 200:
            raise await _refused(resp, "PUT /job?next=1")
        answer: dict[str, Any] = await resp.json()
        return answer


async def succeed_many(s: aiohttp.ClientSession, url: str, worker_id: str,
                       contracts: list[dict[str, Any]]) -> None:
    reports = [{"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"}
               for c in contracts]
    async with s.put(url + "/jobs", json={"reports": reports},
                     headers={"X-Worker-Id": worker_id}) as resp:
        if resp.status != 200:
            raise await _refused(resp, "PUT /jobs")
        results = (await resp.json())["results"]
    bad = [r for r in results if r.get("ok") is not True]
    if bad or len(results) != len(reports):
        raise Refused(f"PUT /jobs refused {len(bad)} of {len(reports)} reports: {bad[:1]}")
