"""create_app(settings): lifespan (Redis, scripts, wake-ups, the schedule timer, sweeps), error
handlers, and what the endpoints' declarations give: the route table, the access check and the
OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from broker import config
from broker.config import Settings
from broker.errors import BrokerError
from broker.events import targets
from broker.events.feed import Feed
from broker.files import sweep as data_sweep
from broker.files.datastore import DataStore
from broker.http import endpoint, openapi
from broker.http.auth import METRICS, REQUESTER, WORKER, Auth, Tokens
from broker.http.endpoint import Endpoint
from broker.http.metrics import Metrics
from broker.http.observe import Observe
from broker.http.responses import error_of, error_response
from broker.http.routes import ENDPOINTS
from broker.http.services import Services
from broker.http.ui import pages as ui
from broker.store import sweeper
from broker.store.connection import MEMORY_URL, connector
from broker.store.jobs import Jobs
from broker.store.keys import Keys
from broker.store.listings import Listings
from broker.store.logs import Logs
from broker.store.schedule import Schedule
from broker.store.scripts import Scripts
from broker.store.wakeups import Wakeups
from broker.store.workers import Workers

log = logging.getLogger("broker")

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type"}


async def _broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)
    return error_of(exc)


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
    schedule = Schedule(scripts, keys, keys.context_of(settings))
    feed = Feed(lambda: connect(False), redis, keys)
    wakeups = Wakeups(lambda: connect(False), keys.wake_pattern, keys.wake_prefix,
                      {keys.schedule_channel: lambda due: schedule.due_at(
                          int(due) if due else None),
                       keys.log_channel: feed.wake})
    return Services(
        settings=settings, keys=keys, redis=redis, scripts=scripts,
        jobs=Jobs(redis, scripts, keys, settings),
        workers=Workers(redis, scripts, keys, settings),
        data=DataStore(redis, scripts, keys, settings.data_dir, settings.max_data_size,
                       settings.idempotency_ttl, keys.context_of(settings), settings.data_ttl),
        wakeups=wakeups,
        schedule=schedule,
        listings=Listings(redis, keys),
        metrics=metrics,
        credentials=tokens(settings).credentials,
        feed=feed,
        logs=Logs(connect(True, False), scripts, keys, settings.log_max),
        webhook_deny=targets.networks(settings.webhook_deny),
        webhook_queue=None if url == MEMORY_URL else Queue(
            keys.webhook_queue, connection=SyncRedis.from_url(url, socket_timeout=5)),
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


def create_app(settings: Settings, endpoints: list[Endpoint] = ENDPOINTS) -> Starlette:
    """The app serving `endpoints` (every endpoint, unless a test asks for others): its route
    table, access check and OpenAPI document all derived from their declarations."""
    metrics = Metrics()
    served = [*endpoints, *ui.ENDPOINTS]  # the API, and the dashboard (not in the OpenAPI)
    table: list[BaseRoute] = [*endpoint.routes(served), ui.STATIC]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = _services(settings, metrics)
        tasks = [
            asyncio.create_task(services.wakeups.run()),
            asyncio.create_task(services.schedule.run()),
            asyncio.create_task(sweeper.run(services.scripts, services.keys,
                                            services.jobs.ctx, settings.sweep_interval,
                                            config.outage_threshold_ms(settings))),
            asyncio.create_task(data_sweep.run(services.data, settings.data_sweep_interval)),
        ]

        def drain() -> None:
            services.wakeups.close()
            services.feed.close()

        app.state.drain = drain
        try:
            yield {"services": services}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.feed.stop()
            await services.redis.aclose()
            await services.logs.raw.aclose()

    app = Starlette(
        routes=table,
        lifespan=lifespan,
        middleware=[Middleware(Observe, metrics=metrics,
                               routes={getattr(r, "path", "") for r in table},
                               style=settings.access_log),
                    Middleware(Auth, tokens=tokens(settings), roles=endpoint.roles(served))],
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
    app.state.openapi = openapi.build(endpoints)
    return app
