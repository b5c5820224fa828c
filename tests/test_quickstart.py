"""The README's quick start, run as a newcomer types it: each shell block marked
`<!-- quickstart: NAME -->` is extracted and run in a copy of the repository, so a renamed flag
or a changed answer breaks the build instead of the user's first hour."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.brokerproc import free_port
from tests.helpers import quickstart_blocks, until

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEFAULT_URL = "http://127.0.0.1:8000"
# What a fresh clone holds that `pip install .` reads.
PACKAGE = ("pyproject.toml", "README.md", "constraints.txt", "broker", "worker_agent")


def _copy_of_the_repository(dest: Path) -> Path:
    dest.mkdir()
    for name in PACKAGE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def _bash(script: str, cwd: Path, env: dict[str, str],
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_readme_marks_the_install_the_session_the_agent_and_the_stack() -> None:
    blocks = quickstart_blocks(README.read_text())
    assert list(blocks) == ["install", "session", "agent", "pipeline", "compose"]
    install = blocks["install"].splitlines()
    assert shlex.split(install[0])[:4] == ["sudo", "apt-get", "install", "-y"]
    assert {"python3-venv", "redis-server"} <= set(shlex.split(install[0]))
    assert shlex.split(install[-1].split("#")[0]) == ["broker", "serve"]


@pytest.mark.slow
def test_the_quick_start_runs_as_written_from_a_fresh_copy(tmp_path: Path) -> None:
    blocks = quickstart_blocks(README.read_text())
    clone = _copy_of_the_repository(tmp_path / "clone")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BROKER_", "VIRTUAL_ENV")) and k != "REDIS_URL"}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if "/.venv/" not in p)
    # Debian's packages are this machine's already (the suite needs redis-server); the test
    # runs every other line, with the last one (the broker in the foreground) in the background.
    assert shutil.which("redis-server")
    install = blocks["install"].splitlines()
    _bash("\n".join(install[1:-1]), clone, env, timeout=300)
    env["PATH"] = f"{clone / '.venv' / 'bin'}:{env['PATH']}"
    with (tmp_path / "broker.log").open("wb") as log:
        broker = subprocess.Popen(["bash", "-c", install[-1]], cwd=clone,
                                  env={**env, "BROKER_PORT": str(port)}, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until(lambda: _ready(url, broker), timeout=30)
        session = _bash(blocks["session"].replace(DEFAULT_URL, url), clone, env)
        assert session.stdout.split() == ["succeeded", "HELLO"]
        agent = _bash(blocks["agent"], clone, {**env, "BROKER_URL": url})
        assert agent.stdout.strip().splitlines()[-1] == "HELLO"
        pipeline = _bash(blocks["pipeline"], clone, {**env, "BROKER_URL": url})
        assert pipeline.stdout.strip().splitlines()[-1] == "sum 55"
        assert (clone / "broker-data").is_dir()  # where the README says the data is
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        assert broker.wait(30) == 0, (tmp_path / "broker.log").read_text()


def _ready(url: str, broker: subprocess.Popen[bytes]) -> bool:
    assert broker.poll() is None, "the broker exited"
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
