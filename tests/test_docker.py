"""The compose stack on a real Docker engine, brought up exactly as the README tells a user:
its compose quick start is extracted and run (image built from the Dockerfile, two workers, a
job submitted through the CLI from the host with the requester token, then `down`). After `up`
again the first job and its output are still there, both workers register, and six more jobs
through the CLI all succeed. Then the broker container is killed (kill -9 of its process: the
restart policy brings it back) while a job runs, and the job still finishes.

Where no engine answers (`docker info` fails), the test is skipped and says so; `.ci/run`
starts one with ../shared/docker/engine-up where the machine provides it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.brokerproc import free_port
from tests.helpers import quickstart_blocks, until

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "broker-data", ".env",
                                 "*.egg-info", "build", ".*_cache")


def _engine_missing() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return "no Docker engine answers (docker info failed)"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                             timeout=60)
    return None if compose.returncode == 0 else "the docker compose plugin is missing"


class Stack:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": f"brokertest{secrets.token_hex(3)}",
                    "BROKER_PUBLISH_PORT": str(self.port), "BROKER_URL": self.url,
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for name in ("REDIS_PASSWORD", "BROKER_REQUESTER_TOKEN", "BROKER_WORKER_TOKEN"):
            self.env.pop(name, None)

    def run(self, script: str, timeout: float = 600) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def cli(self, *args: str) -> str:
        return self.run(" ".join(["export BROKER_REQUESTER_TOKEN=$(sed -n "
                                  "'s/^BROKER_REQUESTER_TOKEN=//p' .env);", "broker", *args]))

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    missing = _engine_missing()
    if missing:
        pytest.skip(f"the compose stack on a real engine not run: {missing}")
    directory = tmp_path / "clone"
    shutil.copytree(ROOT, directory, ignore=SKIPPED)
    s = Stack(directory)
    try:
        yield s
    finally:
        subprocess.run(["docker", "compose", "down", "-v", "--timeout", "5"], cwd=directory,
                       env=s.env, capture_output=True, timeout=180)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_compose_quick_start_runs_on_a_real_engine_and_survives_a_broker_kill(
        stack: Stack) -> None:
    stack.run("echo 'print(input().upper())' > f.py\necho hello > in.txt")
    out = stack.run(quickstart_blocks((ROOT / "README.md").read_text())["compose"])
    # Image builds print to stdout too: the job id and the output are the last two lines.
    first_job, hello = out.splitlines()[-2:]
    assert hello == "HELLO", out

    # down, then up: the volumes kept the job and its output.
    stack.run("docker compose up -d --wait broker\ndocker compose up -d --scale worker=2")
    kept = json.loads(stack.cli("job", first_job))
    assert kept["status"] == "succeeded"
    stack.cli("data", "get", kept["data2_id"], "-o", "kept.out")
    assert (stack.dir / "kept.out").read_text() == "HELLO\n"

    # Two worker containers, each registered; several jobs through the CLI, every output right.
    assert len(stack.run("docker compose ps -q worker").split()) == 2
    until(lambda: len(stack.cli("workers").splitlines()) - 1 >= 2, timeout=60)  # a header, rows
    words = [f"word{i}" for i in range(6)]
    for word in words:
        (stack.dir / f"{word}.txt").write_text(word + "\n")
    inputs = " ".join(f"--input {word}.txt" for word in words)
    ids = stack.cli("submit", "--runtime", "python3", "--function", "f.py", inputs, "--wait",
                    "--output", "outs").split()
    assert len(ids) == 6
    got = sorted((stack.dir / "outs" / job).read_text() for job in ids)
    assert got == sorted(word.upper() + "\n" for word in words)

    # The image ships the dashboard: its page, its script and its vendored library.
    for path in ("/ui", "/ui/static/ui.js", "/ui/static/vendor/htmx-2.0.11.min.js"):
        assert httpx.get(stack.url + path, timeout=5).status_code == 200, path

    # The webhook notifier runs beside them, and its healthcheck (broker notifier --check)
    # passes: rq has its heartbeat.
    def notifier_health() -> str:
        return stack.run("docker inspect -f '{{.State.Health.Status}}' "
                         "$(docker compose ps -q notifier)").strip()
    until(lambda: notifier_health() == "healthy", timeout=90)

    # The broker container dies (kill -9) while a job runs; the job still finishes.
    stack.run("printf 'sleep 3\\necho slow done\\n' > slow.sh")
    job_id = stack.cli("submit", "--runtime", "sh", "--function", "slow.sh").strip()
    until(lambda: json.loads(stack.cli("job", job_id))["status"] == "running", timeout=60)
    stack.run("kill -9 $(docker inspect -f '{{.State.Pid}}' "
              "$(docker compose ps -q broker))")
    until(lambda: int(stack.run("docker inspect -f '{{.RestartCount}}' "
                                "$(docker compose ps -q broker)")) >= 1, timeout=60)
    until(stack.ready, timeout=120)  # the restart policy brought it back
    stack.cli("wait", job_id, "--output", "slow.out", "--wait-timeout", "120")
    assert (stack.dir / "slow.out").read_text() == "slow done\n"
