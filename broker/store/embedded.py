"""The embedded Redis used when REDIS_URL is unset, as Faktory does: a private redis-server
child on a Unix socket in the data directory, appending every write to a file there, and dying
with the broker. Without redis-server on PATH, in-memory fakeredis, which keeps nothing.

The child is supervised: when it exits while the broker runs, the broker logs it and starts it
again on the same append-only file (requests meanwhile answer 503 and clients retry). When it
keeps dying, the broker gives up and exits non-zero, so that its own supervisor (systemd,
Docker's restart policy) sees the failure instead of a broker that answers 503 forever.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

log = logging.getLogger("broker")

PR_SET_PDEATHSIG = 1
# More deaths than this within the window and the broker stops restarting and exits.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


def _die_with_parent() -> None:
    # Linux sends the signal when the *thread* that started the child ends: every child is
    # started by a thread that outlives it (the main thread, or the watcher waiting on it).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_server_args(data_dir: Path, socket_path: Path) -> list[str]:
    return [
        "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]


class EmbeddedRedis:
    """One redis-server child at a time on `data_dir`, restarted when it dies."""

    def __init__(self, executable: str, data_dir: Path, on_give_up: Callable[[], None],
                 timeout: float = 10.0) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.failed = False  # gave up restarting it
        self._argv = [executable, *redis_server_args(self.data_dir, self.socket)]
        self._timeout = timeout
        self._on_give_up = on_give_up
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() never misses a child started as it stops
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the child and its watcher; raises when the first start fails."""
        self._proc = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="embedded-redis",
                                         daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._watcher is not None:
            self._watcher.join(10)

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.socket.unlink(missing_ok=True)  # ours: the data directory's lock is held
        proc = subprocess.Popen(self._argv, preexec_fn=_die_with_parent)
        try:
            _wait_ready(self.url, proc, self._timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.info("embedded redis-server (pid %d) on %s, appendonly in %s", proc.pid,
                 self.socket, self.data_dir)
        return proc

    def _watch(self) -> None:
        deaths: list[float] = []
        while True:
            assert self._proc is not None
            code = self._proc.wait()  # reaps it: no defunct child
            if self._stopping.is_set():
                return
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESTART_WINDOW] + [now]
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else \
                f"exited with status {code}"
            log.error("embedded redis-server (pid %d) %s; restarting it (its log: %s)",
                      self._proc.pid, how, self.data_dir / "redis.log")
            if not self._restart(deaths):
                return

    def _restart(self, deaths: list[float]) -> bool:
        while len(deaths) <= MAX_RESTARTS and not self._stopping.is_set():
            time.sleep(min(0.1 * 2 ** len(deaths), 2.0))
            with self._lock:
                if self._stopping.is_set():
                    return False
                try:
                    self._proc = self._spawn()
                except (OSError, RuntimeError, redis.RedisError) as exc:
                    log.error("embedded redis-server did not start again: %s", exc)
                    deaths.append(time.monotonic())
                    continue
            log.warning("embedded redis-server restarted (pid %d)", self._proc.pid)
            return True
        if self._stopping.is_set():
            return False
        log.critical("embedded redis-server died %d times within %.0f s: giving up; the broker "
                     "stops so that its supervisor can act", len(deaths), RESTART_WINDOW)
        self.failed = True
        self._on_give_up()
        return False


@contextlib.contextmanager
def embedded_redis(data_dir: Path, on_give_up: Callable[[], None],
                   timeout: float = 10.0) -> Iterator[EmbeddedRedis | None]:
    """A supervised private redis-server, or None when there is no redis-server (the caller
    then uses memory://)."""
    executable = shutil.which("redis-server")
    if executable is None:
        log.warning("REDIS_URL is unset and redis-server is not on PATH: using in-memory "
                    "fakeredis. NOTHING WILL PERSIST: every job and worker is lost at exit.")
        yield None
        return
    server = EmbeddedRedis(executable, data_dir, on_give_up, timeout)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
