"""Per-data-id locks that hold across every broker process sharing one data directory.

A data id maps to one of a fixed set of lock files (stripes) under `.locks/`; holding a stripe
means holding an `fcntl.flock` on its file. Two ids may share a stripe and then wait for each
other briefly: the lock only covers a metadata write and a rename, never a transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

STRIPES = 64


class StripedLocks:
    def __init__(self, directory: Path, stripes: int = STRIPES) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.stripes = stripes
        for stripe in range(stripes):  # now, so that a full disk later cannot refuse one
            self._path(stripe).touch()
        # One waiter per stripe per process: the asyncio lock queues the others without a thread.
        self._local = [asyncio.Lock() for _ in range(stripes)]
        # Waiting threads get a pool of their own, one thread per stripe. Were they on the default
        # pool, enough waiters could take every thread and starve the holder of the thread it
        # needs for its fsync: a deadlock.
        self._waiters = ThreadPoolExecutor(max_workers=stripes, thread_name_prefix="data-lock")

    def _path(self, stripe: int) -> Path:
        return self.dir / f"{stripe:02d}.lock"

    def stripe(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.stripes

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold `key`'s stripe, in this process and against every other one."""
        stripe = self.stripe(key)
        async with self._local[stripe]:
            # A fresh open file description per hold: closing it is what releases the flock.
            fd = os.open(self._path(stripe), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            await self._lock(fd)  # on failure it has closed fd (or will, once its thread returns)
            try:
                yield
            finally:
                os.close(fd)

    async def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # uncontended: no thread hop
            return
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        waiting = asyncio.get_running_loop().run_in_executor(
            self._waiters, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            # shield: a cancelled request must not mark the wait done while the thread still
            # blocks in flock; the fd is closed (releasing any lock) only once the thread returns.
            await asyncio.shield(waiting)
        except BaseException:
            waiting.add_done_callback(lambda _: os.close(fd))
            raise
