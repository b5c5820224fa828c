"""GET /healthz (the process answers) and GET /readyz (Redis answers, the data directory is
writable)."""

from __future__ import annotations

import asyncio
import os
import tempfile

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from broker.errors import error_response
from broker.http.responses import JSONResponse
from broker.http.services import services_of


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
