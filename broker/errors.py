"""One error type family and one JSON shape: {"error": "<code>", "detail": "<sentence>"}."""

from __future__ import annotations

from typing import Any

from broker.http.responses import JSONResponse


class BrokerError(Exception):
    """An error the client can act on, answered as JSON with `status`."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.detail, self.headers, **self.extra)


class BadRequest(BrokerError):
    status, code = 400, "bad_request"


class Forbidden(BrokerError):
    status, code = 403, "forbidden"


class NotFound(BrokerError):
    status, code = 404, "not_found"


class Conflict(BrokerError):
    status, code = 409, "conflict"


class TooLarge(BrokerError):
    status, code = 413, "too_large"


class UnsupportedMediaType(BrokerError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(BrokerError):
    status, code = 422, "unprocessable"


class InsufficientStorage(BrokerError):
    status, code = 507, "insufficient_storage"


class Unavailable(BrokerError):
    status, code = 503, "unavailable"


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status,
                        headers=headers)
