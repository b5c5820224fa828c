"""Who may serve a data directory: a lock file that every `broker serve` holds while it runs.

A broker with its own Redis (embedded, or in-memory) owns the directory alone: the Redis socket,
the append-only file and the data files' metadata are its own, and a second such broker there
would delete the live socket and start a second redis-server on the same append-only file.
Brokers that share one Redis (REDIS_URL) may share the directory with each other, and with no
broker that owns it alone. The kernel drops an flock when its holder dies, so a killed broker
never leaves the directory locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".locks/broker.lock"


class DirectoryInUse(Exception):
    """Another broker process serves the data directory in a way this one cannot join."""


@contextlib.contextmanager
def own(data_dir: Path, *, alone: bool) -> Iterator[None]:
    """Hold the data directory: alone (an exclusive lock) or with brokers on the same Redis (a
    shared one). Raises DirectoryInUse, having touched nothing else, when another holds it."""
    (data_dir / LOCK_FILE).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if alone else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryInUse(_holder(fd, data_dir.resolve())) from None
        if alone:  # the pid, for the message a second broker prints
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if alone:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _holder(fd: int, where: Path) -> str:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:  # held alone: by a broker with its own Redis
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        return (f"the data directory {where} is in use by another broker (pid {pid}) with its "
                f"own Redis; stop that one first, or give this one another --data-dir "
                f"(BROKER_DATA_DIR)")
    fcntl.flock(fd, fcntl.LOCK_UN)
    return (f"the data directory {where} is in use by brokers sharing a Redis (REDIS_URL); "
            f"a broker with its own Redis needs a data directory of its own (--data-dir, "
            f"BROKER_DATA_DIR), or set REDIS_URL to join them")
