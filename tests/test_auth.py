"""Access control: every cell of the role table, and no token ever in a log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from broker.http.auth import METRICS, REQUESTER, SELF, WORKER, Credentials
from broker.http.endpoint import roles
from broker.http.routes import ENDPOINTS
from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess

TOKENS = {REQUESTER: "requester-secret-4f1c", WORKER: "worker-secret-9b2e",
          METRICS: "metrics-secret-77aa"}
WRONG = "not-a-token-3c3c"


@pytest.fixture
def guarded(start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> Iterator[
        BrokerProcess]:
    worker_file = tmp_path / "worker.token"
    worker_file.write_text(TOKENS[WORKER] + "\n")
    yield start_broker(BROKER_REQUESTER_TOKEN=TOKENS[REQUESTER],
                       BROKER_WORKER_TOKEN_FILE=str(worker_file),
                       BROKER_METRICS_TOKEN=TOKENS[METRICS], BROKER_ACCESS_LOG="json",
                       BROKER_LOG_LEVEL="debug")


def _call(c: httpx.Client, method: str, path: str, token: str | None) -> httpx.Response:
    if token is None:
        headers = {}
    elif token.startswith("Basic "):  # another scheme altogether
        headers = {"Authorization": token}
    else:
        headers = {"Authorization": f"Bearer {token}"}
    resp = c.send(c.build_request(method, path, headers=headers), stream=True)
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        resp.close()  # the live feed never ends: its status is the answer
    else:
        resp.read()
    return resp


def _own_token(c: httpx.Client) -> tuple[str, str]:
    """Register a worker with the shared token: (its id, its own token)."""
    answer = c.post("/worker", json={"Runtime": ["sh"]},
                    headers={"Authorization": f"Bearer {TOKENS[WORKER]}"}).json()
    return answer["worker_id"], answer["worker_token"]


def test_every_cell_of_the_role_table(guarded: BrokerProcess) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        tokens = {**TOKENS, SELF: _own_token(c)[1]}
        for (method, path), allowed in roles(ENDPOINTS).items():
            for role, token in tokens.items():
                resp = _call(c, method, path, token)
                if not allowed or role in allowed:
                    assert resp.status_code not in (401, 403), (method, path, role, resp.text)
                else:
                    assert resp.status_code == 403, (method, path, role)
                    assert resp.json()["error"] == "forbidden"
            for token in (None, WRONG, "Basic x"):
                resp = _call(c, method, path, token)
                if allowed:
                    assert resp.status_code == 401, (method, path, token)
                    assert resp.json()["error"] == "unauthorized"
                    assert resp.headers["www-authenticate"].startswith("Bearer")
                else:
                    assert resp.status_code == 200, (method, path)


def test_worker_writes_need_the_workers_own_token(guarded: BrokerProcess) -> None:
    req = {"Authorization": f"Bearer {TOKENS[REQUESTER]}"}
    shared = {"Authorization": f"Bearer {TOKENS[WORKER]}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        worker, own = _own_token(c)
        wrk = {"Authorization": f"Bearer {own}"}
        job_id = c.post("/job", json={"function_id": "f", "runtime": "sh"},
                        headers=req).json()["job_id"]
        refused = c.get("/worker/contract", headers={**shared, "X-Worker-Id": worker})
        assert refused.status_code == 403 and "own token" in refused.json()["detail"]
        given = c.get("/worker/contract", headers=wrk).json()  # the token names the worker
        assert given["worker_id"] == worker
        as_requester = c.put("/job", json={"status": "succeeded"},
                             headers={**req, "X-Job-Id": job_id, "X-Worker-Id": worker})
        assert as_requester.status_code == 403
        done = c.put("/job", json={"status": "succeeded"},
                     headers={**wrk, "X-Job-Id": job_id, "X-Lease": given["lease"]})
        assert done.status_code == 204
        assert c.get("/job", headers={**req, "X-Job-Id": job_id}).json()["status"] == "succeeded"


def test_a_worker_acts_only_as_itself(guarded: BrokerProcess) -> None:
    req = {"Authorization": f"Bearer {TOKENS[REQUESTER]}"}
    shared = {"Authorization": f"Bearer {TOKENS[WORKER]}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        (a, a_token), (b, b_token) = _own_token(c), _own_token(c)
        assert a != b
        as_a, as_b = ({"Authorization": f"Bearer {t}"} for t in (a_token, b_token))
        code = c.post("/data", files={"file": ("f", b"echo hi")}, headers=req).text
        given = c.post("/data", files={"file": ("f", b"input")}, headers=req).text
        out = c.post("/data/reg", headers=req).text
        job_id = c.post("/job", json={"function_id": code, "runtime": "sh", "data1_id": given,
                                      "data2_id": out}, headers=req).json()["job_id"]
        contract = c.get("/worker/contract", headers=as_a).json()
        assert contract["job_id"] == job_id
        for data_id, answer in ((out, 409), (given, 403), (code, 403)):
            put = c.put("/data", files={"file": ("f", b"not yours")},
                        headers={**as_b, "X-Data-Id": data_id})
            assert put.status_code == answer, (data_id, put.text)
        assert c.put("/data", files={"file": ("f", b"x")},
                     headers={**shared, "X-Data-Id": out}).status_code == 403
        as_other = c.put("/job", json={"status": "succeeded"},
                         headers={**as_b, "X-Job-Id": job_id, "X-Worker-Id": a})
        assert as_other.status_code == 403
        assert c.delete("/worker", headers={**as_b, "X-Worker-Id": a}).status_code == 403
        assert c.get("/worker", headers={**as_b, "X-Worker-Id": a}).status_code == 403
        forged = a_token[:-4] + ("0000" if not a_token.endswith("0000") else "1111")
        assert c.get("/worker", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        put = c.put("/data", files={"file": ("f", b"output")},
                    headers={**as_a, "X-Data-Id": out, "X-Lease": contract["lease"]})
        assert put.status_code == 200, put.text
        assert c.put("/job", json={"status": "succeeded"},
                     headers={**as_a, "X-Job-Id": job_id}).status_code == 204
        assert c.get("/data", headers={**req, "X-Data-Id": given,
                                       "Accept": "application/octet-stream"}).content == b"input"
        assert c.get("/worker", headers=as_a).json()["worker_id"] == a
        assert c.delete("/worker", headers=as_b).status_code == 204


def test_no_token_ever_reaches_the_logs_or_a_job(guarded: BrokerProcess,
                                                 tmp_path: Path) -> None:
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKENS[WORKER])
    agent = AgentProcess(guarded.url, tmp_path / "agent.log", "--runtime", "python3",
                         "--token-file", str(token_file), "--log-level", "debug")
    req = {"Authorization": f"Bearer {TOKENS[REQUESTER]}"}
    try:
        agent.wait_for_log("registered as worker")
        with httpx.Client(base_url=guarded.url, timeout=30, headers=req) as c:
            code = b"import json, os\nprint(json.dumps(dict(os.environ)))\n"
            fn = c.post("/data", files={"file": ("f", code)}).text
            job_id = c.post("/job", json={"function_id": fn, "runtime": "python3"}).json()[
                "job_id"]
            for _ in range(300):
                body = c.get("/job", headers={"X-Job-Id": job_id}).json()
                if body["status"] == "succeeded":
                    break
                time.sleep(0.1)
            out = c.get("/data", headers={"X-Data-Id": body["data2_id"],
                                          "Accept": "application/octet-stream"}).text
            c.get("/job", headers={"Authorization": f"Bearer {WRONG}", "X-Job-Id": job_id})
            record = json.dumps(c.get("/job", headers={"X-Job-Id": job_id}).json())
    finally:
        agent.terminate()
    guarded.stop()
    worker = re.search(r"registered as worker (\w+)", agent.log()).group(1)  # type: ignore[union-attr]
    own = Credentials(TOKENS[WORKER]).mint(worker)
    for secret in (*TOKENS.values(), WRONG, own):
        assert secret not in guarded.log()
        assert secret not in agent.log()
        assert secret not in out and secret not in record
    assert '"status": 401' in guarded.log()  # the refused request was logged, its token not


def test_without_tokens_a_public_bind_is_warned_about(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker(BROKER_HOST="0.0.0.0")
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        assert c.post("/worker", json={"Runtime": ["sh"]}).status_code == 200
    proc.stop()
    assert "without both BROKER_REQUESTER_TOKEN and BROKER_WORKER_TOKEN" in proc.log()
