"""The requester CLI, run as a subprocess against a real broker and agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BROKER_URL": url}
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def agent(broker_proc: BrokerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(broker_proc.url, tmp_path / "agent.log", "--runtime", "python3")
    a.wait_for_log("registered as worker")
    yield a
    a.kill()


def test_submit_wait_writes_the_output(broker_proc: BrokerProcess, agent: AgentProcess,
                                       client: httpx.Client, tmp_path: Path) -> None:
    fn = tmp_path / "f.py"
    fn.write_text("import sys\nsys.stdout.write(sys.stdin.read().upper())\n")
    data = tmp_path / "in.txt"
    data.write_text("from the cli")
    out = tmp_path / "out.txt"
    done = cli(broker_proc.url, "submit", "--runtime", "python3", "--function", str(fn),
               "--input", str(data), "--wait", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "FROM THE CLI"
    job_id = done.stdout.strip()
    shown = cli(broker_proc.url, "job", job_id)
    assert json.loads(shown.stdout)["status"] == "succeeded"


def test_submit_wait_exits_nonzero_with_the_jobs_error(
        broker_proc: BrokerProcess, agent: AgentProcess, client: httpx.Client,
        tmp_path: Path) -> None:
    fn = tmp_path / "bad.py"
    fn.write_text("import sys\nprint('no good', file=sys.stderr)\nsys.exit(4)\n")
    done = cli(broker_proc.url, "submit", "--runtime", "python3", "--function", str(fn),
               "--wait")
    assert done.returncode == 1
    assert "failed" in done.stderr and "exit code 4" in done.stderr


def test_data_put_and_get_round_trip(broker_proc: BrokerProcess, client: httpx.Client,
                                     tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(300_000))
    put = cli(broker_proc.url, "data", "put", str(src))
    assert put.returncode == 0, put.stderr
    data_id = put.stdout.strip()
    dest = tmp_path / "back.bin"
    get = cli(broker_proc.url, "data", "get", data_id, "-o", str(dest))
    assert get.returncode == 0, get.stderr
    assert dest.read_bytes() == src.read_bytes()
    missing = cli(broker_proc.url, "job", "zzzzzzzz")
    assert missing.returncode == 1 and "unknown_job" in missing.stderr


def test_status_jobs_and_workers_print_tables(broker_proc: BrokerProcess,
                                              client: httpx.Client) -> None:
    worker = client.post("/worker", json={"Runtime": ["sh"]}).json()["worker_id"]
    first = client.post("/job", json={"function_id": "f", "runtime": "sh"}).json()["job_id"]
    waiting = client.post("/job", json={"function_id": "f", "runtime": "sh"}).json()["job_id"]
    given = client.get("/worker/contract", headers={"X-Worker-Id": worker}).json()
    assert given["job_id"] == first
    client.put("/job", headers={"X-Job-Id": given["job_id"], "X-Worker-Id": worker},
               json={"status": "failed", "error": "disk on fire\nmore", "retry": False})
    status = cli(broker_proc.url, "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["RUNTIME", "PENDING", "RUNNING", "WORKERS"]
    assert lines[1].split() == ["sh", "1", "0", "1"]
    assert "Latest failures:" in status.stdout and "disk on fire" in status.stdout
    failed = cli(broker_proc.url, "jobs", "--status", "failed").stdout.splitlines()
    assert len(failed) == 2 and failed[1].split()[:3] == [given["job_id"], "sh", "failed"]
    pending = cli(broker_proc.url, "jobs", "--status", "pending").stdout
    assert waiting in pending and first not in pending
    workers = cli(broker_proc.url, "workers").stdout.splitlines()
    assert workers[1].split()[0] == worker
