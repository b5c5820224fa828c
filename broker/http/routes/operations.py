"""What operators ask every day: GET /healthz (the process answers), /readyz (Redis answers,
the data directory is writable), /jobs, /workers, /workers/dead, /runtimes (and pausing one),
/throughput, /metrics, and /openapi.json."""

from __future__ import annotations

import asyncio
import os
import tempfile

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from broker import ids, lifecycle
from broker.clock import now_ms
from broker.errors import BadRequest
from broker.http import inputs
from broker.http.auth import METRICS, REQUESTER
from broker.http.endpoint import OPEN, Endpoint
from broker.http.metrics import CONTENT_TYPE
from broker.http.operation import errors, json_body, json_response, operation, response
from broker.http.responses import JSONResponse, error_response
from broker.http.services import services_of
from broker.store.listings import Page


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _probe_dir(path: str) -> None:
    with tempfile.NamedTemporaryFile(dir=path, prefix=".ready-"):
        pass


async def readyz(request: Request) -> Response:
    services = services_of(request)
    try:
        await services.redis.ping()
    except (RedisError, OSError) as exc:
        return error_response(503, "not_ready", f"Redis does not answer: {exc}",
                              {"Retry-After": "1"})
    try:
        await asyncio.to_thread(_probe_dir, os.fspath(services.settings.data_dir))
    except OSError as exc:
        return error_response(503, "not_ready", f"the data directory is not writable: {exc}",
                              {"Retry-After": "5"})
    return JSONResponse({"status": "ready"})


def _limit(request: Request, default: int = 100) -> int:
    limit = inputs.digits(request.query_params.get("limit", str(default)))
    if limit is None or not 1 <= limit <= inputs.MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {inputs.MAX_LIMIT}",
                         code="invalid_query", field="limit")
    return limit


def _page(page: Page, key: str) -> Response:
    return JSONResponse({key: page.items, "next_cursor": page.next_cursor})


def job_filters(request: Request) -> tuple[str | None, str | None, float]:
    """GET /jobs's status, runtime and cursor (the creation number to list below), checked;
    the dashboard's jobs page reads the same."""
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in lifecycle.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(lifecycle.STATUSES)}",
                         code="invalid_query", field="status")
    runtime = ids.check_runtime(q["runtime"]) if q.get("runtime") else None
    raw = q.get("cursor") or None
    below = inputs.digits(raw)
    if raw is not None and below is None:
        raise BadRequest("cursor must be a next_cursor from an earlier page",
                         code="invalid_query", field="cursor")
    return status, runtime, float(below) if below is not None else float("inf")


async def jobs(request: Request) -> Response:
    status, runtime, cursor = job_filters(request)
    page = await services_of(request).listings.jobs(status, runtime, _limit(request), cursor)
    return _page(page, "jobs")


async def workers(request: Request) -> Response:
    after = request.query_params.get("cursor", "")
    if after and not ids.is_id(after):
        raise BadRequest("cursor must be a next_cursor from an earlier page",
                         code="invalid_query", field="cursor")
    return _page(await services_of(request).listings.workers(_limit(request), after), "workers")


async def dead_workers(request: Request) -> Response:
    return JSONResponse({"workers": await services_of(request).listings.dead_workers()})


async def throughput(request: Request) -> Response:
    return JSONResponse({"minutes": await services_of(request).listings.throughput(now_ms())})


async def runtimes(request: Request) -> Response:
    return JSONResponse({"runtimes": await services_of(request).listings.runtimes()})


async def pause(request: Request) -> Response:
    body = await inputs.json_body(request, required=True)
    unknown = sorted(set(body) - {"runtime", "paused"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; this request takes runtime, paused",
                         code="unknown_field", field=unknown[0])
    if body.get("runtime") is None:
        raise BadRequest("runtime is required", code="missing_field", field="runtime")
    runtime = ids.check_runtime(body["runtime"])
    paused = body.get("paused")
    if not isinstance(paused, bool):
        raise BadRequest("paused must be true or false", code="wrong_type", field="paused")
    await services_of(request).jobs.pause(runtime, paused)
    return JSONResponse({"runtime": runtime, "paused": paused})


async def metrics(request: Request) -> Response:
    services = services_of(request)
    body = services.metrics.render(await services.listings.gauges())
    return Response(body, media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    """The document the app built from every endpoint's declaration at start."""
    return JSONResponse(request.app.state.openapi)


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, OPEN, operation(
        "healthz", "The process answers", "operations",
        {"200": json_response("Alive.", "Health")})),
    Endpoint("GET", "/readyz", readyz, OPEN, operation(
        "readyz", "Redis answers and the data directory is writable", "operations",
        {"200": json_response("Ready.", "Ready"), **errors(503)})),
    Endpoint("GET", "/jobs", jobs, frozenset({REQUESTER}), operation(
        "listJobs", "Jobs, newest first", "operations",
        {"200": json_response("One page.", "JobPage"), **errors(400, 503)},
        parameters=("JobStatus", "JobRuntime", "JobCursor", "Limit"))),
    Endpoint("GET", "/workers", workers, frozenset({REQUESTER}), operation(
        "listWorkers", "Registered workers, by id", "operations",
        {"200": json_response("One page.", "WorkerPage"), **errors(400, 503)},
        parameters=("WorkerCursor", "Limit"))),
    Endpoint("GET", "/workers/dead", dead_workers, frozenset({REQUESTER}), operation(
        "listDeadWorkers", "Workers lately declared dead, newest first", "operations",
        {"200": json_response("The last 50 workers declared dead (Redis keeps 100).",
                              "DeadWorkers"),
         **errors(503)},
        description="A worker not heard from within BROKER_WORKER_TIMEOUT is declared dead: "
                    "the jobs it was running are taken from it (`gave_back`: given back to "
                    "their queues, or failed once out of attempts) and it is unregistered.")),
    Endpoint("GET", "/throughput", throughput, frozenset({REQUESTER}), operation(
        "throughput", "Jobs handed out and finished per minute, the last 60 minutes",
        "operations",
        {"200": json_response("60 minutes, oldest first, the current one last.",
                              "Throughput"),
         **errors(503)},
        description="Counted by the scripts that hand out and finish jobs, per minute of "
                    "the broker's clock; each minute is kept two hours.")),
    Endpoint("GET", "/runtimes", runtimes, frozenset({REQUESTER}), operation(
        "listRuntimes", "Per runtime: pending, scheduled, running, workers, paused",
        "operations",
        {"200": json_response("Every runtime a job or a worker names, and every paused "
                              "one.", "Runtimes"),
         **errors(503)})),
    Endpoint("PUT", "/runtimes", pause, frozenset({REQUESTER}), operation(
        "pauseRuntime", "Pause or resume a runtime", "operations",
        {"200": json_response("The runtime's state now.", "RuntimePause"),
         **errors(400, 409, 413, 415, 503)},
        body=json_body("RuntimePause", required=True),
        description="A paused runtime's jobs stay pending, in order, and new ones queue up; "
                    "no contract hands them out; running jobs go on. Resuming wakes waiting "
                    "workers. The pause is kept in Redis, across broker restarts.")),
    Endpoint("GET", "/metrics", metrics, frozenset({METRICS}), operation(
        "metrics", "Prometheus metrics", "operations",
        {"200": response("The Prometheus text format.", {"text/plain": {"type": "string"}}),
         **errors(503)})),
    Endpoint("GET", "/openapi.json", openapi, OPEN, operation(
        "openapi", "This description", "operations",
        {"200": response("OpenAPI 3.1.", {"application/json": {"type": "object"}})})),
]
