"""The parts of the OpenAPI description that endpoints share: component schemas, parameters,
headers, error answers, and the helpers an endpoint describes its operation with.

The id, runtime, Idempotency-Key and X-Request-Id patterns come from the modules that check
them, the statuses from `broker.lifecycle`, the limits from `broker.http.inputs`. Each
endpoint's own operation sits beside its handler (broker/http/routes/); broker/http/openapi.py
puts the document together.
"""

from __future__ import annotations

from typing import Any

from broker import ids, lifecycle
from broker.http import inputs, observe

Schema = dict[str, Any]

ID_PATTERN = f"^{ids.ID_PATTERN.pattern}$"
RUNTIME_PATTERN = f"^{ids.RUNTIME_PATTERN.pattern}$"
IDEMPOTENCY_PATTERN = f"^{inputs.IDEMPOTENCY_KEY.pattern}$"
REQUEST_ID_PATTERN = f"^{observe.REQUEST_ID.pattern}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
MAX_STRING = 1024  # inputs.string_field's default limit

# The error codes each status may carry (README, "Errors").
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request", "invalid_query", "invalid_idempotency_key", "malformed_json",
          "missing_body", "missing_field", "wrong_type", "unknown_field", "invalid_id",
          "missing_id", "id_mismatch", "invalid_runtime", "invalid_status", "invalid_wait",
          "wrong_role", "missing_boundary", "malformed_multipart", "truncated_multipart",
          "missing_file", "too_many_files", "too_many_parts", "client_disconnected"),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found", "unknown_job", "unknown_worker", "unknown_data"),
    405: ("method_not_allowed",),
    409: ("illegal_transition", "field_locked", "lease_lost", "cancelled", "data_not_ready",
          "output_taken", "too_many_runtimes"),
    413: ("too_large",),
    415: ("unsupported_media_type",),
    422: ("unknown_data", "idempotency_mismatch"),
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


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> Schema:
    return ref("schemas", name)


def nullable(s: Schema) -> Schema:
    return {**s, "type": [s["type"], "null"]}


def obj(properties: dict[str, Schema], required: list[str] | None = None, *,
        closed: bool = True, description: str | None = None) -> Schema:
    """A JSON object; `closed` forbids properties beyond those listed."""
    s: Schema = {"type": "object", "properties": properties}
    if required:
        s["required"] = required
    if closed:
        s["additionalProperties"] = False
    if description:
        s["description"] = description
    return s


def exact(properties: dict[str, Schema], description: str | None = None) -> Schema:
    """A response object: every property present, no other."""
    return obj(properties, list(properties), description=description)


# -- schemas -----------------------------------------------------------------------------------

TIMESTAMP: Schema = {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN,
                     "description": "RFC 3339 in UTC with milliseconds"}

WORKER_FIELDS: dict[str, Schema] = {
    "worker_id": schema("Id"),
    "Runtime": schema("RuntimeList"),
    "registered_at": schema("Timestamp"),
    "last_seen": schema("Timestamp"),
}

JOB_FIELDS: dict[str, Schema] = {
    "job_id": schema("Id"),
    "data1_id": schema("IdOrEmpty"),
    "data2_id": schema("IdOrEmpty"),
    "function_id": {"type": "string"},
    "runtime": schema("RuntimeName"),
    "status": schema("Status"),
    "worker_id": {"type": ["string", "null"], "pattern": ID_PATTERN,
                  "description": "the worker that holds or last held the job"},
    "attempts": {"type": "integer", "minimum": 0, "description": "runs started"},
    "max_attempts": {"type": "integer", "minimum": 1},
    "timeout": {"type": "number", "description": "time limit of a run, seconds"},
    "error": {"type": ["string", "null"], "description": "why the last run failed"},
    "created_at": schema("Timestamp"),
    "updated_at": schema("Timestamp"),
    "started_at": schema("NullableTimestamp"),
    "finished_at": schema("NullableTimestamp"),
    "retry_at": {**schema("NullableTimestamp"),
                 "description": "when a failed run waiting out its backoff is due"},
}

