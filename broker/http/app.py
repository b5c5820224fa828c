"""create_app(settings): lifespan (Redis, scripts, wake-ups), error handlers, the route table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from broker import config
from broker.config import Settings
from broker.errors import BrokerError, error_response
from broker.files import sweep as data_sweep
from broker.files.store import DataStore
from broker.http import openapi
from broker.http.auth import METRICS, REQUESTER, WORKER, Auth, Tokens
from broker.http.metrics import Metrics
from broker.http.observe import Observe
from broker.http.routes import batch, data, health
from broker.http.routes import job as jobs
from broker.http.routes import operations as listings
from broker.http.routes import worker as workers
from broker.http.services import Services
from broker.store import sweeper
from broker.store.connection import MEMORY_URL, connector
from broker.store.jobs import Jobs
from broker.store.keys import Keys
from broker.store.listings import Listings
from broker.store.scripts import Scripts
from broker.store.wakeups import Wakeups
from broker.store.workers import Workers

log = logging.getLogger("broker")

Endpoint = Callable[[Request], Awaitable[Response]]

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type"}


def by_method(handlers: dict[str, Endpoint], head: bool = True) -> Endpoint:
    """One endpoint per path that hands each method to its handler; HEAD goes to GET's unless
    GET changes state (a HEAD of the contract would hand out a job and drop it)."""
    async def endpoint(request: Request) -> Response:
        method = request.method
        if method == "HEAD":
            if not head:
                raise HTTPException(405, headers={"Allow": ", ".join(handlers)})
            method = "GET"
        return await handlers[method](request)
    return endpoint


def routes() -> list[Route]:
    table: dict[str, dict[str, Endpoint]] = {
        "/worker": {"POST": workers.register, "GET": workers.get, "DELETE": workers.delete},
        "/worker/contract": {"GET": workers.contract},
        "/job": {"GET": jobs.get, "POST": jobs.create, "PUT": jobs.update,
                 "DELETE": jobs.delete},
        "/data": {"GET": data.get, "POST": data.create, "PUT": data.replace,
                  "DELETE": data.delete},
        "/data/reg": {"POST": data.reserve},
        "/healthz": {"GET": health.healthz},
        "/readyz": {"GET": health.readyz},
        "/jobs": {"GET": listings.jobs, "POST": batch.create, "PUT": batch.report},
        "/workers": {"GET": listings.workers},
        "/runtimes": {"GET": listings.runtimes},
        "/metrics": {"GET": listings.metrics},
        "/openapi.json": {"GET": openapi.endpoint},
    }
    return [Route(path, by_method(h, head=path != "/worker/contract"), methods=list(h))
            for path, h in table.items()]


async def _broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no endpoint at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, detail, dict(exc.headers or {}))


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("Redis unavailable: %s", exc)
    return error_response(503, "redis_unavailable",
                          "the broker cannot reach Redis right now; retry shortly",
                          {"Retry-After": "1"})


async def _redis_refused(request: Request, exc: Exception) -> Response:
    message = str(exc)
    full = isinstance(exc, OutOfMemoryError) or message.startswith("OOM")
    if full or message.startswith(("LOADING", "MASTERDOWN", "READONLY", "BUSY")):
        log.warning("Redis refused a command: %s", message)
        reason = "Redis is full (maxmemory reached)" if full else message
        return error_response(503, "redis_unavailable", f"{reason}; retry later",
                              {"Retry-After": "5"})
    return await _internal(request, exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    return error_response(400, "client_disconnected", "the client hung up mid-request")


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "the broker hit an unexpected error; it is logged")


def _services(settings: Settings, metrics: Metrics) -> Services:
    url = settings.redis_url or MEMORY_URL
    connect = connector(url, settings.redis_timeout)
    redis = connect(True)
    scripts = Scripts(redis, shebang=url != MEMORY_URL)
    keys = Keys(settings.prefix)
    wakeups = Wakeups(lambda: connect(False), keys.wake_pattern, keys.wake_prefix)
    return Services(
        settings=settings, keys=keys, redis=redis, scripts=scripts,
        jobs=Jobs(redis, scripts, keys, settings),
        workers=Workers(redis, scripts, keys, settings),
        data=DataStore(redis, scripts, keys, settings.data_dir, settings.max_data_size,
                       settings.idempotency_ttl),
        wakeups=wakeups,
        listings=Listings(redis, keys),
        metrics=metrics,
        credentials=tokens(settings).credentials,
    )


def tokens(settings: Settings) -> Tokens:
    configured = {REQUESTER: settings.requester_token, WORKER: settings.worker_token,
                  METRICS: settings.metrics_token}
    return Tokens({role: token for role, token in configured.items() if token})


def drain(app: Starlette) -> None:
    """The server is stopping: answer every waiting long poll now (204) and wait no more."""
    close: Callable[[], None] | None = getattr(app.state, "drain", None)
    if close is not None:
        close()


def create_app(settings: Settings) -> Starlette:
    metrics = Metrics()
    table = routes()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = _services(settings, metrics)
        tasks = [
            asyncio.create_task(services.wakeups.run()),
            asyncio.create_task(sweeper.run(services.scripts, services.keys,
                                            settings.sweep_interval,
                                            config.outage_threshold_ms(settings))),
            asyncio.create_task(data_sweep.run(services.data, settings.data_sweep_interval)),
        ]
        app.state.drain = services.wakeups.close
        try:
            yield {"services": services}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.redis.aclose()

    return Starlette(
        routes=table,
        lifespan=lifespan,
        middleware=[Middleware(Observe, metrics=metrics, routes={r.path for r in table},
                               style=settings.access_log),
                    Middleware(Auth, tokens=tokens(settings))],
        exception_handlers={
            BrokerError: _broker_error,
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
            ResponseError: _redis_refused,
            ClientDisconnect: _client_gone,
            Exception: _internal,
        },
    )
