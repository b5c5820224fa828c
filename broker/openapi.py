"""GET /openapi.json: the OpenAPI 3 description of every endpoint (placeholder)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

SPEC: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "broker", "version": "0.1.0"},
                        "paths": {}}


async def endpoint(request: Request) -> Response:
    return JSONResponse(SPEC)
