"""End to end: a real broker, real agents, real functions."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import job, upload

UPPER_PY = b"import sys\nsys.stdout.write(sys.stdin.read().upper())\n"


@pytest.fixture
def agents(broker_proc: BrokerProcess, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(*args: str) -> AgentProcess:
        agent = AgentProcess(broker_proc.url, tmp_path / f"agent{len(started)}.log", *args)
        started.append(agent)
        agent.wait_for_log("registered as worker")
        return agent

    yield start
    for agent in started:
        agent.kill()


def run_job(client: httpx.Client, runtime: str, code: bytes, data: bytes = b"",
            **fields: str) -> str:
    body = {"function_id": upload(client, code), "runtime": runtime,
            "data1_id": upload(client, data) if data else "", **fields}
    resp = client.post("/job", json=body)
    assert resp.status_code == 200, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def finished(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = job(client, job_id)
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body['status']}"
        time.sleep(0.05)


def output(client: httpx.Client, data_id: str) -> bytes:
    resp = client.get("/data", headers={"X-Data-Id": data_id,
                                        "Accept": "application/octet-stream"})
    assert resp.status_code == 200
    return resp.content


def test_two_agents_run_python_and_shell_functions(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    py = agents("--runtime", "python3")
    sh = agents("--runtime", "sh")
    upper = run_job(client, "python3", UPPER_PY, b"hello broker")
    count = run_job(client, "sh", b"wc -c | tr -d ' '\n", b"12345")
    up, wc = finished(client, upper), finished(client, count)
    assert up["status"] == "succeeded" and wc["status"] == "succeeded"
    assert output(client, up["data2_id"]) == b"HELLO BROKER"
    assert output(client, wc["data2_id"]).strip() == b"5"
    assert up["worker_id"] != wc["worker_id"]
    for agent in (py, sh):
        assert "contract" in agent.log() and "finish" in agent.log()


def test_a_failing_function_fails_the_job_with_its_exit_code_and_stderr(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "sh")
    job_id = run_job(client, "sh", b"echo starting >&2\necho 'boom: bad input' >&2\nexit 3\n")
    body = finished(client, job_id)
    assert body["status"] == "failed"
    assert "exit code 3" in body["error"] and "boom: bad input" in body["error"]
    assert body["data2_id"] == ""


def test_a_function_past_its_time_limit_is_killed_and_fails(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "sh", "--time-limit", "1")
    started = time.monotonic()
    job_id = run_job(client, "sh", b"sleep 60 &\nsleep 60\n")
    body = finished(client, job_id)
    assert body["status"] == "failed" and body["error"].startswith("timeout")
    assert time.monotonic() - started < 30


def test_a_function_writing_past_the_output_limit_fails(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3", "--output-limit", "100000")
    job_id = run_job(client, "python3", b"import sys\nsys.stdout.write('x' * 1000000)\n")
    body = finished(client, job_id)
    assert body["status"] == "failed" and "output_too_large" in body["error"]


def test_output_goes_to_a_preset_data2_id_and_broker_output_is_honoured(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3")
    slot = client.post("/data/reg").text.strip()
    code = (b"import os\nopen(os.environ['BROKER_OUTPUT'], 'w').write("
            b"open(os.environ['BROKER_INPUT']).read()[::-1])\nprint('ignored')\n")
    job_id = run_job(client, "python3", code, b"abc", data2_id=slot)
    body = finished(client, job_id)
    assert body["status"] == "succeeded" and body["data2_id"] == slot
    assert output(client, slot) == b"cba"


def test_the_function_sees_only_a_scrubbed_environment(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3")
    code = b"import json, os\nprint(json.dumps(dict(os.environ)))\n"
    body = finished(client, run_job(client, "python3", code))
    env = json.loads(output(client, body["data2_id"]))
    assert set(env) <= {"PATH", "HOME", "LANG", "BROKER_JOB_ID", "BROKER_INPUT",
                        "BROKER_OUTPUT", "LC_CTYPE"}
    assert env["BROKER_JOB_ID"] == body["job_id"]
    assert "must-not-leak" not in json.dumps(env)


def test_sigterm_lets_a_short_job_finish_and_gives_a_long_one_back(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agent = agents("--runtime", "sh", "--concurrency", "2", "--grace", "2")
    quick = run_job(client, "sh", b"sleep 0.5\necho done\n")
    slow = run_job(client, "sh", b"sleep 60\n")
    agent.wait_for_log(f"job {quick} start")
    agent.wait_for_log(f"job {slow} start")
    assert agent.terminate() == 0
    assert finished(client, quick, timeout=5)["status"] == "succeeded"
    back = job(client, slow)
    assert back["status"] == "pending" and back["worker_id"] is None
    assert "given back" in agent.log() and "unregistered" in agent.log()
    worker_id = re.search(r"registered as worker (\w+)", agent.log()).group(1)  # type: ignore[union-attr]
    assert client.get("/worker", headers={"X-Worker-Id": worker_id}).status_code == 404


def test_a_cancelled_job_is_killed_and_nothing_is_uploaded(
        start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    proc = start_broker(BROKER_WORKER_TIMEOUT="0.6")  # the broker asks for 0.2 s heartbeats
    agent = AgentProcess(proc.url, tmp_path / "cancel-agent.log", "--runtime", "sh")
    marker = tmp_path / "still-running"
    try:
        agent.wait_for_log("registered as worker")
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = run_job(c, "sh", f"sleep 2\ntouch {marker}\necho out\n".encode())
            agent.wait_for_log(f"job {job_id} start")
            resp = c.put("/job", headers={"X-Job-Id": job_id}, json={"status": "cancelled"})
            assert resp.status_code == 204
            agent.wait_for_log(f"job {job_id} lost")
            time.sleep(2.5)
            assert not marker.exists(), "the function's process group was not killed"
            body = job(c, job_id)
            assert body["status"] == "cancelled" and body["data2_id"] == ""
    finally:
        agent.kill()


def test_an_agent_started_before_its_broker_waits_for_it(tmp_path: Path) -> None:
    proc = BrokerProcess(None, tmp_path / "late-data")  # not started yet: port is free
    agent = AgentProcess(proc.url, tmp_path / "late-agent.log", "--runtime", "sh")
    try:
        agent.wait_for_log("cannot register")
        proc.start()
        agent.wait_for_log("registered as worker", timeout=30)
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            assert finished(c, run_job(c, "sh", b"echo hi\n"))["status"] == "succeeded"
    finally:
        agent.kill()
        proc.stop()


def test_a_function_over_its_memory_limit_fails(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3", "--memory-limit", str(200 * 1024**2))
    job_id = run_job(client, "python3", b"block = bytearray(600 * 1024 * 1024)\n")
    body = finished(client, job_id)
    assert body["status"] == "failed" and "MemoryError" in body["error"]


def test_an_agent_the_broker_forgot_registers_again(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agent = agents("--runtime", "sh", "--wait", "0.5")
    first = re.search(r"registered as worker (\w+)", agent.log()).group(1)  # type: ignore[union-attr]
    assert client.delete("/worker", headers={"X-Worker-Id": first}).status_code == 204
    agent.wait_for_log("registering again")
    agent.wait_for_log("registered as worker", timeout=20)
    assert finished(client, run_job(client, "sh", b"echo again\n"))["status"] == "succeeded"


def test_a_result_survives_a_broker_restart_during_the_run(
        start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    proc = start_broker()
    agent = AgentProcess(proc.url, tmp_path / "restart-agent.log", "--runtime", "sh",
                         "--heartbeat", "0.3")
    try:
        agent.wait_for_log("registered as worker")
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = run_job(c, "sh", b"sleep 2\necho survived\n")
            agent.wait_for_log(f"job {job_id} start")
            proc.stop()
            agent.wait_for_log("retrying the delivery", timeout=30)
            proc.start()
            body = finished(c, job_id, timeout=60)
            assert body["status"] == "succeeded", body
            assert output(c, body["data2_id"]).strip() == b"survived"
    finally:
        agent.kill()
