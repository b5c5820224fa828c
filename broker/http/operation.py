"""What an endpoint describes its OpenAPI operation with: the shared parameters, headers and
error answers, and `operation` itself. The routes use these beside their handlers."""

from __future__ import annotations

from broker.http import inputs
from broker.http.schema import (
    IDEMPOTENCY_PATTERN,
    REQUEST_ID_PATTERN,
    Schema,
    ref,
    schema,
)

# The error codes each status may carry (README, "Errors").
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request", "invalid_query", "invalid_idempotency_key", "malformed_json",
          "missing_body", "missing_field", "wrong_type", "unknown_field", "invalid_id",
          "missing_id", "id_mismatch", "invalid_runtime", "invalid_status", "invalid_wait",
          "wrong_role", "missing_boundary", "malformed_multipart", "truncated_multipart",
          "missing_file", "too_many_files", "too_many_parts", "client_disconnected",
          "invalid_time", "conflicting_fields", "invalid_url"),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found", "unknown_job", "unknown_worker", "unknown_data"),
    405: ("method_not_allowed",),
    409: ("illegal_transition", "field_locked", "lease_lost", "cancelled", "data_not_ready",
          "output_taken", "too_many_runtimes"),
    413: ("too_large",),
    415: ("unsupported_media_type",),
    422: ("unknown_data", "idempotency_mismatch", "unknown_job"),
    503: ("redis_unavailable", "not_ready"),
    507: ("insufficient_storage",),
}
ERROR_TEXT = {
    400: "The request is malformed: a bad or missing id, header, query, field or body.",
    401: "A bearer token is needed here (one of this operation's roles has a token set) and "
         "none, or a wrong one, was sent.",
    403: "The token is valid but its role may not make this request.",
    404: "No such job, worker or data.",
    405: "Method not allowed here (see Allow).",
    409: "The request conflicts with the current state (see `error`, and `allowed` for an "
         "illegal transition).",
    413: "The body is over its limit (`limit`, bytes).",
    415: "The body has the wrong Content-Type.",
    422: "The request names data that does not exist, or reuses an Idempotency-Key for a "
         "different request.",
    503: "Redis is unreachable, loading or full (or, for /readyz, the data directory is not "
         "writable); retry after Retry-After seconds.",
    507: "The data disk is full; nothing was stored.",
}


# -- parameters and headers --------------------------------------------------------------------


def header(name: str, description: str, s: Schema, *, required: bool = False) -> Schema:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": s}


def query(name: str, description: str, s: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": s}


def id_header(name: str, what: str, field: str | None, *, required: bool = False) -> Schema:
    text = f"the {what}'s id" + (f" (or `{field}` in the JSON body)" if field else "")
    return header(name, text, schema("Id"), required=required)


LIMIT = query("limit", "page size", {"type": "integer", "minimum": 1,
                                     "maximum": inputs.MAX_LIMIT, "default": 100})

PARAMETERS: dict[str, Schema] = {
    "WorkerId": id_header("X-Worker-Id", "worker", "worker_id"),
    "WorkerWriter": header("X-Worker-Id", "a worker writing a job's output names itself",
                           schema("Id")),
    "JobId": id_header("X-Job-Id", "job", "job_id"),
    "JobIdRequired": id_header("X-Job-Id", "job", None, required=True),
    "EventsJobId": query("job_id", "only events of these jobs (repeat it, or separate ids "
                         "with commas)", {"type": "string"}),
    "EventsRuntime": query("runtime", "only events of this runtime's jobs",
                           schema("RuntimeName")),
    "EventsEvery": query("every", "coalesce: at most one `changed` event each this many "
                         "seconds, summing up the events since the last (no catch-up)",
                         {"type": "integer", "minimum": 1, "maximum": 60}),
    "LastEventId": header("Last-Event-ID", "resume after this event (the `id:` of the last "
                          "event received; or the query parameter last_event_id)",
                          {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}),
    "LogOffset": query("offset", "read from this byte of the log (counting every byte ever "
                       "written)", {"type": "integer", "minimum": 0}),
    "LogFollow": query("follow", "1: keep the body open with what is written until the job "
                       "ends", {"type": "string", "enum": ["0", "1", "true", "false"]}),
    "DataId": id_header("X-Data-Id", "data", "data_id"),
    "DataIdRequired": id_header("X-Data-Id", "data", None, required=True),
    "Lease": header("X-Lease", "the lease of the worker's contract (needs X-Worker-Id); "
                    "without it the worker id alone is judged",
                    {"type": "string", "maxLength": inputs.MAX_LEASE}),
    "IdempotencyKey": header("Idempotency-Key", "a retry with the same key answers the first "
                             "result and creates nothing", {"type": "string",
                                                            "pattern": IDEMPOTENCY_PATTERN}),
    "RequestId": header("X-Request-Id", "echoed back (one is made up when absent or "
                        "malformed)", {"type": "string", "pattern": REQUEST_ID_PATTERN}),
    "Accept": header("Accept", "application/octet-stream for the raw bytes; otherwise "
                     "multipart/form-data", {"type": "string"}),
    "IfNoneMatch": header("If-None-Match", "the ETag of a copy already held: 304 when "
                          "unchanged", {"type": "string"}),
    "Wait": query("wait", "seconds to hold the request until a job arrives (capped by "
                  "BROKER_CONTRACT_WAIT_MAX)", {"type": "number", "minimum": 0}),
    "Next": query("next", "with a worker's final report (succeeded or failed): take up to "
                  "this many next jobs in the same request, answered as GET /worker/contract "
                  "answers (?max=N when more than 1)", {"type": "integer", "minimum": 1,
                                                       "maximum": inputs.MAX_BATCH}),
    "Max": query("max", "take up to this many jobs at once: the answer is then "
                 "{\"contracts\": [...]}", {"type": "integer", "minimum": 1,
                                            "maximum": inputs.MAX_BATCH}),
    "WorkerIdRequired": id_header("X-Worker-Id", "worker", None, required=True),
    "JobStatus": query("status", "only jobs in this status", schema("Status")),
    "JobRuntime": query("runtime", "only jobs of this runtime", schema("RuntimeName")),
    "JobCursor": query("cursor", "next_cursor of the previous page",
                       {"type": "string", "pattern": "^[0-9]+$"}),
    "WorkerCursor": query("cursor", "next_cursor of the previous page", schema("Id")),
    "Limit": LIMIT,
}


def string_header(description: str, s: Schema | None = None) -> Schema:
    return {"description": description, "required": True, "schema": s or {"type": "string"}}


HEADERS: dict[str, Schema] = {
    "RequestId": string_header("the request's X-Request-Id, or one made up",
                               {"type": "string", "pattern": REQUEST_ID_PATTERN}),
    "DataId": string_header("the data_id", schema("Id")),
    "ETag": string_header("a strong validator of this version of the content"),
    "ContentSHA256": {"description": "sha256 of the content (left out if the metadata does "
                      "not match the file)", "required": False,
                      "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    "ContentLength": string_header("exact length of the body", {"type": "integer",
                                                                 "minimum": 0}),
    "RetryAfter": string_header("seconds to wait before retrying", {"type": "integer",
                                                                      "minimum": 0}),
    "Allow": string_header("the methods this path answers"),
    "WWWAuthenticate": string_header("Bearer realm=\"broker\""),
    "LogStart": string_header("offset of the first byte of the log still kept",
                              {"type": "integer", "minimum": 0}),
    "LogSize": string_header("bytes written to the log so far: the offset to read on from",
                             {"type": "integer", "minimum": 0}),
}

