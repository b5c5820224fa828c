"""The requester CLI, run as a subprocess against a real broker and agent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from broker.client.api import BrokerClient
from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import job, requests_served, submit


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
               "--max-attempts", "1", "--wait")
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
    assert lines[0].split() == ["RUNTIME", "PENDING", "SCHEDULED", "RUNNING", "WORKERS",
                                "PAUSED"]
    assert lines[1].split() == ["sh", "1", "0", "0", "1", "-"]
    assert "Latest failures:" in status.stdout and "disk on fire" in status.stdout
    failed = cli(broker_proc.url, "jobs", "--status", "failed").stdout.splitlines()
    assert len(failed) == 2 and failed[1].split()[:3] == [given["job_id"], "sh", "failed"]
    pending = cli(broker_proc.url, "jobs", "--status", "pending").stdout
    assert waiting in pending and first not in pending
    workers = cli(broker_proc.url, "workers").stdout.splitlines()
    assert workers[1].split()[0] == worker


def test_the_command_line_loads_no_http_client_until_a_command_runs() -> None:
    heavy = ("httpx", "tqdm", "uvicorn", "starlette", "redis", "asyncio")
    code = ("import sys\nfrom broker.__main__ import _parser\n_parser()\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


def test_version_and_usage_errors(broker_proc: BrokerProcess, tmp_path: Path) -> None:
    version = cli(broker_proc.url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("broker 0.")
    lone = cli(broker_proc.url, "submit", "--runtime", "sh", "--function", "f.sh", "--output",
               str(tmp_path / "out"))
    assert lone.returncode == 2 and "--output needs --wait" in lone.stderr
    zero = cli(broker_proc.url, "submit", "--runtime", "sh", "--function", "f.sh",
               "--max-attempts", "0")
    assert zero.returncode == 2 and "--max-attempts" in zero.stderr


def test_submit_with_many_inputs_makes_a_job_each_in_one_post(
        broker_proc: BrokerProcess, agent: AgentProcess, served: httpx.Client,
        tmp_path: Path) -> None:
    fn = tmp_path / "f.py"
    fn.write_text("import sys\nsys.stdout.write(sys.stdin.read()[::-1])\n")
    inputs = []
    for i in range(3):
        inputs += ["--input", str(tmp_path / f"in{i}")]
        (tmp_path / f"in{i}").write_text(f"input {i}")
    posts = requests_served(broker_proc.url, "POST", "/jobs")
    done = cli(broker_proc.url, "submit", "--runtime", "python3", "--function", str(fn),
               *inputs, "--max-attempts", "2", "--timeout", "30", "--wait", "--output",
               str(tmp_path / "outs"))
    assert done.returncode == 0, done.stderr
    job_ids = done.stdout.split()
    assert len(job_ids) == 3 and requests_served(broker_proc.url, "POST", "/jobs") == posts + 1
    for i, job_id in enumerate(job_ids):
        assert (tmp_path / "outs" / job_id).read_text() == f"input {i}"[::-1]
        body = job(served, job_id)
        assert (body["max_attempts"], body["timeout"]) == (2, 30.0)


def test_submit_warns_when_no_live_worker_serves_the_runtime(
        broker_proc: BrokerProcess, client: httpx.Client, tmp_path: Path) -> None:
    fn = tmp_path / "f.rb"
    fn.write_text("puts 1\n")
    done = cli(broker_proc.url, "submit", "--runtime", "ruby-nobody", "--function", str(fn))
    assert done.returncode == 0
    assert "no live worker serves runtime 'ruby-nobody'" in done.stderr
    job_id = done.stdout.strip()
    waited = cli(broker_proc.url, "wait", job_id, "--wait-timeout", "0.5")
    assert waited.returncode == 1
    assert "no live worker serves runtime 'ruby-nobody'" in waited.stderr
    assert "still not finished" in waited.stderr and job(client, job_id)["status"] == "pending"


def test_cancel_rerun_and_delete_a_job(broker_proc: BrokerProcess, client: httpx.Client) -> None:
    job_id = submit(client, "nobody-runs-this")
    assert cli(broker_proc.url, "cancel", job_id).returncode == 0
    assert job(client, job_id)["status"] == "cancelled"
    assert cli(broker_proc.url, "rerun", job_id).returncode == 0
    assert job(client, job_id)["status"] == "pending"
    assert cli(broker_proc.url, "delete", job_id).returncode == 0
    gone = cli(broker_proc.url, "job", job_id)
    assert gone.returncode == 1 and gone.stderr.strip() == f"broker: unknown_job: no job {job_id}"


def test_wait_follows_an_existing_job_and_writes_its_output(
        broker_proc: BrokerProcess, agent: AgentProcess, client: httpx.Client,
        tmp_path: Path) -> None:
    code = client.post("/data", files={"file": ("f", b"print('waited for')\n")}).text
    job_id = client.post("/job", json={"function_id": code, "runtime": "python3"}).json()[
        "job_id"]
    done = cli(broker_proc.url, "wait", job_id, "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_text() == "waited for\n"


def test_jobs_pages_with_a_cursor_or_all_at_once(broker_proc: BrokerProcess,
                                                 client: httpx.Client) -> None:
    made = [submit(client, "paged") for _ in range(5)][::-1]  # newest first
    first = cli(broker_proc.url, "jobs", "--runtime", "paged", "--limit", "2")
    assert [line.split()[0] for line in first.stdout.splitlines()[1:]] == made[:2]
    hint = first.stderr.strip()
    assert hint.startswith("(more: broker jobs --runtime paged --limit 2 --cursor ")
    cursor = hint.split("--cursor ")[1].split(",")[0]
    second = cli(broker_proc.url, "jobs", "--runtime", "paged", "--limit", "2", "--cursor",
                 cursor)
    assert [line.split()[0] for line in second.stdout.splitlines()[1:]] == made[2:4]
    every = cli(broker_proc.url, "jobs", "--runtime", "paged", "--limit", "2", "--all")
    assert [line.split()[0] for line in every.stdout.splitlines()[1:]] == made
    assert every.stderr == ""


def test_errors_are_one_line_and_debug_shows_the_traceback(
        start_broker: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    proc = start_broker(BROKER_REQUESTER_TOKEN="the-requester-secret")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    runs = {
        "no token": [proc.url, "jobs"],
        "unreachable": ["http://127.0.0.1:9", "job", "abcdefgh"],
        "missing file": [proc.url, "submit", "--runtime", "sh", "--function",
                         str(tmp_path / "nope.sh")],
    }
    for what, (url, *args) in runs.items():
        done = subprocess.run([sys.executable, "-m", "broker", *args, "--broker", url],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, what
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("broker: "), done.stderr
    debug = subprocess.run([sys.executable, "-m", "broker", "jobs", "--broker", proc.url,
                            "--debug"], env=env, capture_output=True, text=True, timeout=60)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("broker: unauthorized: ")


def test_a_retried_upload_moves_its_progress_back_to_the_start(
        broker_proc: BrokerProcess, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(3 * 1024 * 1024))
    seen: list[int] = []

    class FailsOnce(httpx.AsyncHTTPTransport):
        """The real broker behind a connection that breaks once, after the whole body."""

        calls = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            FailsOnce.calls += 1
            if FailsOnce.calls == 1:
                await request.aread()
                raise httpx.ReadError("connection reset by the test")
            return await super().handle_async_request(request)

    async def upload() -> str:
        async with BrokerClient(broker_proc.url, transport=FailsOnce()) as client:
            return await client.upload(path, progress=seen.append)

    data_id = asyncio.run(upload())
    assert FailsOnce.calls == 2 and len(data_id) == 8
    assert max(seen) == path.stat().st_size  # never past the file's size
    restart = next(i for i in range(1, len(seen)) if seen[i] < seen[i - 1])
    assert seen[restart - 1] == path.stat().st_size and seen[-1] == path.stat().st_size
