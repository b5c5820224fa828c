"""The JSON response every route answers with: Starlette's, rendered by orjson (the broker's
answers are JSON built per request, and the standard encoder was a tenth of a batch's CPU);
and the one error shape."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from broker.errors import BrokerError


class JSONResponse(StarletteJSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status,
                        headers=headers)


def error_of(exc: BrokerError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)
