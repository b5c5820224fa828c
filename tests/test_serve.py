from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from broker import config
from broker.client import tokens
from tests.brokerproc import BrokerProcess
from tests.helpers import contract, job, register, submit, until


def test_a_malformed_setting_stops_the_broker_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "BROKER_PORT": "eighty", "BROKER_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "broker", "serve"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "BROKER_PORT='eighty'" in done.stderr


def test_flags_beat_the_environment_which_beats_defaults() -> None:
    s = config.load({"port": "9001"}, {"BROKER_PORT": "9000", "BROKER_MAX_DATA_SIZE": "5",
                                      "REDIS_URL": "redis://h:1/0"})
    assert (s.port, s.max_data_size, s.redis_url, s.host) == (9001, 5, "redis://h:1/0",
                                                              "127.0.0.1")
    with pytest.raises(config.SettingsError, match="BROKER_CONTRACT_WAIT_MAX"):
        config.load({}, {"BROKER_CONTRACT_WAIT_MAX": "-1"})
    assert config.unknown_variables({"BROKER_PROT": "1", "BROKER_URL": "x"}) == ["BROKER_PROT"]


def test_without_redis_url_it_runs_its_own_redis_server_that_keeps_jobs(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(None, data).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = submit(c, "sh")
    finally:
        proc.stop()
    assert (data / "appendonlydir").is_dir()
    again = BrokerProcess(None, data).start()
    try:
        with httpx.Client(base_url=again.url, timeout=30) as c:
            assert job(c, job_id)["status"] == "pending"
    finally:
        again.stop()


def test_without_redis_server_it_falls_back_to_memory_and_says_so(tmp_path: Path) -> None:
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    (bare_path / "python").symlink_to(sys.executable)
    proc = BrokerProcess(None, tmp_path / "data", {"PATH": str(bare_path),
                                                   "BROKER_LOG_LEVEL": "info"}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = submit(c, "sh")
            assert job(c, job_id)["status"] == "pending"
    finally:
        proc.stop()
    assert "NOTHING WILL PERSIST" in proc.log()


def test_unknown_paths_and_methods_answer_in_the_one_error_shape(
        client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.patch("/worker")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"POST", "GET", "HEAD", "DELETE"}
    contract = client.post("/worker/contract")
    assert contract.status_code == 405


def test_a_head_of_the_contract_hands_out_nothing(client: httpx.Client) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    resp = client.head("/worker/contract", headers={"X-Worker-Id": worker})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"
    assert job(client, job_id)["status"] == "pending"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended as we looked
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _comm(pid: int) -> str:
    """The process's name, or "" once it is gone (children come and go as we look)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def _embedded_redis_pid(proc: BrokerProcess) -> int:
    [pid] = _children_named(proc, "redis-server")
    return pid


def test_a_second_broker_on_the_data_directory_refuses_and_touches_nothing(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = BrokerProcess(None, data).start()
    try:
        socket_before = (data / "redis.sock").stat().st_ino
        redis_pid = _embedded_redis_pid(first)
        env = {**first.env, "BROKER_PORT": "0"}
        second = subprocess.run([sys.executable, "-m", "broker", "serve"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and first.proc is not None
        assert f"in use by another broker (pid {first.proc.pid})" in second.stderr
        assert str(data.resolve()) in second.stderr and "Traceback" not in second.stderr
        assert (data / "redis.sock").stat().st_ino == socket_before
        assert _embedded_redis_pid(first) == redis_pid
        with httpx.Client(base_url=first.url, timeout=30) as c:
            answers = {c.get("/readyz").status_code for _ in range(50)}
            job_id = submit(c, "sh")
            assert answers == {200} and job(c, job_id)["status"] == "pending"
    finally:
        first.stop()


def test_brokers_on_one_redis_share_a_data_directory_that_an_embedded_one_cannot_join(
        redis_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shared = [BrokerProcess(redis_url, data).start() for _ in range(2)]
    try:
        lone = subprocess.run([sys.executable, "-m", "broker", "serve"],
                              env={**BrokerProcess(None, data).env, "BROKER_PORT": "0"},
                              capture_output=True, text=True, timeout=30)
        assert lone.returncode == 1 and "brokers sharing a Redis" in lone.stderr
        for proc in shared:
            assert httpx.get(proc.url + "/readyz", timeout=10).status_code == 200
    finally:
        for proc in shared:
            proc.stop()


def test_the_embedded_redis_is_restarted_when_it_dies_and_keeps_the_jobs(
        tmp_path: Path) -> None:
    proc = BrokerProcess(None, tmp_path / "data", {"BROKER_LOG_LEVEL": "info"}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = submit(c, "sh")
            dead = _embedded_redis_pid(proc)
            os.kill(dead, signal.SIGKILL)
            until(lambda: _children_named(proc, "redis-server") not in ([], [dead]))
            until(lambda: c.get("/readyz").status_code == 200)
            assert job(c, job_id)["status"] == "pending"
            assert submit(c, "sh")
        assert not Path(f"/proc/{dead}").exists()  # reaped, not left defunct
        # The supervisor logs the restart once the new server answers; the broker may have
        # answered /readyz through it a moment before.
        until(lambda: "embedded redis-server restarted" in proc.log())
        assert f"embedded redis-server (pid {dead}) was killed by SIGKILL" in proc.log()
    finally:
        assert proc.stop() == 0


def _children_named(proc: BrokerProcess, name: str) -> list[int]:
    assert proc.proc is not None
    return [c for c in _children(proc.proc.pid) if _comm(c) == name]


def test_a_broker_whose_embedded_redis_keeps_dying_exits_non_zero(tmp_path: Path) -> None:
    real = shutil.which("redis-server")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    once = tmp_path / "started-once"
    fake = bin_dir / "redis-server"  # starts the real one the first time only
    fake.write_text(f"#!/bin/sh\n[ -e {once} ] && {{ echo 'no more' >&2; exit 1; }}\n"
                    f"touch {once}\nexec {real} \"$@\"\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "BROKER_LOG_LEVEL": "info"}
    proc = BrokerProcess(None, tmp_path / "data", env).start()
    try:
        assert proc.proc is not None
        os.kill(_embedded_redis_pid(proc), signal.SIGKILL)
        assert proc.proc.wait(60) == 1
        assert "giving up; the broker stops" in proc.log()
    finally:
        proc.kill()


def test_stopping_the_broker_answers_waiting_long_polls_at_once(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis) -> None:
    proc = start_broker(BROKER_CONTRACT_WAIT_MAX="300", BROKER_LOG_LEVEL="info")
    with httpx.Client(base_url=proc.url, timeout=600) as c:
        worker = register(c, "sh")
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(contract, c, worker, wait=300)
            until(lambda: r.exists("broker:waiting:sh") == 1)
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(30) == 0  # well before the poll's 300 s were up
            assert poll.result().status_code == 204
    assert f"data directory {proc.data_dir.resolve()}" in proc.log()


def _raw_exchange(port: int, chunks: list[bytes], pause: float = 0.0) -> bytes:
    """Send `chunks` on a fresh connection (pausing between them) and read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for chunk in chunks:
            with contextlib.suppress(OSError):  # the broker may close before all is sent
                sock.sendall(chunk)
            time.sleep(pause)
        answer = b""
        with contextlib.suppress(OSError):
            while part := sock.recv(65536):
                answer += part
        return answer


def test_request_heads_are_bounded_in_size_and_time(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker(BROKER_MAX_HEADER_BYTES="8192", BROKER_HEADER_TIMEOUT="1")
    line = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    huge = _raw_exchange(proc.port, [line, b"X-Big: ", *[b"a" * 65536] * 16, b"\r\n\r\n"])
    assert huge.startswith(b"HTTP/1.1 431 ")
    assert json.loads(huge.split(b"\r\n\r\n", 1)[1])["error"] == "header_too_large"
    slow = _raw_exchange(proc.port, [line, b"X-Slow: 1\r\n", b"X-Slow: 2\r\n"], pause=0.7)
    assert slow.startswith(b"HTTP/1.1 408 ")
    assert json.loads(slow.split(b"\r\n\r\n", 1)[1])["error"] == "header_timeout"
    assert _raw_exchange(proc.port, []) == b""  # connected, sent nothing: closed
    fine = httpx.get(proc.url + "/healthz", headers={"X-Ok": "b" * 6000}, timeout=10)
    assert fine.status_code == 200


def test_a_token_and_its_file_together_are_refused_by_one_rule_naming_real_flags(
        tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    with pytest.raises(config.SettingsError,
                       match="--requester-token and --requester-token-file"):
        config.load({"requester_token": "x", "requester_token_file": str(token_file)}, {})
    with pytest.raises(config.SettingsError, match="BROKER_WORKER_TOKEN_FILE: cannot read"):
        config.load({}, {"BROKER_WORKER_TOKEN_FILE": str(tmp_path / "nope")})
    both = {"BROKER_REQUESTER_TOKEN": "y", "BROKER_REQUESTER_TOKEN_FILE": str(token_file)}
    with pytest.raises(ValueError, match="BROKER_REQUESTER_TOKEN and BROKER_REQUESTER_TOKEN_FILE"):
        tokens.resolve(None, None, tokens.REQUESTER_ENV, both)
    with pytest.raises(ValueError, match="--token and --token-file"):
        tokens.resolve("x", token_file, tokens.REQUESTER_ENV, {})
    assert tokens.resolve(None, token_file, tokens.REQUESTER_ENV, {}) == "from-a-file"
    assert tokens.resolve("flag", None, tokens.REQUESTER_ENV, both) == "flag"  # flags first
