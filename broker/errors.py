"""One error type family: what a client can act on, with its HTTP status, stable code and a
sentence; broker/http/responses.py renders it as {"error": "<code>", "detail": "<sentence>"}.
Every layer raises these; none of them knows HTTP beyond the status number."""

from __future__ import annotations

from typing import Any


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


