"""GET/POST/PUT/DELETE /job."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broker import ids, lifecycle, wire
from broker.clock import now_ms
from broker.errors import BadRequest, Forbidden
from broker.events import targets
from broker.http import claims, inputs, observe
from broker.http.auth import REQUESTER, ROLE_KEY, SELF
from broker.http.endpoint import Endpoint
from broker.http.operation import (
    JOB_TARGETS,
    NO_CONTENT,
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
from broker.store.jobs import EDITABLE, JobUpdate, NewJob, Reported
from broker.store.why import why
from broker.store.workers import Claim


def _reject_unknown(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; this request takes {', '.join(known)}",
                         code="unknown_field", field=unknown[0])


def _job_fields(body: dict[str, Any]) -> dict[str, str]:
    """The editable job fields present in `body`, each checked, as the job hash holds them;
    "" clears a data id; run_at (or delay) becomes ms since the epoch."""
    fields: dict[str, str] = {}
    priority = inputs.number_field(body, "priority", low=-inputs.MAX_PRIORITY,
                                   high=inputs.MAX_PRIORITY, integer=True)
    if priority is not None:
        fields["priority"] = str(int(priority))
    due = inputs.due_time(body, now_ms())
    if due is not None:
        fields["run_at"] = str(due)
    for name in ("data1_id", "data2_id"):
        if body.get(name) is not None:
            fields[name] = inputs.optional_id(body, name) or ""
    function_id = inputs.string_field(body, "function_id")
    if function_id is not None:
        if not function_id:
            raise BadRequest("function_id must not be empty", code="missing_field",
                             field="function_id")
        fields["function_id"] = function_id
    if body.get("runtime") is not None:
        fields["runtime"] = ids.check_runtime(body["runtime"])
    return fields


def retry_field(body: dict[str, Any]) -> bool | None:
    """A worker's `retry`: None when absent. A failure is retried while attempts remain
    unless the worker sends false (BullMQ, Celery and SQS retry a failed attempt likewise)."""
    retry = body.get("retry")
    if retry is not None and not isinstance(retry, bool):
        raise BadRequest("retry must be true or false", code="wrong_type", field="retry")
    return retry


def callback_url(body: dict[str, Any], denied: list[targets.Network]) -> str:
    """A job body's callback_url: an http(s) URL not leading into a denied network."""
    url = inputs.string_field(body, "callback_url", max_length=targets.MAX_URL)
    if not url:
        return ""
    try:
        targets.check(url, denied)
    except targets.Refused as exc:
        raise BadRequest(f"callback_url {exc}", code="invalid_url",
                         field="callback_url") from None
    return url


def new_job(body: dict[str, Any], key: str = "",
            denied: list[targets.Network] | None = None) -> NewJob:
    """A POST /job body, checked; `denied`: the networks a callback may not lead into."""
    _reject_unknown(body, (*EDITABLE, "delay", "max_attempts", "timeout", "ttl", "after",
                           "callback_url"))
    inputs.string_field(body, "function_id", required=True)
    if body.get("runtime") is None:
        raise BadRequest("runtime is required", code="missing_field", field="runtime")
    fields = _job_fields(body)
    attempts = inputs.number_field(body, "max_attempts", low=1, high=inputs.MAX_ATTEMPTS,
                                   integer=True)
    timeout = inputs.number_field(body, "timeout", low=0.001, high=inputs.MAX_TIMEOUT)
    ttl = inputs.number_field(body, "ttl", low=0, high=inputs.MAX_TTL, integer=True)
    return NewJob(function_id=fields["function_id"], runtime=fields["runtime"],
                  data1_id=fields.get("data1_id", ""), data2_id=fields.get("data2_id", ""),
                  max_attempts=int(attempts) if attempts else None, timeout=timeout,
                  idempotency_key=key, fingerprint=inputs.fingerprint(body) if key else "",
                  priority=int(fields.get("priority", 0)),
                  run_at=int(fields["run_at"]) if "run_at" in fields else None,
                  ttl=int(ttl) if ttl is not None else None, after=inputs.after(body),
                  callback_url=callback_url(body, denied or []))


async def create(request: Request) -> Response:
    key = inputs.idempotency_key(request)
    body = await inputs.json_body(request, required=True)
    services = services_of(request)
    job_id = await services.jobs.submit(new_job(body, key, services.webhook_deny))
    observe.note(request.scope, job_id=job_id)
    return JSONResponse({"job_id": job_id})


async def get(request: Request) -> Response:
    body = await inputs.json_body(request, required=False)
    job_id = inputs.header_id(request, "X-Job-Id", body, "job_id")
    assert job_id is not None
    services = services_of(request)
    h = await services.jobs.get(job_id)
    answer = wire.job(job_id, h)
    answer["waiting"] = await why(services.redis, services.keys, job_id, h)
    return JSONResponse(answer)


