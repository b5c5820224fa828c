"""Data files on disk, each named by its data_id, beside a metadata hash in Redis.

Content becomes visible in one order: a complete fsynced temporary file, then the metadata
(data_create.lua or data_commit.lua), then a rename over the name and an fsync of the directory.
The metadata write and the rename happen under the id's lock (locks.py), so two writers of one
id never leave the metadata of one beside the bytes of the other. A crash between the two leaves
metadata without a (new) file, which GET reports as 404, never as a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from broker import ids, upload
from broker.download import Opened, etag
from broker.errors import Conflict, NotFound
from broker.keys import Keys
from broker.locks import StripedLocks
from broker.scripts import Scripts
from broker.upload import Upload

log = logging.getLogger("broker")

LOCK_DIR = ".locks"
# A temporary file untouched this long belongs to an upload that died with its process.
STALE_TEMP_SECONDS = 3600


def now_ms() -> int:
    return int(time.time() * 1000)


def unknown(data_id: str) -> NotFound:
    return NotFound(f"no data {data_id}", code="unknown_data")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(source: Path, target: Path) -> None:
    os.replace(source, target)
    _fsync_dir(target.parent)


class DataStore:
    def __init__(self, redis: Redis, scripts: Scripts, keys: Keys, data_dir: Path,
                 max_size: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.dir = data_dir
        self.max_size = max_size
        data_dir.mkdir(parents=True, exist_ok=True)
        self.locks = StripedLocks(data_dir / LOCK_DIR)
        self._sweep_stale_temps()

    def path(self, data_id: str) -> Path:
        return self.dir / data_id

    async def receive(self, stream: AsyncIterator[bytes], boundary: bytes) -> Upload:
        return await upload.receive(stream, boundary, self.dir, self.max_size)

    async def create(self, up: Upload) -> str:
        """Give a complete upload a fresh data id."""
        try:
            for _ in range(ids.MAX_DRAWS):
                data_id = ids.new_id()
                # Under the lock: a PUT to this id (guessed before we answer) waits for the rename.
                async with self.locks.hold(data_id):
                    result = await self.scripts.data_create(
                        [self.keys.data(data_id)],
                        [data_id, "ready", up.size, up.sha256, now_ms()])
                    if result[0] == "id_taken":
                        continue
                    try:
                        await self._install(up, data_id)
                    except BaseException:
                        # No file, so no metadata (best effort: Redis may be what failed).
                        with contextlib.suppress(Exception):
                            await self.redis.delete(self.keys.data(data_id))
                        raise
                    return data_id
            raise RuntimeError("could not draw a free data id")
        finally:
            up.discard()

    async def reserve(self) -> str:
        """A fresh data id with no content yet (state reserved); no file until a PUT."""
        for _ in range(ids.MAX_DRAWS):
            data_id = ids.new_id()
            result = await self.scripts.data_create(
                [self.keys.data(data_id)], [data_id, "reserved", 0, "", now_ms()])
            if result[0] != "id_taken":
                return data_id
        raise RuntimeError("could not draw a free data id")

    async def require(self, data_id: str) -> None:
        if not await self.redis.exists(self.keys.data(data_id)):
            raise unknown(data_id)

    async def commit(self, data_id: str, up: Upload) -> None:
        """Make a complete upload the content of an existing id: the one step that replaces
        content, so that checks on who may replace it belong here."""
        try:
            async with self.locks.hold(data_id):
                result = await self.scripts.data_commit(
                    [self.keys.data(data_id)], [up.size, up.sha256, now_ms()])
                if result[0] == "not_found":
                    raise unknown(data_id)  # deleted while the body streamed
                await self._install(up, data_id)
        finally:
            up.discard()

    async def open(self, data_id: str) -> Opened:
        """Open a ready id's file. Under the lock, so the metadata read matches the file opened
        (unless a crash left a commit without its rename: then the sizes usually differ and the
        checksum is left out)."""
        async with self.locks.hold(data_id):
            meta: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
                self.keys.data(data_id))
            if not meta:
                raise unknown(data_id)
            if meta.get("state") != "ready":
                raise Conflict(f"data {data_id} is reserved but has no content yet; PUT /data "
                               "with X-Data-Id to fill it first", code="data_not_ready")
            try:
                fd = os.open(self.path(data_id), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(f"data {data_id} has metadata but no file (its write was cut "
                               "short); PUT it again or DELETE it", code="unknown_data") from None
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        consistent = meta.get("size") == str(st.st_size)
        return Opened(data_id, fd, st.st_size, etag(st), meta.get("sha256") if consistent else None)

    async def delete(self, data_id: str) -> None:
        """Metadata first, then the file: a reader that got the fd keeps its bytes."""
        async with self.locks.hold(data_id):
            if not await self.redis.delete(self.keys.data(data_id)):
                raise unknown(data_id)
            await asyncio.to_thread(self.path(data_id).unlink, missing_ok=True)

    async def _install(self, up: Upload, data_id: str) -> None:
        assert up.path is not None
        try:
            await asyncio.to_thread(_install, up.path, self.path(data_id))
        except OSError as exc:
            if exc.errno in upload.DISK_FULL:
                raise upload.disk_full(exc) from None
            raise
        up.path = None

    def _sweep_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for temp in self.dir.glob(upload.TEMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    log.info("removed %s, left by an interrupted upload", temp)
