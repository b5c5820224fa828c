"""Reading what a request carries: JSON bodies and ids, checked before anything is touched."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request

from broker import ids
from broker.errors import BadRequest, Forbidden, TooLarge, UnsupportedMediaType
from broker.http.auth import WORKER_KEY

# What a request may carry: each limit is checked where the request is read, and the OpenAPI
# description states the same numbers (broker/http/schema.py).
MAX_JSON_BODY = 64 * 1024
MAX_RUNTIMES = 32  # runtimes one worker registers
MAX_BATCH = 100  # jobs one contract hands out (?max=)
MAX_ITEMS = 1000  # jobs in one POST /jobs, reports in one PUT /jobs
MAX_LIMIT = 1000  # rows in one page of a listing
MAX_ATTEMPTS = 100
MAX_TIMEOUT = 30 * 24 * 3600.0  # a job's time limit, seconds
MAX_ERROR_TEXT = 16 * 1024  # a worker's account of a failure
MAX_LEASE = 128  # X-Lease, everywhere a lease is sent
MAX_AFTER = 100  # jobs one job may run after
MAX_PRIORITY = 100  # priorities run from -MAX_PRIORITY to MAX_PRIORITY
MAX_DELAY = 366 * 86400.0  # how far ahead a job may be scheduled, seconds
MAX_TTL = 10 * 366 * 86400  # a job's own retention, seconds
digits = ids.digits  # the routes read counts through here


def query(request: Request, name: str) -> str | None:
    """One query parameter, or None; a request with no query string parses nothing."""
    if not request.scope["query_string"]:
        return None
    return request.query_params.get(name)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def bounded_body(request: Request, limit: int, what: str) -> bytes:
    """The whole body, refused with 413 as soon as it is announced or read past `limit`
    bytes (only small bodies are read whole; data streams through broker/files)."""
    if (digits(request.headers.get("content-length")) or 0) > limit:
        raise TooLarge(f"{what} may be at most {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} may be at most {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, required: bool) -> dict[str, Any]:
    """The request's JSON object; {} when there is no body and none is required."""
    declared = request.headers.get("content-length")
    if not required and declared in (None, "0") and "transfer-encoding" not in request.headers:
        return {}  # no body announced: nothing to read (the common GET)
    raw = await bounded_body(request, MAX_JSON_BODY, "a JSON body")
    if not raw.strip():
        if required:
            raise BadRequest("this request needs a JSON object body", code="missing_body")
        return {}
    if media_type(request) != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {media_type(request) or 'untyped'}")
    try:
        # orjson refuses what Redis could not store as text: a lone surrogate (\ud800), bytes
        # that are not UTF-8; and NaN, and nesting past 1024 levels.
        value = orjson.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}",
                         code="malformed_json") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="malformed_json")
    return value


def string_field(body: dict[str, Any], name: str, *, required: bool = False,
                 max_length: int = 1024) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required", code="missing_field", field=name)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", code="wrong_type", field=name)
    if len(value) > max_length:
        raise BadRequest(f"{name} may be at most {max_length} characters", code="wrong_type",
                         field=name)
    return value


def optional_id(body: dict[str, Any], name: str) -> str | None:
    """An id field of a body: absent or "" is None, anything else must be a well-formed id."""
    value = string_field(body, name)
    return ids.check_id(value, name) if value else None


def header_id(request: Request, header: str, body: dict[str, Any] | None = None,
              field: str | None = None, *, required: bool = True) -> str | None:
    """An id from its header or its JSON body field; both present and different is 400."""
    raw = request.headers.get(header)
    from_header = ids.check_id(raw, header) if raw is not None else None
    from_body = optional_id(body, field) if body is not None and field else None
    if from_header and from_body and from_header != from_body:
        raise BadRequest(f"{header} {from_header} and {field} {from_body} disagree",
                         code="id_mismatch", field=field)
    value = from_header or from_body
    if value is None and required:
        where = f"the {header} header" + (f" or {field} in the JSON body" if field else "")
        raise BadRequest(f"{where} is required", code="missing_id", field=header)
    return value


def worker_id(request: Request, body: dict[str, Any] | None = None, *,
              required: bool = True) -> str | None:
    """The worker a request acts as: named by X-Worker-Id (or `worker_id` in the body), or
    known from the worker's own token, which may act as no other."""
    given = header_id(request, "X-Worker-Id", body, "worker_id",
                      required=required and WORKER_KEY not in request.scope)
    bound: str | None = request.scope.get(WORKER_KEY)
    if bound is None:
        return given
    if given is not None and given != bound:
        raise Forbidden(f"this token is worker {bound}'s own: it cannot act as worker {given}")
    return bound


def lease(value: str, field: str) -> str:
    """A lease sent back (X-Lease, or `lease` in a report): at most MAX_LEASE characters, one
    rule wherever it comes."""
    if len(value) > MAX_LEASE:
        raise BadRequest(f"{field} may be at most {MAX_LEASE} characters", code="wrong_type",
                         field=field)
    return value


IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key header ("" when absent): 1 to 255 visible ASCII."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return ""
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters",
                         code="invalid_idempotency_key", field="Idempotency-Key")
    return key


def fingerprint(body: dict[str, Any]) -> str:
    """What makes two JSON requests the same request, whatever the key order."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def number_field(body: dict[str, Any], name: str, *, low: float, high: float,
                 integer: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    wrong = isinstance(value, bool) or not isinstance(value, int | float) or (
        integer and not isinstance(value, int))
    if wrong or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name} must be {kind} from {low:g} to {high:g}", code="wrong_type",
                         field=name)
    return float(value)


def due_time(body: dict[str, Any], now: int) -> int | None:
    """When a job body says the job is due, ms since the epoch: its `run_at` (RFC 3339 with an
    offset) or `delay` (seconds from `now`), not both; None when it says neither. A time in
    the past is allowed (the job runs now); one more than MAX_DELAY ahead is not."""
    run_at, delay = body.get("run_at"), body.get("delay")
    if run_at is not None and delay is not None:
        raise BadRequest("give run_at or delay, not both", code="conflicting_fields",
                         field="delay")
    if delay is not None:
        seconds = number_field(body, "delay", low=0, high=MAX_DELAY)
        assert seconds is not None
        return now + round(seconds * 1000)
    if run_at is None:
        return None
    wrong = BadRequest("run_at must be an RFC 3339 time with an offset, e.g. "
                       "2026-12-05T10:00:00Z", code="invalid_time", field="run_at")
    if not isinstance(run_at, str) or len(run_at) > 64:
        raise wrong
    try:
        when = datetime.fromisoformat(run_at)
    except ValueError:
        raise wrong from None
    if when.tzinfo is None:
        raise wrong
    ms = round(when.timestamp() * 1000)
    if ms > now + MAX_DELAY * 1000:
        raise BadRequest(f"run_at may be at most {MAX_DELAY / 86400:g} days ahead",
                         code="invalid_time", field="run_at")
    return ms


def after(body: dict[str, Any]) -> list[str]:
    """A job body's `after`: up to MAX_AFTER job ids, each well-formed; [] when absent."""
    value = body.get("after")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_AFTER:
        raise BadRequest(f"after must be a list of at most {MAX_AFTER} job ids",
                         code="wrong_type", field="after")
    for item in value:
        if not isinstance(item, str) or not ids.is_id(item):
            raise BadRequest("after must hold job ids (8 characters of [0-9a-z])",
                             code="invalid_id", field="after")
    return list(dict.fromkeys(value))
