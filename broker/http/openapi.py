"""The OpenAPI 3.1 description of every endpoint, put together from the endpoints' own
declarations (broker/http/endpoint.py) and the shared parts (broker/http/schema.py).

Each operation's security, and its 401 and 403, come from the roles its endpoint declares.
Every GET is documented with its HEAD too (Starlette answers HEAD for every GET route), and a
GET that changes state documents its HEAD as refused (405). tests/test_openapi.py holds this
description to the route table and to the live answers, and runs schemathesis against it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from broker.http import auth, inputs
from broker.http.endpoint import Endpoint
from broker.http.operation import HEADERS, PARAMETERS, RESPONSES, errors, operation
from broker.http.schema import SCHEMAS, Schema, id_body

TAGS = ("workers", "jobs", "data", "events", "operations")


def head_of(get: Schema) -> Schema:
    """HEAD answers as GET does, without a body."""
    head = copy.deepcopy(get)
    head["operationId"] += "Head"
    head["summary"] = f"{get['summary']} (headers only)"
    for answer in head["responses"].values():
        answer.pop("content", None)
    return head


def refused_head(get: Schema) -> Schema:
    return operation(f"{get['operationId']}Head", "Refused: it changes state",
                     get["tags"][0], errors(405))


def _secure(op: Schema, roles: frozenset[str]) -> None:
    """Open while no token of its roles is set; else one of their tokens, or 401/403."""
    if not roles:
        op["security"] = []
        return
    op["security"] = [*({f"{role}Token": []} for role in sorted(roles)), {}]
    op["responses"].update(errors(401, 403))


def paths(endpoints: Iterable[Endpoint]) -> dict[str, dict[str, Schema]]:
    found: dict[str, dict[str, Schema]] = {}
    for e in endpoints:
        item = found.setdefault(e.path, {})
        op = copy.deepcopy(e.operation)
        if e.links:
            op["responses"]["200"]["links"] = copy.deepcopy(e.links)
        item[e.method.lower()] = op
        if e.method == "GET":
            item["head"] = head_of(op) if e.head else refused_head(op)
            _secure(item["head"], e.roles)  # the access check comes before the refusal
        _secure(op, e.roles)
    for item in found.values():
        for op in item.values():
            op["responses"] = dict(sorted(op["responses"].items()))
    return found


def security_schemes() -> Schema:
    schemes = {f"{role}Token": {"type": "http", "scheme": "bearer",
                                "description": f"the {role}s' token "
                                               f"(BROKER_{role.upper()}_TOKEN)"}
               for role in (auth.REQUESTER, auth.WORKER, auth.METRICS)}
    schemes[f"{auth.SELF}Token"] = {"type": "http", "scheme": "bearer",
                                    "description": "a registered worker's own token "
                                                   "(worker_token from POST /worker)"}
    return schemes


def build(endpoints: Iterable[Endpoint]) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "redis-job-broker",
            "version": "0.1.0",
            "description": "A job broker: requesters upload data and create jobs naming a "
                           "runtime; workers register their runtimes, take contracts, run "
                           "the jobs and report. Ids are 8 characters of [0-9a-z] and travel "
                           "in X-Worker-Id, X-Job-Id and X-Data-Id (or the JSON body). JSON "
                           f"bodies are application/json, at most {inputs.MAX_JSON_BODY} "
                           "bytes. Every answer carries X-Request-Id; every error is "
                           "{\"error\", \"detail\"}.",
        },
        "tags": [{"name": tag} for tag in TAGS],
        "paths": paths(endpoints),
        "components": {
            "schemas": {**SCHEMAS, "WorkerIdBody": id_body("worker_id"),
                        "JobIdBody": id_body("job_id"), "DataIdBody": id_body("data_id")},
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": security_schemes(),
        },
    }
