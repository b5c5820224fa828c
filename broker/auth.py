"""Bearer tokens by role, as GitLab does for its runners: one secret for those who submit
work, another for the machines that do it, and optionally one for metrics.

Missing or wrong is 401; a valid token of a role the endpoint does not serve is 403. An
endpoint whose roles have no token configured stays open. Tokens are compared in constant time
and never logged, echoed or stored.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from broker.errors import error_response

REQUESTER, WORKER, METRICS = "requester", "worker", "metrics"
ROLE_KEY = "broker.role"

# (method, path) -> the roles that may call it; an empty set is open to all.
ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/worker"): frozenset({WORKER}),
    ("GET", "/worker"): frozenset({WORKER}),
    ("DELETE", "/worker"): frozenset({WORKER}),
    ("GET", "/worker/contract"): frozenset({WORKER}),
    ("GET", "/job"): frozenset({REQUESTER}),
    ("POST", "/job"): frozenset({REQUESTER}),
    ("PUT", "/job"): frozenset({REQUESTER, WORKER}),
    ("DELETE", "/job"): frozenset({REQUESTER}),
    ("GET", "/data"): frozenset({REQUESTER, WORKER}),
    ("POST", "/data"): frozenset({REQUESTER, WORKER}),
    ("PUT", "/data"): frozenset({REQUESTER, WORKER}),
    ("DELETE", "/data"): frozenset({REQUESTER}),
    ("POST", "/data/reg"): frozenset({REQUESTER}),
    ("GET", "/jobs"): frozenset({REQUESTER}),
    ("POST", "/jobs"): frozenset({REQUESTER}),
    ("PUT", "/jobs"): frozenset({WORKER}),
    ("GET", "/workers"): frozenset({REQUESTER}),
    ("GET", "/runtimes"): frozenset({REQUESTER}),
    ("GET", "/metrics"): frozenset({METRICS}),
    ("GET", "/healthz"): frozenset(),
    ("GET", "/readyz"): frozenset(),
    ("GET", "/openapi.json"): frozenset(),
}


@dataclass(frozen=True)
class Tokens:
    by_role: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def any(self) -> bool:
        return bool(self.by_role)

    def role_of(self, presented: str) -> str | None:
        """The role whose token this is. Every configured token is compared, so the time taken
        tells nothing about which one nearly matched."""
        found = None
        for role, token in self.by_role.items():
            if hmac.compare_digest(presented.encode(), token.encode()):
                found = role
        return found


def _bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


class Auth:
    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens.any:
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        roles = ROLES.get((method, scope["path"]))
        guarded = {r for r in roles or () if r in self.tokens.by_role}
        if not guarded:  # open, unknown (the router answers 404/405), or no token set
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        role = self.tokens.role_of(presented) if presented else None
        if role is None:
            detail = ("this endpoint needs Authorization: Bearer <token>" if presented is None
                      else "the bearer token is not valid")
            response = error_response(401, "unauthorized", detail,
                                      {"WWW-Authenticate": 'Bearer realm="broker"'})
        elif role not in roles:  # type: ignore[operator]
            response = error_response(
                403, "forbidden", f"a {role} token may not {method} {scope['path']}; it needs "
                f"a {' or '.join(sorted(guarded))} token")
        else:
            scope[ROLE_KEY] = role
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