SCHEMAS: dict[str, Schema] = {
    "Id": {"type": "string", "pattern": ID_PATTERN,
           "description": "8 characters of [0-9a-z]", "examples": ["k3v9x0qa"]},
    "IdOrEmpty": {"type": "string", "pattern": f"^({ids.ID_PATTERN.pattern})?$",
                  "description": "an id, or \"\" for none"},
    "RuntimeName": {"type": "string", "pattern": RUNTIME_PATTERN, "examples": ["python3"]},
    "RuntimeList": {"type": "array", "items": schema("RuntimeName"), "minItems": 1,
                    "maxItems": inputs.MAX_RUNTIMES},
    "Status": {"type": "string", "enum": list(lifecycle.STATUSES)},
    "Timestamp": TIMESTAMP,
    "NullableTimestamp": {**nullable(TIMESTAMP), "description": "RFC 3339 in UTC with "
                          "milliseconds, or null when not reached yet"},
    "Error": obj({
        "error": {"type": "string", "description": "a stable code: see each status"},
        "detail": {"type": "string", "description": "a sentence for people"},
        "field": {"type": "string", "description": "the field, header or parameter at fault"},
        "limit": {"type": "integer", "description": "the limit crossed, bytes"},
        "allowed": {"type": "array", "items": schema("Status"),
                    "description": "the statuses this role may set from here"},
        "status_now": schema("Status"),
    }, ["error", "detail"], description="Every error answer."),
    "Registration": obj({
        "Runtime": {**schema("RuntimeList"), "description": "runtimes this worker can run "
                    "(1 to 32; repeats are dropped)"},
    }, ["Runtime"], closed=False),
    "Registered": obj({
        "worker_id": schema("Id"),
        "Runtime": schema("RuntimeList"),
        "heartbeat_interval": {"type": "number", "description": "seconds between heartbeats "
                               "(a third of the shorter of the worker and lease timeouts)"},
        "worker_token": {"type": "string", "pattern": "^w1\\.[0-9a-z]{8}\\.[0-9a-f]{40}$",
                         "description": "this worker's own bearer token, for every later "
                         "request (present when the broker has a worker token set)"},
    }, ["worker_id", "Runtime", "heartbeat_interval"]),
    "Worker": exact(WORKER_FIELDS),
    "ListedWorker": exact({**WORKER_FIELDS, "running": {
        "type": "array", "items": schema("Id"), "description": "jobs it is running"}}),
    "Contract": exact({
        "worker_id": schema("Id"),
        "job_id": schema("Id"),
        "data1_id": {**schema("IdOrEmpty"), "description": "the input, to download"},
        "data2_id": {**schema("IdOrEmpty"), "description": "where the output goes (if set)"},
        "function_id": {"type": "string"},
        "runtime": schema("RuntimeName"),
        "lease": {"type": "string", "description": "fencing token: send it back as X-Lease"},
        "attempts": {"type": "integer", "minimum": 1},
        "max_attempts": {"type": "integer", "minimum": 1},
        "timeout": {"type": "number", "description": "time limit of this run, seconds"},
        "started_at": schema("Timestamp"),
        "heartbeat_interval": {"type": "number"},
    }),
    "Contracts": exact({"contracts": {"type": "array", "items": schema("Contract"),
                                      "minItems": 1}}),
    "NewJob": obj({
        "function_id": {"type": "string", "minLength": 1, "maxLength": MAX_STRING,
                        "description": "opaque to the broker; the agent reads it as the "
                        "data_id of the code"},
        "runtime": schema("RuntimeName"),
        "data1_id": {**schema("IdOrEmpty"), "description": "input data (must exist)"},
        "data2_id": {**schema("IdOrEmpty"), "description": "output slot (must exist)"},
        "max_attempts": {"type": "integer", "minimum": 1,
                         "maximum": inputs.MAX_ATTEMPTS},
        "timeout": {"type": "number", "minimum": 0.001, "maximum": inputs.MAX_TIMEOUT,
                    "description": "time limit of a run, seconds"},
    }, ["function_id", "runtime"]),
    "JobCreated": exact({"job_id": schema("Id")}),
    "NewJobs": obj({"jobs": {"type": "array", "items": schema("NewJob"), "minItems": 1,
                             "maxItems": inputs.MAX_ITEMS}}, ["jobs"], closed=False),
    "JobsCreated": exact({"results": {
        "type": "array", "items": {"anyOf": [schema("JobCreated"), schema("Error")]},
        "description": "one per job, in order: its id, or the error that refused it"}}),
    "Report": obj({
        "job_id": schema("Id"),
        "lease": {"type": "string", "maxLength": inputs.MAX_LEASE},
        "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
        "error": {"type": "string", "maxLength": inputs.MAX_ERROR_TEXT},
        "retry": {"type": "boolean"},
        "data2_id": schema("IdOrEmpty"),
    }, ["job_id", "status"], description="One report, as PUT /job by the worker holding the "
                                          "job."),
    "Reports": obj({"reports": {"type": "array", "items": schema("Report"), "minItems": 1,
                                "maxItems": inputs.MAX_ITEMS}}, ["reports"],
                   closed=False),
    "ReportsDone": exact({"results": {
        "type": "array",
        "items": {"anyOf": [exact({"ok": {"type": "boolean", "const": True}}),
                            schema("Error")]},
        "description": "one per report, in order: ok, or the error that refused it"}}),
    "JobUpdate": obj({
        "job_id": {**schema("IdOrEmpty"), "description": "as X-Job-Id"},
        "worker_id": {**schema("IdOrEmpty"), "description": "as X-Worker-Id: a worker's "
                      "write"},
        "status": schema("Status"),
        "data1_id": schema("IdOrEmpty"),
        "data2_id": schema("IdOrEmpty"),
        "function_id": {"type": "string", "minLength": 1, "maxLength": MAX_STRING},
        "runtime": schema("RuntimeName"),
        "error": {"type": "string", "maxLength": inputs.MAX_ERROR_TEXT,
                  "description": "a worker's account of a failure"},
        "retry": {"type": "boolean", "description": "with a worker's `failed`: false ends "
                  "the job for good; absent or true runs it again after a backoff while "
                  "attempts remain"},
    }, description="Any of the job's fields; those sent with the value the job holds are "
                   "ignored, so echoing the whole job back is fine."),
    "Job": exact(JOB_FIELDS),
    "JobPage": exact({
        "jobs": {"type": "array", "items": schema("Job")},
        "next_cursor": {"type": ["string", "null"], "pattern": "^[0-9]+$",
                        "description": "pass as ?cursor= for the next page; null at the end"},
    }),
    "WorkerPage": exact({
        "workers": {"type": "array", "items": schema("ListedWorker")},
        "next_cursor": {"type": ["string", "null"], "pattern": ID_PATTERN},
    }),
    "Runtimes": exact({"runtimes": {"type": "array", "items": exact({
        "runtime": schema("RuntimeName"),
        "pending": {"type": "integer", "minimum": 0},
        "running": {"type": "integer", "minimum": 0},
        "workers": {"type": "integer", "minimum": 0},
    })}}),
    "Upload": obj({"file": {"type": "string", "contentMediaType": "application/octet-stream",
                            "description": "the content"}}, ["file"],
                  description="Exactly one file part: the field `file`, or any part with a "
                              "filename."),
    "DataIdText": {"type": "string", "pattern": ID_PATTERN, "description": "the data_id"},
    "Health": exact({"status": {"type": "string", "const": "ok"}}),
    "Ready": exact({"status": {"type": "string", "const": "ready"}}),
}


def id_body(field: str) -> Schema:
    return obj({field: {**schema("IdOrEmpty"), "description": "the id, as the header"}},
               closed=False)


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
}

# -- responses ---------------------------------------------------------------------------------


HEADER_KEYS = {"X-Data-Id": "DataId", "ETag": "ETag", "X-Content-SHA256": "ContentSHA256",
               "Content-Length": "ContentLength", "Retry-After": "RetryAfter",
               "Allow": "Allow", "WWW-Authenticate": "WWWAuthenticate"}


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
