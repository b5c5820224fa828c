"""End to end: a real broker, real agents, real functions."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import finished, job, output, requests_served, run_job, until

UPPER_PY = b"import sys\nsys.stdout.write(sys.stdin.read().upper())\n"


@contextlib.contextmanager
def agents_on(url: str, logs: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents on the broker at `url`, each registered before it is handed over; all
    killed at the end."""
    started: list[AgentProcess] = []

    def start(*args: str) -> AgentProcess:
        agent = AgentProcess(url, logs / f"agent{len(started)}.log", *args)
        started.append(agent)
        agent.wait_for_log("registered as worker")
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.kill()


@pytest.fixture
def agents(broker_proc: BrokerProcess, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    with agents_on(broker_proc.url, tmp_path) as start:
        yield start


def test_an_agent_takes_its_next_job_with_each_report(
        served: httpx.Client, broker_proc: BrokerProcess,
        agents: Callable[..., AgentProcess]) -> None:
    """With a backlog, each final report (PUT /job?next=1) hands the agent its next job: a
    job costs it one request after the first contract, not two."""
    words = [f"word{i}" for i in range(8)]
    ids = [run_job(served, "python3", UPPER_PY, w.encode()) for w in words]
    polls = requests_served(broker_proc.url, "GET", "/worker/contract")
    agent = agents("--runtime", "python3")
    outs = [output(served, finished(served, job_id)["data2_id"]) for job_id in ids]
    assert outs == [w.upper().encode() for w in words]
    until(lambda: "contract" in agent.log())
    # The agent's first poll took one job; the other seven came with the reports.
    assert requests_served(broker_proc.url, "GET", "/worker/contract") - polls <= 3
    assert agent.log().count(" contract: runtime python3") == 8


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
    job_id = run_job(client, "sh", b"echo starting >&2\necho 'boom: bad input' >&2\nexit 3\n",
                     max_attempts=1)
    body = finished(client, job_id)
    assert body["status"] == "failed"
    assert "exit code 3" in body["error"] and "boom: bad input" in body["error"]
    assert body["data2_id"] == ""


def test_a_function_past_its_time_limit_is_killed_and_fails(
        client: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "sh", "--time-limit", "1")
    started = time.monotonic()
    job_id = run_job(client, "sh", b"sleep 60 &\nsleep 60\n", max_attempts=1)
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
            pid_file = tmp_path / "pid"
            code = f"echo $$ > {pid_file}\nsleep 2\ntouch {marker}\necho out\n"
            job_id = run_job(c, "sh", code.encode())
            until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
            resp = c.put("/job", headers={"X-Job-Id": job_id}, json={"status": "cancelled"})
            assert resp.status_code == 204
            agent.wait_for_log(f"job {job_id} lost")
            pid = int(pid_file.read_text())
            until(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)  # killed, not done
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
    job_id = run_job(client, "python3", b"block = bytearray(600 * 1024 * 1024)\n",
                     max_attempts=1)
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


@pytest.fixture
def quick_retries(start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> Iterator[
        tuple[httpx.Client, Callable[..., AgentProcess]]]:
    """A broker that runs a failed attempt again after 50 ms, and agents on it."""
    proc = start_broker(BROKER_RETRY_BASE="0.05", BROKER_SWEEP_INTERVAL="0.05")
    with agents_on(proc.url, tmp_path) as agent, httpx.Client(base_url=proc.url,
                                                               timeout=30) as c:
        yield c, agent


def test_a_failed_attempt_runs_again_and_may_succeed(
        quick_retries: tuple[httpx.Client, Callable[..., AgentProcess]], tmp_path: Path) -> None:
    client, agent = quick_retries
    agent("--runtime", "sh")
    marker = tmp_path / "tried-once"
    code = f"[ -e {marker} ] && {{ echo second; exit 0; }}\ntouch {marker}\nexit 1\n"
    body = finished(client, run_job(client, "sh", code.encode()))
    assert (body["status"], body["attempts"]) == ("succeeded", 2)
    assert output(client, body["data2_id"]).strip() == b"second"


def test_a_timeout_runs_again_until_attempts_run_out(
        quick_retries: tuple[httpx.Client, Callable[..., AgentProcess]]) -> None:
    client, agent = quick_retries
    agent("--runtime", "sh", "--time-limit", "0.3")
    body = finished(client, run_job(client, "sh", b"sleep 30\n", max_attempts=2))
    assert (body["status"], body["attempts"]) == ("failed", 2)
    assert body["error"].startswith("timeout")


def test_a_function_exiting_100_fails_at_once_without_a_retry(
        quick_retries: tuple[httpx.Client, Callable[..., AgentProcess]]) -> None:
    client, agent = quick_retries
    agent("--runtime", "sh")
    body = finished(client, run_job(client, "sh", b"echo 'bad input' >&2\nexit 100\n"))
    assert (body["status"], body["attempts"], body["max_attempts"]) == ("failed", 1, 3)
    assert "exit code 100" in body["error"] and "bad input" in body["error"]


def test_a_function_that_cannot_start_fails_for_good_and_the_agent_goes_on(
        quick_retries: tuple[httpx.Client, Callable[..., AgentProcess]], tmp_path: Path) -> None:
    client, agent = quick_retries
    program = tmp_path / "rt"
    program.write_text("#!/bin/sh\nexec sh \"$1\"\n")
    program.chmod(0o755)
    running = agent("--runtime", f"rt={program} {{function}}", "--runtime", "sh")
    program.unlink()  # there at start, gone when the job comes
    body = finished(client, run_job(client, "rt", b"echo never\n"))
    assert (body["status"], body["attempts"]) == ("failed", 1)
    assert f"cannot start the function: program '{program}' not found" in body["error"]
    assert finished(client, run_job(client, "sh", b"echo still here\n"))["status"] == \
        "succeeded"
    assert running.terminate() == 0
    assert "Traceback" not in running.log() and "never retrieved" not in running.log()


@pytest.mark.parametrize(("args", "says"), [
    (["--runtime", "sh", "--concurrency", "0"], "--concurrency must be a whole number"),
    (["--runtime", "rb=nosuchbinary {function}"], "program 'nosuchbinary' not found"),
    (["--runtime", "sh", "--grace", "-1"], "--grace must be a number"),
    (["--runtime", "sh", "--broker", "localhost:8000"], "--broker must be an http"),
])
def test_nonsense_options_are_refused_at_start_in_one_line(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "worker_agent", *args], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr


def test_a_config_file_with_an_unknown_key_or_a_wrong_type_is_refused(tmp_path: Path) -> None:
    for text, says in (("concurency = 4\n", "unknown option 'concurency'"),
                       ("concurrency = 'four'\n", "--concurrency must be a whole number"),
                       ("[runtimes]\nrb = 3\n", "the template must be a string")):
        config = tmp_path / "agent.toml"
        config.write_text(text)
        done = subprocess.run([sys.executable, "-m", "worker_agent", "--runtime", "sh",
                               "--config", str(config)], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2 and says in done.stderr, done.stderr


def test_a_refused_token_stops_the_agent_with_one_line(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker(BROKER_WORKER_TOKEN="the-worker-secret")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    done = subprocess.run([sys.executable, "-m", "worker_agent", "--broker", proc.url,
                           "--runtime", "sh"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "refused the worker token (401 unauthorized" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
