"""The dashboard's pages and the fragments that fill them.

A page (GET /ui, /ui/jobs, /ui/job, /ui/workers) is an open shell: navigation, the token
prompt and empty regions, no data. Each region is a fragment under /ui/part/, which needs
the requester token like the JSON listing it mirrors, and is fetched again (static/ui.js)
when the events feed says something changed. Everything is rendered with autoescaping, so a
job's error text, a runtime's name or a worker's id is text, never markup.
"""

from __future__ import annotations

import calendar
import math
import time
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Message, Receive, Scope, Send

from broker import clock, ids, lifecycle, wire
from broker.errors import BadRequest, NotFound
from broker.http.auth import REQUESTER
from broker.http.endpoint import OPEN, Endpoint
from broker.http.routes.operations import job_filters
from broker.http.services import services_of
from broker.store.neighbours import neighbours
from broker.store.why import why

HERE = Path(__file__).parent
PAGE_SIZE = 50
FAILURES_SHOWN = 8

# No inline script or style, no other origin, no framing: what a job or a worker supplies
# can at worst be shown, never run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NO_STORE = {**SECURITY_HEADERS, "Cache-Control": "no-store"}


def ago(iso: str | None) -> str:
    """'12 s ago' from an RFC 3339 time; ui.js keeps it true between refreshes."""
    if not iso:
        return ""
    then = calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    seconds = max(0, int(clock.now_ms() / 1000 - then))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0][:200]


env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined)
env.filters.update(ago=ago, first_line=first_line)
templates = Jinja2Templates(env=env)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status,
                                      headers=NO_STORE)


# -- the pages: shells without data ---------------------------------------------------------

async def overview_page(request: Request) -> Response:
    return render(request, "overview.html", page="overview")


async def jobs_page(request: Request) -> Response:
    try:
        query, problem = _jobs_query(request), ""
    except BadRequest as exc:  # a filter typed in by hand: say so on the page
        query, problem = {"status": "", "runtime": "", "cursor": ""}, exc.detail
    return render(request, "jobs.html", status=400 if problem else 200, page="jobs",
                  query=query, problem=problem, statuses=lifecycle.STATUSES)


async def job_page(request: Request) -> Response:
    try:
        job_id, problem = _job_id(request), ""
    except BadRequest as exc:
        job_id, problem = "", exc.detail
    return render(request, "job.html", page="job", job_id=job_id, problem=problem,
                  status=400 if problem else 200)


async def workers_page(request: Request) -> Response:
    return render(request, "workers.html", page="workers")


# -- the fragments: the requester's data ----------------------------------------------------

async def overview_part(request: Request) -> Response:
    listings = services_of(request).listings
    gauges = await listings.gauges()
    failed = await listings.jobs("failed", None, FAILURES_SHOWN, math.inf)
    return render(request, "parts/overview.html", runtimes=gauges["runtimes"],
                  counts=gauges["jobs"], failures=failed.items)


def _jobs_query(request: Request) -> dict[str, str]:
    """The jobs page's filters, checked as GET /jobs checks them, as the page's links carry
    them."""
    job_filters(request)
    q = request.query_params
    return {name: q.get(name, "") for name in ("status", "runtime", "cursor")}


async def jobs_part(request: Request) -> Response:
    query = _jobs_query(request)
    status, runtime, cursor = job_filters(request)
    page = await services_of(request).listings.jobs(status, runtime, PAGE_SIZE, cursor)
    return render(request, "parts/jobs.html", jobs=page.items, next_cursor=page.next_cursor,
                  query=query)


def _job_id(request: Request) -> str:
    job_id = request.query_params.get("id", "").strip().lower()
    if not job_id:
        raise BadRequest("name a job: ?id=<job id>", code="missing_id", field="id")
    return ids.check_id(job_id, "id")


async def job_part(request: Request) -> Response:
    job_id = _job_id(request)
    services = services_of(request)
    try:
        h = await services.jobs.get(job_id)
    except NotFound:
        return render(request, "parts/nojob.html", status=404, job_id=job_id)
    job = wire.job(job_id, h)
    job["waiting"] = await why(services.redis, services.keys, job_id, h)
    upstream, downstream = await neighbours(services.redis, services.keys, job_id,
                                            job["after"])
    return render(request, "parts/job.html", job=job, history=wire.history(job_id, h),
                  upstream=upstream, downstream=downstream, final=lifecycle.FINAL)


async def workers_part(request: Request) -> Response:
    listings = services_of(request).listings
    page = await listings.workers(PAGE_SIZE, request.query_params.get("cursor", ""))
    dead = await listings.dead_workers()
    return render(request, "parts/workers.html", workers=page.items,
                  next_cursor=page.next_cursor, dead=dead)


class Secured:
    """The static files, with the pages' headers (and revalidated, so an upgrade shows)."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []), (b"cache-control", b"no-cache"),
                    *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)
        await self.app(scope, receive, send_secured)


STATIC = Mount("/ui/static", Secured(StaticFiles(directory=HERE / "static")), name="ui-static")

# Not API: the OpenAPI document leaves these out (broker/http/app.py).
ENDPOINTS = [
    Endpoint("GET", "/ui", overview_page, OPEN, {}),
    Endpoint("GET", "/ui/jobs", jobs_page, OPEN, {}),
    Endpoint("GET", "/ui/job", job_page, OPEN, {}),
    Endpoint("GET", "/ui/workers", workers_page, OPEN, {}),
    Endpoint("GET", "/ui/part/overview", overview_part, frozenset({REQUESTER}), {}),
    Endpoint("GET", "/ui/part/jobs", jobs_part, frozenset({REQUESTER}), {}),
    Endpoint("GET", "/ui/part/job", job_part, frozenset({REQUESTER}), {}),
    Endpoint("GET", "/ui/part/workers", workers_part, frozenset({REQUESTER}), {}),
]
