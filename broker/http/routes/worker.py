"""POST/GET/DELETE /worker and GET /worker/contract."""

from __future__ import annotations

import asyncio
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from broker import ids, wire
from broker.errors import BadRequest
from broker.http import inputs, observe
from broker.http.auth import SELF, WORKER
from broker.http.endpoint import Endpoint
from broker.http.operation import (
    BODY_ERRORS,
    NO_CONTENT,
    WORKER_TARGETS,
    errors,
    json_body,
    json_response,
    links,
    operation,
    response,
)
from broker.http.responses import JSONResponse
from broker.http.schema import schema
from broker.http.services import Services, services_of
from broker.store.workers import Claim


async def register(request: Request) -> Response:
    body = await inputs.json_body(request, required=True)
    runtimes = body.get("Runtime")
    if not isinstance(runtimes, list) or not runtimes:
        raise BadRequest("Runtime must be a non-empty list of runtime names",
                         code="missing_field" if runtimes is None else "wrong_type",
                         field="Runtime")
    if len(runtimes) > inputs.MAX_RUNTIMES:
        raise BadRequest(f"Runtime may list at most {inputs.MAX_RUNTIMES} runtimes",
                         code="wrong_type", field="Runtime")
    names = list(dict.fromkeys(ids.check_runtime(r, "Runtime") for r in runtimes))
    services = services_of(request)
    worker_id = await services.workers.register(names)
    answer = {"worker_id": worker_id, "Runtime": names,
              "heartbeat_interval": services.workers.heartbeat_interval}
    if services.credentials is not None:  # the token this worker acts with from now on
        answer["worker_token"] = services.credentials.mint(worker_id)
    return JSONResponse(answer)


async def _worker_id(request: Request) -> str:
    body = await inputs.json_body(request, required=False)
    worker_id = inputs.worker_id(request, body)
    assert worker_id is not None
    return worker_id


async def get(request: Request) -> Response:
    worker_id = await _worker_id(request)
    workers = services_of(request).workers
    await workers.touch(worker_id)
    return JSONResponse(wire.worker(await workers.get(worker_id)))


async def delete(request: Request) -> Response:
    worker_id = await _worker_id(request)
    await services_of(request).workers.unregister(worker_id)
    return Response(status_code=204)


def _wait_seconds(request: Request, cap: float) -> float:
    raw = inputs.query(request, "wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        raise BadRequest(f"wait must be a number of seconds, zero or more, got {raw!r:.40}",
                         code="invalid_wait", field="wait")
    return min(wait, cap)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _max(request: Request) -> int | None:
    raw = inputs.query(request, "max")
    if raw is None:
        return None
    count = inputs.digits(raw)
    if count is None or not 1 <= count <= inputs.MAX_BATCH:
        raise BadRequest(f"max must be an integer from 1 to {inputs.MAX_BATCH}",
                         code="invalid_query", field="max")
    return count


async def contract(request: Request) -> Response:
    """The seed's one-job answer; with ?max=N, {"contracts": [...]} of up to N jobs."""
    worker_id = await _worker_id(request)
    services = services_of(request)
    wait = _wait_seconds(request, services.settings.contract_wait_max)
    count = _max(request)
    deadline = time.monotonic() + wait
    lease = secrets.token_hex(8)
    claim = await services.workers.claim(worker_id, lease, wait, count or 1)
    if not claim.contracts and wait > 0 and not services.wakeups.closing:
        claim = await _wait_for_job(request, services, worker_id, lease, claim.runtimes,
                                    deadline, count or 1)
    if not claim.contracts:
        return Response(status_code=204)
    for waited in claim.waited:
        services.metrics.wait.observe(waited)
    observe.note(request.scope, job_id=claim.contracts[0].job_id)
    if claim.more:
        for runtime in claim.runtimes:
            services.wakeups.wake(runtime)
    if count is None:
        return JSONResponse(claim.contracts[0].to_json())
    return JSONResponse({"contracts": [c.to_json() for c in claim.contracts]})


async def _wait_for_job(request: Request, services: Services, worker_id: str, lease: str,
                        runtimes: tuple[str, ...], deadline: float, count: int) -> Claim:
    """Claim again each time a job for one of `runtimes` turns up, until the deadline, the
    client hangs up or the server stops. The waiter is registered before the first claim, so
    no wake-up is lost."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        with services.wakeups.waiter(runtimes) as waiter:
            while not gone.done() and not services.wakeups.closing:
                remaining = deadline - time.monotonic()
                claim = await services.workers.claim(worker_id, lease, max(remaining, 0),
                                                     count)
                remaining = deadline - time.monotonic()
                if claim.contracts or remaining <= 0:
                    return claim
                woken = asyncio.ensure_future(waiter.wait(remaining))
                await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not woken.done():
                    woken.cancel()
                elif not woken.result():
                    return claim
            return Claim((), runtimes)
    finally:
        gone.cancel()


ENDPOINTS = [
    Endpoint("POST", "/worker", register, frozenset({WORKER}), operation(
        "registerWorker", "Register a worker and the runtimes it runs", "workers",
        {"200": json_response("Registered.", "Registered"), **errors(*BODY_ERRORS)},
        body=json_body("Registration", required=True)),
        links=links("$response.body#/worker_id", WORKER_TARGETS)),
    Endpoint("GET", "/worker", get, frozenset({SELF}), operation(
        "getWorker", "A worker (counts as hearing from it)", "workers",
        {"200": json_response("The worker.", "Worker"), **errors(400, 404, 413, 415, 503)},
        parameters=("WorkerId",), body=json_body("WorkerIdBody", required=False))),
    Endpoint("DELETE", "/worker", delete, frozenset({SELF}), operation(
        "unregisterWorker", "Unregister a worker; its running jobs go back to the head of "
        "their queues", "workers", {**NO_CONTENT, **errors(400, 404, 413, 415, 503)},
        parameters=("WorkerId",), body=json_body("WorkerIdBody", required=False))),
    Endpoint("GET", "/worker/contract", contract, frozenset({SELF}), operation(
        "contract", "Hand the worker the first pending job among its runtimes that are not "
        "paused: the highest priority, then the oldest", "workers",
        {"200": response("A job, now running under a fresh lease (with ?max, a list of "
                         "them).", {"application/json": {"anyOf": [
                             schema("Contract"), schema("Contracts")]}}),
         **NO_CONTENT, **errors(400, 404, 413, 415, 503)},
        parameters=("WorkerId", "Wait", "Max"), body=json_body("WorkerIdBody", required=False),
        description="204 when no job arrives within `wait` seconds."),
        links={"reportOnContract": {"operationId": "updateJob", "parameters": {
            "header.X-Job-Id": "$response.body#/job_id",
            "header.X-Worker-Id": "$response.body#/worker_id",
            "header.X-Lease": "$response.body#/lease"}},
            **links("$response.body#/job_id", {"getJob": "X-Job-Id"})},
        head=False),
]
