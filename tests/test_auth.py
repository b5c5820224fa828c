"""Access control: every cell of the role table, and no token ever in a log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from broker.auth import METRICS, REQUESTER, ROLES, WORKER
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
    return c.request(method, path, headers=headers)


def test_every_cell_of_the_role_table(guarded: BrokerProcess) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for (method, path), roles in ROLES.items():
            for role, token in TOKENS.items():
                resp = _call(c, method, path, token)
                if not roles or role in roles:
                    assert resp.status_code not in (401, 403), (method, path, role, resp.text)
                else:
                    assert resp.status_code == 403, (method, path, role)
                    assert resp.json()["error"] == "forbidden"
            for token in (None, WRONG, "Basic x"):
                resp = _call(c, method, path, token)
                if roles:
                    assert resp.status_code == 401, (method, path, token)
                    assert resp.json()["error"] == "unauthorized"
                    assert resp.headers["www-authenticate"].startswith("Bearer")
                else:
                    assert resp.status_code == 200, (method, path)


def test_worker_writes_need_the_worker_token_and_a_worker_id(guarded: BrokerProcess) -> None:
    req = {"Authorization": f"Bearer {TOKENS[REQUESTER]}"}
    wrk = {"Authorization": f"Bearer {TOKENS[WORKER]}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        worker = c.post("/worker", json={"Runtime": ["sh"]}, headers=wrk).json()["worker_id"]
        job_id = c.post("/job", json={"function_id": "f", "runtime": "sh"},
                        headers=req).json()["job_id"]
        given = c.get("/worker/contract", headers={**wrk, "X-Worker-Id": worker}).json()
        as_requester = c.put("/job", json={"status": "succeeded"},
                             headers={**req, "X-Job-Id": job_id, "X-Worker-Id": worker})
        assert as_requester.status_code == 403
        anonymous_worker = c.put("/job", json={"status": "cancelled"},
                                 headers={**wrk, "X-Job-Id": job_id})
        assert anonymous_worker.status_code == 403
        done = c.put("/job", json={"status": "succeeded"},
                     headers={**wrk, "X-Job-Id": job_id, "X-Worker-Id": worker,
                              "X-Lease": given["lease"]})
        assert done.status_code == 204
        assert c.get("/job", headers={**req, "X-Job-Id": job_id}).json()["status"] == "succeeded"


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
    for secret in (*TOKENS.values(), WRONG):
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
