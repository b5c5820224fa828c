"""GET/POST/PUT/DELETE /data and POST /data/reg.

Every id and header is checked, and every upload's Content-Type and declared length, before
Redis or the disk is touched; a PUT that would be refused is refused before its body streams.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from broker.errors import BadRequest
from broker.files import download, upload
from broker.files.datastore import DataStore, Writer
from broker.http import inputs
from broker.http.auth import REQUESTER, SELF, WORKER_KEY
from broker.http.endpoint import Endpoint
from broker.http.operation import (
    DATA_TARGETS,
    NO_CONTENT,
    errors,
    json_body,
    links,
    operation,
    response,
    text_id,
    upload_body,
)
from broker.http.schema import schema
from broker.http.services import services_of


def _store(request: Request) -> DataStore:
    return services_of(request).data


def _id_response(data_id: str) -> Response:
    return PlainTextResponse(data_id, headers={"X-Data-Id": data_id})


def _writer(request: Request) -> Writer:
    """A worker writing a job's output names itself (X-Worker-Id) and maybe its lease; one
    acting with its own token writes only the outputs of jobs it holds."""
    worker_id = inputs.worker_id(request, required=False) or ""
    lease = inputs.lease(request.headers.get("x-lease", ""), "X-Lease")
    if lease and not worker_id:
        raise BadRequest("X-Lease needs X-Worker-Id", code="missing_id", field="X-Worker-Id")
    return Writer(worker_id, lease, own_outputs_only=WORKER_KEY in request.scope)


async def create(request: Request) -> Response:
    store = _store(request)
    key = inputs.idempotency_key(request)
    boundary = upload.boundary(request.headers)
    upload.check_length(request.headers, store.max_size)
    received = await store.receive(request.stream(), boundary)
    return _id_response(await store.create(received, key))


async def reserve(request: Request) -> Response:
    key = inputs.idempotency_key(request)
    return _id_response(await _store(request).reserve(key))


async def replace(request: Request) -> Response:
    store = _store(request)
    data_id = inputs.header_id(request, "X-Data-Id")
    assert data_id is not None
    writer = _writer(request)
    boundary = upload.boundary(request.headers)
    upload.check_length(request.headers, store.max_size)
    if writer.worker_id:  # a worker uploading its output counts as heard from
        await services_of(request).workers.touch(writer.worker_id)
    await store.check_write(data_id, writer)  # fail before the body streams; commit checks again
    received = await store.receive(request.stream(), boundary)
    await store.commit(data_id, received, writer)
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


DOWNLOAD = response(
    "The content: multipart/form-data with one part named `file` (filename = data_id), or "
    "the raw bytes when Accept asks for application/octet-stream.",
    {"multipart/form-data": schema("Upload"),
     "application/octet-stream": {"type": "string",
                                  "contentMediaType": "application/octet-stream"}},
    "X-Data-Id", "ETag", "X-Content-SHA256", "Content-Length")
NEW_DATA = links("$response.header.X-Data-Id", DATA_TARGETS)

ENDPOINTS = [
    Endpoint("GET", "/data", get, frozenset({REQUESTER, SELF}), operation(
        "getData", "Download data", "data",
        {"200": DOWNLOAD,
         "304": response("Unchanged since the ETag in If-None-Match.", None, "X-Data-Id",
                         "ETag", "X-Content-SHA256"),
         **errors(400, 404, 409, 413, 415, 503)},
        parameters=("DataId", "Accept", "IfNoneMatch"),
        body=json_body("DataIdBody", required=False))),
    Endpoint("POST", "/data", create, frozenset({REQUESTER, SELF}), operation(
        "uploadData", "Upload data under a fresh data_id", "data",
        {"200": text_id("Stored under this data_id."), **errors(400, 413, 415, 422, 503, 507)},
        parameters=("IdempotencyKey",), body=upload_body()), links=NEW_DATA),
    Endpoint("PUT", "/data", replace, frozenset({REQUESTER, SELF}), operation(
        "replaceData", "Fill or replace the content of an existing data_id", "data",
        {"200": text_id("Stored."), **errors(400, 404, 409, 413, 415, 503, 507)},
        parameters=("DataIdRequired", "WorkerWriter", "Lease"), body=upload_body())),
    Endpoint("DELETE", "/data", delete, frozenset({REQUESTER}), operation(
        "deleteData", "Delete data", "data", {**NO_CONTENT, **errors(400, 404, 413, 415, 503)},
        parameters=("DataId",), body=json_body("DataIdBody", required=False))),
    Endpoint("POST", "/data/reg", reserve, frozenset({REQUESTER}), operation(
        "reserveData", "Reserve a data_id with no content yet", "data",
        {"200": text_id("Reserved."), **errors(400, 422, 503)},
        parameters=("IdempotencyKey",)), links=NEW_DATA),
]
