"""One description per endpoint: its method, path, handler, the roles that may call it and its
OpenAPI operation, declared beside the handler (broker/http/routes/). The route table, the
access check and the OpenAPI document are all derived from these declarations; nothing about
an endpoint is kept in step by hand.

Roles must be declared: `OPEN` says an endpoint needs no token, and an endpoint declared with
anything but roles the broker knows is refused when the app is built, so no endpoint is ever
served open by omission.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.http.auth import KNOWN_ROLES

Handler = Callable[[Request], Awaitable[Response]]
OPEN: frozenset[str] = frozenset()
METHODS = ("GET", "POST", "PUT", "DELETE")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    roles: frozenset[str]  # who may call it; OPEN for anyone
    operation: dict[str, Any]  # the OpenAPI operation (broker/http/schema.py: operation)
    # Links of its 200 answer to the operations that take what it answers.
    links: dict[str, Any] = field(default_factory=dict)
    # A GET also answers HEAD, unless it changes state (HEAD of a contract would hand out a
    # job and drop it): then HEAD is 405.
    head: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"{self.method} {self.path}: not a method the broker serves")
        if not isinstance(self.roles, frozenset) or not self.roles <= KNOWN_ROLES:
            raise ValueError(f"{self.method} {self.path}: declare its roles (OPEN for none), "
                             f"among {', '.join(sorted(KNOWN_ROLES))}")


def _by_method(handlers: dict[str, Endpoint]) -> Handler:
    """One Starlette endpoint per path, handing each method to its handler."""
    async def endpoint(request: Request) -> Response:
        method = request.method
        if method == "HEAD":
            get = handlers.get("GET")
            if get is None or not get.head:
                raise HTTPException(405, headers={"Allow": ", ".join(_allowed(handlers))})
            method = "GET"
        return await handlers[method].handler(request)
    return endpoint


def _allowed(handlers: dict[str, Endpoint]) -> list[str]:
    methods = list(handlers)
    if "GET" in handlers and handlers["GET"].head:
        methods.append("HEAD")
    return methods


def routes(endpoints: Iterable[Endpoint]) -> list[Route]:
    """Starlette's route table: one route per path, in the order the paths first appear."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for e in endpoints:
        methods = by_path.setdefault(e.path, {})
        if e.method in methods:
            raise ValueError(f"{e.method} {e.path} is declared twice")
        methods[e.method] = e
    return [Route(path, _by_method(handlers), methods=list(handlers))
            for path, handlers in by_path.items()]


def roles(endpoints: Iterable[Endpoint]) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path) -> the roles that may call it: what the access check reads."""
    return {(e.method, e.path): e.roles for e in endpoints}
