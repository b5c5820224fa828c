"""GET /openapi.json: a valid OpenAPI 3.1 description of every route and method, that the live
answers keep to (a realistic flow validated answer by answer), and that schemathesis fuzzes
(a bounded, seeded number of examples per operation: no 5xx, nothing outside the schema)."""

from __future__ import annotations

import copy
import email.parser
import email.policy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from pytest_redis.executor import RedisExecutor
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker.http import endpoint, openapi
from broker.http.auth import REQUESTER, WORKER
from broker.http.routes import ENDPOINTS
from tests.brokerproc import BrokerProcess
from tests.helpers import register, submit, upload

SPEC = openapi.build(ENDPOINTS)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# -- the description itself --------------------------------------------------------------------


def test_the_spec_is_valid_openapi_3_1() -> None:
    validate(copy.deepcopy(SPEC))
    assert SPEC["openapi"].startswith("3.1")


def test_schemathesis_loads_every_operation() -> None:
    labels = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        labels.add(result.ok().label)
    fuzzed = {path: item for path, item in SPEC["paths"].items() if path != "/events"}
    assert len(labels) == sum(len(item) for item in fuzzed.values())


def test_every_route_and_method_is_described_and_nothing_else() -> None:
    """The document and the route table are derived from the same declarations; this holds
    them to each other, HEAD included."""
    routed = {route.path: {m.lower() for m in route.methods or ()}
              for route in endpoint.routes(ENDPOINTS)}
    described = {path: {m for m in item if m in METHODS} for path, item in SPEC["paths"].items()}
    assert described == routed


def test_every_operation_documents_its_errors_with_the_one_error_shape() -> None:
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            assert op["operationId"], (path, method)
            for status, answer in op["responses"].items():
                resolved = _resolve(answer)
                assert "X-Request-Id" in resolved["headers"], (path, method, status)
                if int(status) >= 400 and method != "head":
                    s = resolved["content"]["application/json"]["schema"]
                    assert s["allOf"][0] == {"$ref": "#/components/schemas/Error"}


def test_the_live_document_is_the_spec(client: httpx.Client) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == SPEC


# -- live answers against the description --------------------------------------------------------


