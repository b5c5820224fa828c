"""One access-log line and the HTTP metrics for every request, and a request id echoed back."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.http.metrics import Metrics

log = logging.getLogger("broker.access")

REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
ID = re.compile(r"[0-9a-z]{8}")
# Headers whose (well-formed) ids a log line names.
NAMED = {b"x-worker-id": "worker_id", b"x-job-id": "job_id", b"x-data-id": "data_id"}
LOG_KEY = "broker.log"


def note(scope: Scope, **fields: str) -> None:
    """Let a handler add ids the log line should name (a contract's job, a new job's id)."""
    scope.setdefault(LOG_KEY, {}).update(fields)


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: set[str], style: str) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.style = style

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        fields: dict[str, str] = {
            name: value for key, name in NAMED.items()
            if ID.fullmatch(value := headers.get(key, b"").decode("latin-1"))}
        scope[LOG_KEY] = fields
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started, request_id, fields)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str,
                fields: dict[str, str]) -> None:
        method, path = scope["method"], scope["path"]
        route = path if path in self.routes else "other"
        self.metrics.count(method, route, status, seconds)
        if self.style == "off":
            return
        line: dict[str, Any] = {"method": method, "path": path, "status": status,
                                "duration_ms": round(seconds * 1000, 2),
                                "request_id": request_id, **fields}
        if self.style == "json":
            log.info(json.dumps(line))
        else:
            ids = " ".join(f"{k}={v}" for k, v in fields.items())
            log.info("%s %s %d %.1fms rid=%s%s", method, path, status, seconds * 1000,
                     request_id, f" {ids}" if ids else "")