# -- responses ---------------------------------------------------------------------------------


HEADER_KEYS = {"X-Data-Id": "DataId", "ETag": "ETag", "X-Content-SHA256": "ContentSHA256",
               "Content-Length": "ContentLength", "Retry-After": "RetryAfter",
               "Allow": "Allow", "WWW-Authenticate": "WWWAuthenticate",
               "X-Log-Start": "LogStart", "X-Log-Size": "LogSize"}


def response(description: str, content: dict[str, Schema] | None = None,
             *extra_headers: str) -> Schema:
    answer: Schema = {"description": description, "headers": {
        "X-Request-Id": ref("headers", "RequestId"),
        **{name: ref("headers", HEADER_KEYS[name]) for name in extra_headers}}}
    if content:
        answer["content"] = {media: {"schema": s} for media, s in content.items()}
    return answer


def json_response(description: str, name: str, *extra_headers: str) -> Schema:
    return response(description, {"application/json": schema(name)}, *extra_headers)


def text_id(description: str) -> Schema:
    return response(description, {"text/plain": schema("DataIdText")}, "X-Data-Id")


def error_response(status: int) -> Schema:
    extra = {401: ("WWW-Authenticate",), 405: ("Allow",), 503: ("Retry-After",)}
    s = {"allOf": [schema("Error"), {"properties": {
        "error": {"enum": list(ERROR_CODES[status])}}}]}
    return response(ERROR_TEXT[status], {"application/json": s}, *extra.get(status, ()))


RESPONSES: dict[str, Schema] = {
    **{f"E{status}": error_response(status) for status in ERROR_CODES},
    "NoContent": response("Done; no content."),
}


def errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): ref("responses", f"E{status}") for status in statuses}


NO_CONTENT = {"204": ref("responses", "NoContent")}
# What reading an optional JSON body (and Redis) can answer.
BODY_ERRORS = (400, 413, 415, 503)


def json_body(name: str, *, required: bool) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema(name)}}}


def upload_body() -> Schema:
    return {"required": True, "content": {"multipart/form-data": {
        "schema": schema("Upload"),
        "encoding": {"file": {"contentType": "application/octet-stream"}}}}}


def params(*names: str) -> list[Schema]:
    return [ref("parameters", name) for name in (*names, "RequestId")]


def operation(op_id: str, summary: str, tag: str, responses: dict[str, Schema], *,
              parameters: tuple[str, ...] = (), body: Schema | None = None,
              description: str | None = None) -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag],
                  "parameters": params(*parameters), "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if description:
        op["description"] = description
    return op


def links(source: str, targets: dict[str, str]) -> dict[str, Schema]:
    """Links from an answer to the operations that take the id it carries (`source`, a
    runtime expression) in a header."""
    return {target: {"operationId": target, "parameters": {f"header.{name}": source}}
            for target, name in targets.items()}


WORKER_TARGETS = {"getWorker": "X-Worker-Id", "contract": "X-Worker-Id",
                  "unregisterWorker": "X-Worker-Id", "reportJobs": "X-Worker-Id"}
JOB_TARGETS = {"getJob": "X-Job-Id", "updateJob": "X-Job-Id", "deleteJob": "X-Job-Id"}
DATA_TARGETS = {"getData": "X-Data-Id", "replaceData": "X-Data-Id", "deleteData": "X-Data-Id"}