def _resolve(node: Any) -> Any:
    """Follow a local $ref (one level at a time, recursively) to its target."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(s: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for a schema inside the spec, its $refs resolved against the spec."""
    rooted = {**s, "components": SPEC["components"]}
    return jsonschema.Draft202012Validator(
        rooted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _multipart_fields(resp: httpx.Response) -> dict[str, bytes]:
    head = f"Content-Type: {resp.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + resp.content)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        fields[name] = payload
    return fields


def check(resp: httpx.Response, path: str | None = None, method: str | None = None) -> None:
    """Assert that `resp` is documented for its operation: status, headers, content type and
    body (JSON validated against the schema, text against its pattern, multipart parsed)."""
    path = path or resp.request.url.path
    method = (method or resp.request.method).lower()
    op = SPEC["paths"][path][method]
    status = str(resp.status_code)
    assert status in op["responses"], (method, path, status, resp.text)
    answer = _resolve(op["responses"][status])
    for name, header in answer.get("headers", {}).items():
        header = _resolve(header)
        value = resp.headers.get(name)
        if value is None:
            assert not header["required"], (method, path, status, f"no {name} header")
            continue
        typed: Any = int(value) if header["schema"].get("type") == "integer" else value
        _validator(header["schema"]).validate(typed)
    content = answer.get("content")
    if not content or method == "head":
        assert resp.content == b"", (method, path, status)
        return
    media = resp.headers["content-type"].split(";")[0].strip()
    assert media in content, (method, path, status, media)
    s = content[media]["schema"]
    if media == "application/json":
        _validator(s).validate(resp.json())
    elif media == "text/plain" and path != "/metrics":
        _validator(s).validate(resp.text)
    elif media == "multipart/form-data":
        _validator(s).validate({k: v.decode("latin-1") for k, v in
                                _multipart_fields(resp).items()})


def test_a_realistic_flow_answers_as_documented(client: httpx.Client) -> None:
    c = client
    check(c.get("/healthz"))
    check(c.get("/readyz"))
    check(c.head("/healthz"))
    reg = c.post("/worker", json={"Runtime": ["python3", "sh", "python3"]})
    check(reg)
    worker_id = reg.json()["worker_id"]
    w = {"X-Worker-Id": worker_id}
    check(c.get("/worker", headers=w))
    check(c.head("/worker", headers=w))
    check(c.get("/worker/contract", headers=w))  # 204: nothing pending
    check(c.head("/worker/contract", headers=w))  # 405

    posted = c.post("/data", files={"file": ("in.txt", b"hello")},
                    headers={"Idempotency-Key": "in-1"})
    check(posted)
    data1 = posted.text
    check(c.post("/data", files={"file": ("in.txt", b"hello")},
                 headers={"Idempotency-Key": "in-1"}))  # the same answer again
    reserved = c.post("/data/reg")
    check(reserved)
    data2 = reserved.text
    check(c.get("/data", headers={"X-Data-Id": data2}))  # 409 data_not_ready
    job = c.post("/job", json={"function_id": data1, "runtime": "python3", "data1_id": data1,
                               "data2_id": data2, "max_attempts": 2, "timeout": 30},
                 headers={"Idempotency-Key": "job-1"})
    check(job)
    job_id = job.json()["job_id"]
    j = {"X-Job-Id": job_id}
    check(c.get("/job", headers=j))
    check(c.request("GET", "/job", json={"job_id": job_id}))
    check(c.put("/job", headers=j, json={"runtime": "sh"}))  # a requester's edit while pending
    check(c.put("/job", headers=j, json={"runtime": "python3"}))

    contract = c.get("/worker/contract", headers=w, params={"wait": 1})
    check(contract)
    assert contract.status_code == 200
    lease = contract.json()["lease"]
    held = {**w, **j, "X-Lease": lease}
    check(c.put("/job", headers=held, json={"status": "running"}))  # heartbeat
    check(c.put("/data", headers={"X-Data-Id": data2, **w, "X-Lease": lease},
                files={"file": ("out", b"HELLO")}))
    check(c.put("/job", headers=held, json={"status": "succeeded"}))
    check(c.get("/job", headers=j))

    down = c.get("/data", headers={"X-Data-Id": data2})
    check(down)
    assert _multipart_fields(down) == {"file": b"HELLO"}
    raw = c.get("/data", headers={"X-Data-Id": data2, "Accept": "application/octet-stream"})
    check(raw)
    assert raw.content == b"HELLO"
    check(c.get("/data", headers={"X-Data-Id": data2, "If-None-Match": down.headers["etag"]}))
    check(c.head("/data", headers={"X-Data-Id": data2}))

    check(c.get("/jobs"))
    check(c.get("/jobs", params={"status": "succeeded", "runtime": "python3", "limit": 1}))
    check(c.get("/workers", params={"limit": 1}))
    check(c.get("/runtimes"))
    check(c.get("/metrics"))
    check(c.get("/openapi.json"))

    check(c.put("/job", headers=j, json={"status": "pending"}))  # run it again
    check(c.delete("/job", headers=j))
    check(c.delete("/data", headers={"X-Data-Id": data1}))
    check(c.delete("/worker", headers=w))


def test_batches_answer_as_documented(client: httpx.Client) -> None:
    c = client
    worker_id = register(c, "sh")
    created = c.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"}, {"function_id": "g", "runtime": "sh"},
        {"function_id": "f", "runtime": "sh", "data1_id": "zzzzzzzz"}, 7]})
    check(created)
    results = created.json()["results"]
    assert [sorted(item) for item in results] == [
        ["job_id"], ["job_id"], ["detail", "error", "field"], ["detail", "error"]]
    taken = c.get("/worker/contract", headers={"X-Worker-Id": worker_id}, params={"max": 5})
    check(taken)
    contracts = taken.json()["contracts"]
    assert len(contracts) == 2
    reported = c.put("/jobs", headers={"X-Worker-Id": worker_id}, json={"reports": [
        {"job_id": contracts[0]["job_id"], "lease": contracts[0]["lease"],
         "status": "succeeded"},
        {"job_id": contracts[1]["job_id"], "lease": "stale", "status": "failed"},
        {"job_id": "nope"}]})
    check(reported)
    assert [item.get("ok") or item["error"] for item in reported.json()["results"]] == [
        True, "lease_lost", "invalid_id"]
    check(c.post("/jobs", json={"jobs": []}))
    check(c.put("/jobs", json={"reports": []}))