async def update(request: Request) -> Response:
    body = await inputs.json_body(request, required=True)
    _reject_unknown(body, ("job_id", *EDITABLE, "delay", "status", "worker_id", "error",
                           "retry"))
    job_id = inputs.header_id(request, "X-Job-Id", body, "job_id")
    worker_id = inputs.worker_id(request, body, required=False)
    assert job_id is not None
    if request.scope.get(ROLE_KEY) == REQUESTER and worker_id:
        raise Forbidden("a requester token cannot write as a worker")
    lease = inputs.lease(request.headers.get("X-Lease", ""), "X-Lease")
    if lease and not worker_id:
        raise BadRequest("X-Lease needs X-Worker-Id", code="missing_id", field="X-Worker-Id")
    status = inputs.string_field(body, "status")
    if status is not None and status not in lifecycle.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(lifecycle.STATUSES)}",
                         code="invalid_status", field="status")
    if status == "scheduled" and body.get("run_at") is None and body.get("delay") is None:
        raise BadRequest("status scheduled needs run_at or delay", code="missing_field",
                         field="run_at")
    error = inputs.string_field(body, "error", max_length=inputs.MAX_ERROR_TEXT) or ""
    retry = retry_field(body)
    if (error or retry is not None) and not worker_id:
        field = "error" if error else "retry"
        raise BadRequest(f"only the worker holding a job reports {field}", code="wrong_role",
                         field=field)
    update = JobUpdate(role="worker" if worker_id else "requester", status=status,
                       fields=_job_fields(body), worker_id=worker_id or "", lease=lease,
                       error=error, retry=retry is not False)
    services = services_of(request)
    take = claims.count_query(request, "next")
    if take is not None:
        return await _report_and_take(request, job_id, update, take)
    if worker_id and status == "pending":  # report.lua touches the worker; release does not
        await services.workers.touch(worker_id)
    ran = await services.jobs.update(job_id, update)
    if ran is not None:
        services.metrics.run.observe(ran)
    return Response(status_code=204)


async def _report_and_take(request: Request, job_id: str, update: JobUpdate,
                           count: int) -> Response:
    """PUT /job?next=N: a worker's final report, and its next work in the same answer, as
    GET /worker/contract would give it (?max=N when N > 1): one script call for both."""
    if update.role != "worker" or update.status not in ("succeeded", "failed"):
        raise BadRequest("next takes the next work with a worker's final report: status "
                         "succeeded or failed", code="invalid_query", field="next")
    services = services_of(request)
    wait = claims.wait_query(request)
    lease = secrets.token_hex(8)
    reported: list[Reported] = []

    async def report_and_claim() -> Claim:
        done = await services.jobs.report_next(job_id, update, lease, count, wait)
        reported.append(done)
        return done.claim

    claim = await claims.take(request, update.worker_id, lease, wait, count, report_and_claim)
    done = reported[0]
    if done.ran is not None:
        services.metrics.run.observe(done.ran)
    # The job was cancelled while it ran: its report changed nothing, but the work goes on.
    headers = {"X-Report-Error": "cancelled"} if done.cancelled else None
    return claims.claimed(request, claim, many=count > 1, headers=headers)


async def delete(request: Request) -> Response:
    body = await inputs.json_body(request, required=False)
    job_id = inputs.header_id(request, "X-Job-Id", body, "job_id")
    assert job_id is not None
    await services_of(request).jobs.delete(job_id)
    return Response(status_code=204)


ENDPOINTS = [
    Endpoint("GET", "/job", get, frozenset({REQUESTER}), operation(
        "getJob", "A job", "jobs",
        {"200": json_response("The job.", "Job"), **errors(400, 404, 413, 415, 503)},
        parameters=("JobId",), body=json_body("JobIdBody", required=False))),
    Endpoint("POST", "/job", create, frozenset({REQUESTER}), operation(
        "submitJob", "Create a pending job at the tail of its runtime's queue among its "
        "priority, or a scheduled one (run_at, delay)", "jobs",
        {"200": json_response("Created (or, under a known Idempotency-Key, the first "
                              "answer).", "JobCreated"),
         **errors(400, 409, 413, 415, 422, 503)},
        parameters=("IdempotencyKey",), body=json_body("NewJob", required=True)),
        links=links("$response.body#/job_id", JOB_TARGETS)),
    Endpoint("PUT", "/job", update, frozenset({REQUESTER, SELF}), operation(
        "updateJob", "Change a job's status or fields", "jobs",
        {"200": response("With ?next: the worker's next job, now running under a fresh "
                         "lease (with next > 1, a list of them); header X-Report-Error: "
                         "cancelled when the job reported on had been cancelled.",
                         {"application/json": {"anyOf": [schema("Contract"),
                                                         schema("Contracts")]}}),
         **NO_CONTENT, **errors(400, 404, 409, 413, 415, 422, 503)},
        parameters=("JobId", "WorkerId", "Lease", "Next", "Wait"),
        body=json_body("JobUpdate", required=True),
        description="Without a worker id it is a requester's write; with one (header, body, "
                    "or the worker's own token) a worker's, allowed only to the worker "
                    "holding the job. Moves outside the lifecycle table are 409 "
                    "illegal_transition. A worker's final report with ?next=N also takes "
                    "its next work in the same step (204 when there is none, after `wait`).")),
    Endpoint("DELETE", "/job", delete, frozenset({REQUESTER}), operation(
        "deleteJob", "Remove a pending or finished job; cancel a running one", "jobs",
        {**NO_CONTENT, **errors(400, 404, 413, 415, 503)},
        parameters=("JobId",), body=json_body("JobIdBody", required=False))),
]
