"""One description per endpoint: the route table, the access check and the OpenAPI document
all come from the declarations, and an endpoint cannot be declared without its roles."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from broker.http import endpoint
from broker.http.endpoint import OPEN, Endpoint
from broker.http.routes import ENDPOINTS


async def _handler(request: Request) -> Response:
    return Response()


@pytest.mark.parametrize("roles", [None, {"requester"}, frozenset({"admin"})])
def test_an_endpoint_without_declared_known_roles_is_refused(roles: object) -> None:
    with pytest.raises(ValueError, match="declare its roles"):
        Endpoint("GET", "/new", _handler, roles, {})  # type: ignore[arg-type]


def test_open_is_said_out_loud_and_every_route_method_has_its_roles() -> None:
    assert Endpoint("GET", "/new", _handler, OPEN, {}).roles == frozenset()
    table = endpoint.roles(ENDPOINTS)
    routed = {(method, route.path) for route in endpoint.routes(ENDPOINTS)
              for method in route.methods or () if method != "HEAD"}
    assert routed == set(table)
    assert {path for (_, path), roles in table.items() if not roles} == {
        "/healthz", "/readyz", "/openapi.json"}


def test_an_endpoint_declared_twice_is_refused() -> None:
    twice = [ENDPOINTS[0], ENDPOINTS[0]]
    with pytest.raises(ValueError, match="declared twice"):
        endpoint.routes(twice)
