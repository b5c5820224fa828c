"""The processes a run owns: one redis-server, broker and floor servers, peer workers.

Every child is started in its own session and recorded in a `Procs` registry, which stops them
all (SIGTERM, then SIGKILL) when the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Usage:
    """CPU use of some processes over a `with` block, as shares of one core."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.shares: list[float] = []

    def __enter__(self) -> Usage:
        self._wall = time.monotonic()
        self._cpu = [cpu_seconds(p) for p in self.pids]
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._wall
        self.shares = [(cpu_seconds(p) - c) / wall if wall else 0.0
                       for p, c in zip(self.pids, self._cpu, strict=True)]


class Procs:
    """Children of this run; `stop_all` ends each one and its process group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.children.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        else:  # the leader is gone; helpers it forked may not be
            _signal_group(proc, signal.SIGKILL)
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        self.stop_all_but(None)

    def stop_all_but(self, keep: subprocess.Popen[bytes] | None) -> None:
        for proc in reversed(list(self.children)):
            if proc is not keep:
                self.stop(proc, grace=3.0)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session made the child its group's leader


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class RedisServer:
    """A private redis-server on a free loopback port: no snapshots, no append-only file."""

    def __init__(self, procs: Procs, workdir: Path) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.start("redis", [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir), "--databases", "16",
            "--loglevel", "warning", "--protected-mode", "no",
        ])
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client(0).ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        info = self.client(0).info("server")
        self.version = str(info["redis_version"])

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, decode_responses=True)

    def used_memory(self) -> int:
        return int(self.client(0).info("memory")["used_memory"])

    def reset_stats(self) -> None:
        self.client(0).config_resetstat()

    def command_stats(self, command: str = "evalsha") -> tuple[int, int]:
        """Calls of `command` since the last reset, and Redis's own time in them (µs)."""
        stats = self.client(0).info("commandstats").get(f"cmdstat_{command}")
        return (int(stats["calls"]), int(stats["usec"])) if stats else (0, 0)

    def usec_per_call(self, command: str = "evalsha") -> float | None:
        """Redis's own time per call of `command` since the last reset (INFO commandstats)."""
        calls, usec = self.command_stats(command)
        return usec / calls if calls else None


def broker_env(redis_url: str, port: int, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({"REDIS_URL": redis_url, "BROKER_PORT": str(port),
                "BROKER_DATA_DIR": str(data_dir), "BROKER_ACCESS_LOG": "off",
                "BROKER_LOG_LEVEL": "warning"})
    return env


class Server:
    """One HTTP server child (a broker or the floor) on a free loopback port."""

    def __init__(self, procs: Procs, name: str, argv: Sequence[str],
                 env: Mapping[str, str], port: int, ready_path: str) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.procs = procs
        self.proc = procs.start(name, argv, env)
        try:
            wait_http(self.url + ready_path, self.proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{procs.log_tail(name)}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.proc.pid)

    def stop(self) -> None:
        self.procs.stop(self.proc)


def start_broker(procs: Procs, redis_url: str, data_dir: Path, name: str = "broker") -> Server:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    return Server(procs, name, [sys.executable, "-m", "broker", "serve"],
                  broker_env(redis_url, port, data_dir), port, "/healthz")


def start_floor(procs: Procs, redis_url: str, data_dir: Path) -> Server:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "FLOOR_PORT": str(port), "REDIS_URL": redis_url,
           "FLOOR_DIR": str(data_dir), "PYTHONPATH": path}
    return Server(procs, "floor", [sys.executable, "-m", "bench.floor"], env, port, "/bare")
