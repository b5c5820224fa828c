"""Bearer tokens by role, as GitLab does for its runners: one secret for those who submit
work, another that lets a machine register as a worker, and optionally one for metrics.

A registered worker then acts with a credential of its own (`worker_token` in the answer to
POST /worker): `w1.<worker_id>.<mac>`, the mac an HMAC of the worker id under a key derived
from the shared worker token. Every broker holding the same settings verifies it without a
look at Redis, and a request made with it acts as that worker only: on its own record, its
own contracts, the jobs it holds and their outputs. The shared worker token only registers.

Missing or wrong is 401; a valid token of a role the endpoint does not serve is 403. An
endpoint whose roles have no token configured stays open. Tokens are compared in constant time
and never logged, echoed or stored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from broker import ids
from broker.http.responses import error_response

# WORKER is the shared token that registers; SELF is a registered worker's own credential.
REQUESTER, WORKER, SELF, METRICS = "requester", "worker", "worker_self", "metrics"
ROLE_KEY = "broker.role"
WORKER_KEY = "broker.worker"  # the worker a SELF credential belongs to
CREDENTIAL = "w1."

KNOWN_ROLES = frozenset({REQUESTER, WORKER, SELF, METRICS})


class Credentials:
    """Each registered worker's own token, made and checked with a key derived from the
    shared worker token."""

    def __init__(self, worker_token: str) -> None:
        self._key = hmac.new(worker_token.encode(), b"broker per-worker credentials v1",
                             hashlib.sha256).digest()

    def _mac(self, worker_id: str) -> str:
        return hmac.new(self._key, worker_id.encode(), hashlib.sha256).hexdigest()[:40]

    def mint(self, worker_id: str) -> str:
        return f"{CREDENTIAL}{worker_id}.{self._mac(worker_id)}"

    def worker_of(self, presented: str) -> str | None:
        """The worker whose credential this is, or None."""
        worker_id, _, mac = presented[len(CREDENTIAL):].partition(".")
        if not presented.startswith(CREDENTIAL) or not ids.is_id(worker_id):
            return None
        return worker_id if hmac.compare_digest(mac.encode(),
                                                self._mac(worker_id).encode()) else None

NEEDS = {REQUESTER: "the requester token", WORKER: "the shared worker token (it registers)",
         SELF: "a worker's own token (worker_token from POST /worker)",
         METRICS: "the metrics token"}


@dataclass(frozen=True)
class Tokens:
    by_role: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def any(self) -> bool:
        return bool(self.by_role)

    @property
    def credentials(self) -> Credentials | None:
        worker = self.by_role.get(WORKER)
        return Credentials(worker) if worker else None

    def guards(self, role: str) -> bool:
        """Whether the endpoints of `role` need a token: a worker's own credential exists when
        the shared worker token does."""
        return (WORKER if role == SELF else role) in self.by_role

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
    """The access check, given (method, path) -> roles from the endpoints' declarations
    (broker/http/endpoint.py). A request for no declared endpoint passes on to the router,
    which answers it 404 or 405: nothing is served that was not declared."""

    def __init__(self, app: ASGIApp, tokens: Tokens,
                 roles: dict[tuple[str, str], frozenset[str]]) -> None:
        self.app = app
        self.tokens = tokens
        self.roles = roles
        self.credentials = tokens.credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens.any:
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        roles = self.roles.get((method, scope["path"]))
        guarded = {r for r in roles or () if self.tokens.guards(r)}
        if not guarded:  # open, unknown (the router answers 404/405), or no token set
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        role = self.tokens.role_of(presented) if presented else None
        worker = self.credentials.worker_of(presented) if presented and self.credentials \
            and role is None else None
        if worker is not None:
            role = SELF
            scope[WORKER_KEY] = worker
        if role is None:
            detail = ("this endpoint needs Authorization: Bearer <token>" if presented is None
                      else "the bearer token is not valid")
            response = error_response(401, "unauthorized", detail,
                                      {"WWW-Authenticate": 'Bearer realm="broker"'})
        elif role not in roles:  # type: ignore[operator]
            needs = " or ".join(NEEDS[r] for r in sorted(guarded))
            response = error_response(
                403, "forbidden", f"{NEEDS[role]} may not {method} {scope['path']}; it needs "
                f"{needs}")
        else:
            scope[ROLE_KEY] = role
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
