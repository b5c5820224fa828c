"""GET/POST/PUT/DELETE /data and POST /data/reg (placeholder until the data store lands)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker.errors import BrokerError


async def _todo(request: Request) -> Response:
    raise BrokerError("not yet", status=501, code="not_implemented")

get = create = replace = delete = reserve = _todo
