"""GET/POST/PUT/DELETE /data and POST /data/reg.

Every id is checked, and every upload's Content-Type and declared length, before Redis or the
disk is touched.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from broker import download, inputs, upload
from broker.data import DataStore
from broker.services import Services


def _store(request: Request) -> DataStore:
    services: Services = request.state.services
    return services.data


def _id_response(data_id: str) -> Response:
    return PlainTextResponse(data_id, headers={"X-Data-Id": data_id})


async def create(request: Request) -> Response:
    store = _store(request)
    boundary = upload.boundary(request.headers)
    upload.check_length(request.headers, store.max_size)
    received = await store.receive(request.stream(), boundary)
    return _id_response(await store.create(received))


async def reserve(request: Request) -> Response:
    return _id_response(await _store(request).reserve())


async def replace(request: Request) -> Response:
    store = _store(request)
    data_id = inputs.header_id(request, "X-Data-Id")
    assert data_id is not None
    boundary = upload.boundary(request.headers)
    upload.check_length(request.headers, store.max_size)
    await store.require(data_id)  # fail before the body streams; commit checks again
    received = await store.receive(request.stream(), boundary)
    await store.commit(data_id, received)
    return _id_response(data_id)


async def get(request: Request) -> Response:
    body = await inputs.json_body(request, required=False)
    data_id = inputs.header_id(request, "X-Data-Id", body, "data_id")
    assert data_id is not None
    opened = await _store(request).open(data_id)
    return download.response(opened, raw=download.wants_raw(request.headers.get("accept")),
                             if_none_match=request.headers.get("if-none-match"))


async def delete(request: Request) -> Response:
    body = await inputs.json_body(request, required=False)
    data_id = inputs.header_id(request, "X-Data-Id", body, "data_id")
    assert data_id is not None
    await _store(request).delete(data_id)
    return Response(status_code=204)
