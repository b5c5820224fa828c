"""The embedded Redis used when REDIS_URL is unset, as Faktory does: a private redis-server
child on a Unix socket in the data directory, appending every write to a file there, and dying
with the broker. Without redis-server on PATH, in-memory fakeredis, which keeps nothing."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from broker.redis_client import MEMORY_URL

log = logging.getLogger("broker")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_server_args(data_dir: Path, socket_path: Path) -> list[str]:
    return [
        "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]


@contextlib.contextmanager
def embedded_redis(data_dir: Path, timeout: float = 10.0) -> Iterator[str]:
    """Yield a Redis URL for a private redis-server, or memory:// when there is none."""
    executable = shutil.which("redis-server")
    if executable is None:
        log.warning("REDIS_URL is unset and redis-server is not on PATH: using in-memory "
                    "fakeredis. NOTHING WILL PERSIST: every job and worker is lost at exit.")
        yield MEMORY_URL
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir.resolve() / "redis.sock"
    socket_path.unlink(missing_ok=True)
    proc = subprocess.Popen([executable, *redis_server_args(data_dir.resolve(), socket_path)],
                            preexec_fn=_die_with_parent)
    url = f"unix://{socket_path}"
    try:
        _wait_ready(url, proc, timeout)
        log.info("embedded redis-server (pid %d) on %s, appendonly in %s", proc.pid,
                 socket_path, data_dir)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited with {proc.returncode}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
    finally:
        client.close()
