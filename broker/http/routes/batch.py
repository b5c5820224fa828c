"""Batches: POST /jobs submits many jobs and PUT /jobs reports on many, each in one round trip
to Redis. Each job is created or reported atomically; the batch as a whole is not, so every
item gets its own result, in order."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broker.errors import BadRequest, BrokerError
from broker.http import claims, inputs
from broker.http.auth import REQUESTER, SELF
from broker.http.endpoint import Endpoint
from broker.http.operation import BODY_ERRORS, errors, json_body, json_response, operation
from broker.http.responses import JSONResponse
from broker.http.routes.job import new_job, retry_field
from broker.http.services import services_of
from broker.store.jobs import JobUpdate, NewJob
from broker.store.workers import Claim

REPORT_FIELDS = ("job_id", "lease", "status", "error", "retry", "data2_id")


def _items(body: dict[str, Any], name: str) -> list[Any]:
    items = body.get(name)
    if not isinstance(items, list) or not 1 <= len(items) <= inputs.MAX_ITEMS:
        raise BadRequest(f"{name} must be a list of 1 to {inputs.MAX_ITEMS} objects",
                         code="wrong_type", field=name)
    return items


def _error(exc: BrokerError) -> dict[str, Any]:
    return {"error": exc.code, "detail": exc.detail, **exc.extra}


async def create(request: Request) -> Response:
    """Under an Idempotency-Key K, job i is created under the key K#i: the same batch sent
    again answers the jobs the first one made, and creates none."""
    key = inputs.idempotency_key(request)
    body = await inputs.json_body(request, required=True)
    services = services_of(request)
    parsed: list[NewJob | BrokerError] = []
    for i, item in enumerate(_items(body, "jobs")):
        try:
            if not isinstance(item, dict):
                raise BadRequest("each job must be a JSON object", code="wrong_type")
            parsed.append(new_job(item, f"{key}#{i}" if key else "", services.webhook_deny))
        except BrokerError as exc:
            parsed.append(exc)
    valid = [job for job in parsed if isinstance(job, NewJob)]
    created = iter(await services.jobs.submit_many(valid) if valid else [])
    results = []
    for job in parsed:
        outcome = next(created) if isinstance(job, NewJob) else job
        results.append({"job_id": outcome} if isinstance(outcome, str) else _error(outcome))
    return JSONResponse({"results": results})


def _report(item: Any, worker_id: str) -> tuple[str, JobUpdate]:
    if not isinstance(item, dict):
        raise BadRequest("each report must be a JSON object", code="wrong_type")
    unknown = sorted(set(item) - set(REPORT_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", code="unknown_field", field=unknown[0])
    job_id = inputs.optional_id(item, "job_id")
    if job_id is None:
        raise BadRequest("job_id is required", code="missing_field", field="job_id")
    status = inputs.string_field(item, "status", required=True)
    if status not in ("running", "succeeded", "failed"):
        raise BadRequest("status must be running, succeeded or failed", code="invalid_status",
                         field="status")
    output = inputs.optional_id(item, "data2_id")
    return job_id, JobUpdate(
        role="worker", status=status, fields={"data2_id": output} if output else {},
        worker_id=worker_id, lease=inputs.lease(inputs.string_field(item, "lease") or "", "lease"),
        error=inputs.string_field(item, "error", max_length=inputs.MAX_ERROR_TEXT) or "",
        retry=retry_field(item) is not False)


async def report(request: Request) -> Response:
    worker_id = inputs.worker_id(request)
    assert worker_id is not None
    body = await inputs.json_body(request, required=True)
    parsed: list[tuple[str, JobUpdate] | BrokerError] = []
    for item in _items(body, "reports"):
        try:
            parsed.append(_report(item, worker_id))
        except BrokerError as exc:
            parsed.append(exc)
    services = services_of(request)
    valid = [p for p in parsed if not isinstance(p, BrokerError)]
    count = claims.count_query(request, "next")
    if count is None:
        made = await services.jobs.report_many(worker_id, valid) if valid else []
        claim = None
    else:
        made, claim = await _report_and_take(request, worker_id, valid, count)
    outcomes = iter(made)
    results: list[dict[str, Any]] = []
    for p in parsed:
        outcome = p if isinstance(p, BrokerError) else next(outcomes)
        results.append(_error(outcome) if outcome else {"ok": True})
    if claim is None:
        return JSONResponse({"results": results})
    return JSONResponse({"results": results, "contracts": claims.handed(request, claim)})


async def _report_and_take(request: Request, worker_id: str,
                           reports: list[tuple[str, JobUpdate]],
                           count: int) -> tuple[list[BrokerError | None], Claim]:
    """PUT /jobs?next=N: the reports, and up to N next jobs, in one script call (waiting for
    one, with `wait`, when none is pending)."""
    services = services_of(request)
    lease = secrets.token_hex(8)
    made: list[list[BrokerError | None]] = []

    async def report_and_claim() -> Claim:
        outcomes, taken = await services.jobs.report_many_next(
            worker_id, reports, lease, count, claims.wait_query(request))
        made.append(outcomes)
        return taken

    claim = await claims.take(request, worker_id, lease, claims.wait_query(request), count,
                              report_and_claim)
    return made[0], claim





ENDPOINTS = [
    Endpoint("POST", "/jobs", create, frozenset({REQUESTER}), operation(
        "submitJobs", "Create many jobs in one request", "jobs",
        {"200": json_response("Each job created or refused, in order.", "JobsCreated"),
         **errors(*BODY_ERRORS)},
        body=json_body("NewJobs", required=True), parameters=("IdempotencyKey",),
        description="Each job is created atomically; the batch as a whole is not. Under an "
                    "Idempotency-Key K the i-th job is created under K#i, so the batch sent "
                    "again answers the jobs the first one made.")),
    Endpoint("PUT", "/jobs", report, frozenset({SELF}), operation(
        "reportJobs", "A worker reports on many of its jobs at once", "jobs",
        {"200": json_response("Each report applied or refused, in order; with ?next, "
                              "`contracts` too: the worker's next jobs, each under a fresh "
                              "lease (an empty list when none).", "ReportsDone"),
         **errors(*BODY_ERRORS)},
        parameters=("WorkerId", "Next", "Wait"), body=json_body("Reports", required=True),
        description="With ?next=N the reports and a claim of up to N next jobs are one "
                    "script call, whatever each report's outcome.")),
]
