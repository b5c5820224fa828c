"""The component schemas of the OpenAPI description: the shapes of what the broker reads and
answers, and the helpers that build them.

The id, runtime, Idempotency-Key and X-Request-Id patterns come from the modules that check
them, the statuses from `broker.lifecycle`, the limits from `broker.http.inputs`. Each
endpoint's own operation sits beside its handler (broker/http/routes/), built with
broker/http/operation.py; broker/http/openapi.py puts the document together.
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
    "priority": {"type": "integer", "minimum": -inputs.MAX_PRIORITY,
                 "maximum": inputs.MAX_PRIORITY, "description": "higher goes first"},
    "ttl": {"type": ["integer", "null"], "minimum": 0, "description": "the job's own "
            "retention once finished, seconds; null: the broker's (BROKER_JOB_TTL)"},
    "error": {"type": ["string", "null"], "description": "why the last run failed"},
    "created_at": schema("Timestamp"),
    "updated_at": schema("Timestamp"),
    "started_at": schema("NullableTimestamp"),
    "finished_at": schema("NullableTimestamp"),
    "retry_at": {**schema("NullableTimestamp"),
                 "description": "when a failed run waiting out its backoff is due"},
    "run_at": {**schema("NullableTimestamp"),
               "description": "when a scheduled job is (or was) due; null: it never was"},
    "after": {"type": "array", "items": schema("Id"),
              "description": "jobs that must succeed before this one runs"},
    "callback_url": {"type": ["string", "null"],
                     "description": "where the job's end is posted (a webhook)"},
    "waiting": {"type": ["object", "null"], "description": "why it is not running (GET /job; "
                "null while running, once finished, and in listings)", "properties": {
                    "reason": {"type": "string", "enum": [
                        "queued", "no_worker", "paused", "scheduled", "retry_backoff",
                        "inputs", "after"]},
                    "detail": {"type": "string"}},
                "required": ["reason", "detail"]},
}

EVENT_FIELDS: dict[str, Schema] = {
    "id": {"type": "string", "description": "the events stream's id (SSE `id:`)"},
    "event": {"type": "string", "enum": [
        "created", "scheduled", "waiting", "pending", "running", "given_back", "retried",
        "succeeded", "failed", "cancelled", "deleted", "expired"]},
    "job_id": schema("Id"),
    "runtime": schema("RuntimeName"),
    "from": {"anyOf": [schema("Status"), {"type": "null"}]},
    "to": {"anyOf": [schema("Status"), {"type": "null"}]},
    "worker_id": {"type": ["string", "null"]},
    "attempt": {"type": ["integer", "null"], "minimum": 0},
    "time": schema("Timestamp"),
    "reason": {"type": ["string", "null"]},
}

# What a job body may say about when and in what order the job runs (POST /job, PUT /job).
SCHEDULING: dict[str, Schema] = {
    "priority": {"type": "integer", "minimum": -inputs.MAX_PRIORITY,
                 "maximum": inputs.MAX_PRIORITY,
                 "description": "higher goes first within a runtime; default 0"},
    "run_at": {"type": "string", "format": "date-time", "maxLength": 64,
               "description": "RFC 3339 with an offset: the job is scheduled until then (a "
               "time in the past runs now); not with delay"},
    "delay": {"type": "number", "minimum": 0, "maximum": inputs.MAX_DELAY,
              "description": "seconds from now until the job is due; not with run_at"},
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
        **SCHEDULING,
        "after": {"type": "array", "items": schema("Id"), "maxItems": inputs.MAX_AFTER,
                  "description": "jobs that must succeed first: it waits until they have"},
        "ttl": {"type": "integer", "minimum": 0, "maximum": inputs.MAX_TTL,
                "description": "seconds the job is kept once finished (0: for ever); "
                "default BROKER_JOB_TTL"},
        "callback_url": {"type": "string", "maxLength": 2048, "pattern": "^https?://",
                         "description": "http(s) URL the job's end (succeeded, failed, "
                         "cancelled) is posted to, signed (a webhook)"},
    }, ["function_id", "runtime"]),
    "JobCreated": exact({"job_id": schema("Id")}),
    "Event": exact(EVENT_FIELDS),
    "JobEvents": exact({"events": {"type": "array", "items": schema("Event")}}),
    "Webhooks": exact({
        "outbox": {"type": "integer", "minimum": 0},
        "queued": {"type": "integer", "minimum": 0},
        "retrying": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "notifiers": {"type": "integer", "minimum": 0},
        "latest_failures": {"type": "array", "items": exact({
            "delivery": {"type": "string"}, "url": {"type": "string"},
            "error": {"type": "string"}, "failed_at": {"type": ["string", "null"]}})}}),
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
    "ReportsDone": obj({"results": {
        "type": "array",
        "items": {"anyOf": [exact({"ok": {"type": "boolean", "const": True}}),
                            schema("Error")]},
        "description": "one per report, in order: ok, or the error that refused it"},
        "contracts": {"type": "array", "items": schema("Contract"),
                      "description": "with ?next: the worker's next jobs (maybe none)"}},
        ["results"]),
    "JobUpdate": obj({
        "job_id": {**schema("IdOrEmpty"), "description": "as X-Job-Id"},
        "worker_id": {**schema("IdOrEmpty"), "description": "as X-Worker-Id: a worker's "
                      "write"},
        "status": schema("Status"),
        "data1_id": schema("IdOrEmpty"),
        "data2_id": schema("IdOrEmpty"),
        "function_id": {"type": "string", "minLength": 1, "maxLength": MAX_STRING},
        "runtime": schema("RuntimeName"),
        **SCHEDULING,
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
    "DeadWorkers": exact({"workers": {"type": "array", "items": exact({
        **WORKER_FIELDS,
        "dead_at": schema("Timestamp"),
        "gave_back": {"type": "array", "items": schema("Id"),
                      "description": "the jobs it was running, taken from it"},
    })}}),
    "Throughput": exact({"minutes": {
        "type": "array", "minItems": 60, "maxItems": 60, "items": exact({
            "minute": {**schema("Timestamp"), "description": "when the minute began"},
            "handed_out": {"type": "integer", "minimum": 0,
                           "description": "jobs handed to a worker (contracts)"},
            "succeeded": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
            "cancelled": {"type": "integer", "minimum": 0},
        })}}),
    "Runtimes": exact({"runtimes": {"type": "array", "items": exact({
        "runtime": schema("RuntimeName"),
        "pending": {"type": "integer", "minimum": 0},
        "running": {"type": "integer", "minimum": 0},
        "scheduled": {"type": "integer", "minimum": 0},
        "waiting": {"type": "integer", "minimum": 0},
        "workers": {"type": "integer", "minimum": 0},
        "paused": {"type": "boolean"},
        "warning": {"type": ["string", "null"],
                    "description": "set when jobs are pending and no live worker serves it"},
    })}}),
    "RuntimePause": obj({
        "runtime": schema("RuntimeName"),
        "paused": {"type": "boolean", "description": "true stops contracts for the runtime; "
                   "false resumes them"},
    }, ["runtime", "paused"]),
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
