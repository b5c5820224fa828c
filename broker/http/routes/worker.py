"""POST/GET/DELETE /worker and GET /worker/contract."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from broker import ids, wire
from broker.errors import BadRequest
from broker.http import claims, inputs
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
from broker.http.services import services_of


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


async def contract(request: Request) -> Response:
    """The seed's one-job answer; with ?max=N, {"contracts": [...]} of up to N jobs."""
    worker_id = await _worker_id(request)
    services = services_of(request)
    wait = claims.wait_query(request)
    count = claims.count_query(request, "max")
    lease = secrets.token_hex(8)
    claim = await claims.take(request, worker_id, lease, wait, count or 1,
                              lambda: services.workers.claim(worker_id, lease, wait, count or 1))
    return claims.claimed(request, claim, many=count is not None)


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