def test_error_answers_are_documented(client: httpx.Client) -> None:
    c = client
    worker_id = register(c, "python3")
    job_id = submit(c, "python3")
    data_id = upload(c)
    j = {"X-Job-Id": job_id}
    check(c.post("/job", json={"function_id": "f", "runtime": "py"},
                 headers={"Idempotency-Key": "k"}))
    answers = {
        404: [c.get("/job", headers={"X-Job-Id": "zzzzzzzz"}),
              c.get("/worker", headers={"X-Worker-Id": "zzzzzzzz"}),
              c.get("/worker/contract", headers={"X-Worker-Id": "zzzzzzzz"}),
              c.delete("/data", headers={"X-Data-Id": "zzzzzzzz"}),
              c.put("/data", headers={"X-Data-Id": "zzzzzzzz"}, files={"file": b"x"})],
        409: [c.put("/job", headers=j, json={"status": "succeeded"}),
              c.put("/job", headers={**j, "X-Worker-Id": worker_id},
                    json={"status": "running"})],
        400: [c.get("/job", headers={"X-Job-Id": "BAD"}),
              c.get("/job"),
              c.request("GET", "/job", headers=j, json={"job_id": "yyyyyyyy"}),
              c.post("/job", json={"function_id": "f"}),
              c.post("/job", json={"function_id": "f", "runtime": "py", "extra": 1}),
              c.post("/job", content=b"{", headers={"Content-Type": "application/json"}),
              c.post("/job", headers={"Idempotency-Key": ""}, json={}),
              c.put("/job", headers=j, json={"status": "done"}),
              c.post("/worker", json={"Runtime": []}),
              c.get("/worker/contract", headers={"X-Worker-Id": worker_id},
                    params={"wait": "soon"}),
              c.get("/jobs", params={"limit": "0"}),
              c.get("/workers", params={"cursor": "nope"}),
              c.post("/data", content=b"--b\r\n", headers={
                  "Content-Type": "multipart/form-data; boundary=b"}),
              c.post("/data", files={"other": ("", b"x")}, data={"k": "v"})],
        415: [c.post("/job", content=b"{}", headers={"Content-Type": "text/plain"}),
              c.post("/data", content=b"x", headers={"Content-Type": "text/plain"}),
              c.post("/worker", data={"Runtime": "python3"})],
        413: [c.post("/job", content=b" " * (65 * 1024),
                     headers={"Content-Type": "application/json"})],
        422: [c.post("/job", json={"function_id": "f", "runtime": "py",
                                   "data1_id": "zzzzzzzz"}),
              c.post("/job", json={"function_id": "g", "runtime": "py"},
                     headers={"Idempotency-Key": "k"})],
    }
    for status, responses in answers.items():
        for resp in responses:
            check(resp)
            assert resp.status_code == status, (resp.request.method, resp.request.url,
                                                resp.text)
    assert c.get("/data", headers={"X-Data-Id": data_id}).status_code == 200
    # Not an operation: no endpoint, or a method the path does not answer.
    assert c.get("/nowhere").json()["error"] == "not_found"
    patch = c.patch("/job")
    assert patch.status_code == 405 and patch.json()["error"] == "method_not_allowed"


def test_the_answers_of_a_broker_with_tokens_are_documented(
        start_broker: Callable[..., BrokerProcess]) -> None:
    tokens = {REQUESTER: "req-token-1", WORKER: "wrk-token-2"}
    proc = start_broker(BROKER_REQUESTER_TOKEN=tokens[REQUESTER],
                        BROKER_WORKER_TOKEN=tokens[WORKER])
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        bearer = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
        for resp in (c.get("/job", headers={"X-Job-Id": "zzzzzzzz"}),  # 401
                     c.post("/worker", json={"Runtime": ["sh"]}, headers=bearer[REQUESTER]),
                     c.head("/worker/contract"),
                     c.get("/healthz"), c.get("/metrics")):
            check(resp)
        assert [c.get("/jobs").status_code,
                c.get("/jobs", headers=bearer[WORKER]).status_code] == [401, 403]
        job_id = c.post("/job", json={"function_id": "f", "runtime": "sh"},
                        headers=bearer[REQUESTER]).json()["job_id"]
        forbidden = c.put("/job", json={"status": "running"},
                          headers={**bearer[WORKER], "X-Job-Id": job_id})
        check(forbidden)
        assert forbidden.status_code == 403


def test_the_answers_while_redis_is_away_are_documented(
        own_redis: Callable[..., RedisExecutor],
        start_broker: Callable[..., BrokerProcess]) -> None:
    server = own_redis()
    proc = start_broker(REDIS_URL=f"redis://127.0.0.1:{server.port}/0")
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        worker_id = register(c, "sh")
        server.stop()
        answers = [c.get("/readyz"), c.get("/job", headers={"X-Job-Id": "abcdefgh"}),
                   c.post("/job", json={"function_id": "f", "runtime": "sh"}),
                   c.get("/worker/contract", headers={"X-Worker-Id": worker_id}),
                   c.post("/data/reg"), c.get("/jobs"), c.get("/runtimes"), c.get("/metrics"),
                   c.head("/readyz")]
        for resp in answers:
            assert resp.status_code == 503, (resp.request.url, resp.text)
            check(resp)
        check(c.get("/healthz"))


