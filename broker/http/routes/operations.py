"""GET /jobs, /workers, /runtimes and /metrics: what operators ask every day."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker import ids, lifecycle
from broker.errors import BadRequest
from broker.http import inputs
from broker.http.metrics import CONTENT_TYPE
from broker.http.responses import JSONResponse
from broker.http.services import services_of
from broker.store.listings import Page

MAX_LIMIT = 1000


def _limit(request: Request, default: int = 100) -> int:
    limit = inputs.digits(request.query_params.get("limit", str(default)))
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", code="invalid_query",
                         field="limit")
    return limit


def _page(page: Page, key: str) -> Response:
    return JSONResponse({key: page.items, "next_cursor": page.next_cursor})


async def jobs(request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in lifecycle.STATUSES:
        raise BadRequest(f"status must be one of {', '.join(lifecycle.STATUSES)}",
                         code="invalid_query", field="status")
    runtime = ids.check_runtime(q["runtime"]) if q.get("runtime") else None
    raw = q.get("cursor")
    below = inputs.digits(raw)
    if raw is not None and below is None:
        raise BadRequest("cursor must be a next_cursor from an earlier page",
                         code="invalid_query", field="cursor")
    cursor = float(below) if below is not None else float("inf")
    page = await services_of(request).listings.jobs(status, runtime, _limit(request), cursor)
    return _page(page, "jobs")


async def workers(request: Request) -> Response:
    after = request.query_params.get("cursor", "")
    if after and not ids.is_id(after):
        raise BadRequest("cursor must be a next_cursor from an earlier page",
                         code="invalid_query", field="cursor")
    return _page(await services_of(request).listings.workers(_limit(request), after), "workers")


async def runtimes(request: Request) -> Response:
    return JSONResponse({"runtimes": await services_of(request).listings.runtimes()})


async def metrics(request: Request) -> Response:
    services = services_of(request)
    body = services.metrics.render(await services.listings.gauges())
    return Response(body, media_type=CONTENT_TYPE)