# Client input that once answered 500, found while writing this description.
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("method", "path", "body", "headers"), [
    pytest.param("GET", "/jobs?limit=%C2%B2", None, {}, id="jobs-limit"),
    pytest.param("GET", "/jobs?cursor=%C2%B2", None, {},
                 id="jobs-cursor"),
    pytest.param("GET", "/workers?limit=%C2%B2", None, {},
                 id="workers-limit"),
    pytest.param("GET", "/worker/contract?max=%C2%B2", None, {"X-Worker-Id": "zzzzzzzz"},
                 id="contract-max"),
    pytest.param("POST", "/job", b'{"function_id": "\\ud800", "runtime": "py"}', JSON,
                 id="job-function-id"),
    pytest.param("PUT", "/job", b'{"function_id": "\\udfff"}', {**JSON, "X-Job-Id": "zzzzzzzz"},
                 id="job-update"),
    pytest.param("POST", "/jobs", b'{"jobs": [{"function_id": "\\ud800", "runtime": "py"}]}',
                 JSON, id="jobs-batch"),
    pytest.param("PUT", "/jobs", b'{"reports": [{"job_id": "zzzzzzzz", "status": "running", '
                 b'"lease": "\\ud800"}]}', {**JSON, "X-Worker-Id": "zzzzzzzz"},
                 id="jobs-report"),
    pytest.param("POST", "/job", b"[" * 60000, JSON, id="deep-json"),
    pytest.param("POST", "/job", b'{"function_id": "\\u00e9", "runtime": "py"}', JSON,
                 id="escaped-non-ascii-is-fine"),
])
def test_no_client_input_answers_500(client: httpx.Client, method: str, path: str,
                                     body: bytes | None, headers: dict[str, str]) -> None:
    resp = client.request(method, path, content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    check(resp, path.split("?")[0])


# -- schemathesis ------------------------------------------------------------------------------

# Bounded and seeded, so CI stays quick and gives the same cases every run. The coverage phase
# (an unbounded walk of boundary values per operation) and the stateful phase are left out.
MAX_EXAMPLES = 20
STATEFUL_EXAMPLES = 25
FUZZ_CONFIG = schemathesis.Config.from_dict({
    "seed": 20261128,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"coverage": {"enabled": False}},
})
FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_schema_conformance, response_headers_conformance]
# The live feeds (GET /events, GET /job/log?follow=1) never end by design: tests/test_events.py
# checks their answers against the document.
schema = schemathesis.openapi.from_dict(copy.deepcopy(SPEC), config=FUZZ_CONFIG).exclude(
    path_regex="^/events$")


@schemathesis.deserializer("text/plain")
def _text(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> str:
    return response.content.decode()


@schemathesis.deserializer("multipart/form-data")
def _multipart(ctx: schemathesis.DeserializationContext,
               response: schemathesis.Response) -> dict[str, str]:
    fields = _multipart_fields(httpx.Response(
        response.status_code, headers={"content-type": response.headers["content-type"][0]},
        content=response.content))
    return {name: value.decode("latin-1") for name, value in fields.items()}


@pytest.fixture(scope="module")
def fuzz_broker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        BrokerProcess]:
    """A broker of its own: a short contract wait cap (a fuzzed ?wait= never holds a worker's
    request long) and a small upload limit (so 413 is reached)."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    proc = BrokerProcess(redis_url, data_dir, {"BROKER_CONTRACT_WAIT_MAX": "0.2",
                                               "BROKER_MAX_DATA_SIZE": "4096",
                                               "BROKER_ACCESS_LOG": "off"}).start()
    yield proc
    proc.stop()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
def test_schemathesis(case: schemathesis.Case[Any], fuzz_broker: BrokerProcess,
                      r: redis.Redis) -> None:
    case.call_and_validate(base_url=fuzz_broker.url, checks=FUZZ_CHECKS, timeout=10)


def test_schemathesis_stateful(fuzz_broker: BrokerProcess, r: redis.Redis) -> None:
    """Scenarios that follow the spec's links: register, then use the worker id; submit, then
    read and update the job; take a contract, then report under its lease; and so on."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": fuzz_broker.url, "timeout": 10}

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case[Any],
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=FUZZ_CHECKS, transport_kwargs=kwargs)

    Workflow.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=8,
                                   deadline=None, derandomize=True, database=None,
                                   suppress_health_check=list(HealthCheck)))
