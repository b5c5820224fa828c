"""Data files on disk, each named by its data_id, beside a metadata hash in Redis.

Content becomes visible in one order: a complete fsynced temporary file, then the metadata
(data_create.lua or data_commit.lua), then a rename over the name and an fsync of the directory.
The metadata write and the rename happen under the id's lock (locks.py), so two writers of one
id never leave the metadata of one beside the bytes of the other. A crash between the two leaves
metadata without a (new) file, which GET reports as 404, never as a 500, and which the data
sweep (datasweep.py) clears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from broker import ids, upload
from broker.clock import now_ms
from broker.download import Opened, etag
from broker.errors import Conflict, NotFound, Unprocessable
from broker.keys import Keys
from broker.locks import StripedLocks
from broker.scripts import Scripts
from broker.upload import Upload

log = logging.getLogger("broker")

LOCK_DIR = ".locks"
IDEMPOTENCY_SCOPE = "data"
# What /data/reg requests are, to an Idempotency-Key: all alike.
RESERVE_FINGERPRINT = "reserve"


@dataclass(frozen=True)
class Writer:
    """Who writes with PUT /data: a requester (no worker id), or a worker, maybe under a lease."""

    worker_id: str = ""
    lease: str = ""


REQUESTER = Writer()


def unknown(data_id: str) -> NotFound:
    return NotFound(f"no data {data_id}", code="unknown_data")


def _refused(data_id: str, writer: Writer, result: list[Any]) -> Exception | None:
    """The error for a data_commit answer other than ok."""
    code = result[0]
    if code == "ok":
        return None
    if code == "not_found":
        return unknown(data_id)
    job_id = result[1]
    if code == "cancelled":
        return Conflict(f"data {data_id} is the output of job {job_id}, which was cancelled; "
                        "stop and upload nothing", code="cancelled")
    if code == "lease_lost":
        held = "under this lease" if writer.lease else "any more"
        return Conflict(f"data {data_id} is the output of job {job_id}, which worker "
                        f"{writer.worker_id} does not hold {held}; nothing was stored",
                        code="lease_lost")
    raise RuntimeError(f"unexpected script answer {code!r}")


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
                 max_size: int, idempotency_ttl: int = 86400) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.dir = data_dir
        self.max_size = max_size
        self.idempotency_ttl = idempotency_ttl
        data_dir.mkdir(parents=True, exist_ok=True)
        self.locks = StripedLocks(data_dir / LOCK_DIR)
        for temp in upload.sweep_abandoned(data_dir):
            log.warning("removed %s, left by an upload whose broker process died", temp)

    def path(self, data_id: str) -> Path:
        return self.dir / data_id

    async def receive(self, stream: AsyncIterator[bytes], boundary: bytes) -> Upload:
        return await upload.receive(stream, boundary, self.dir, self.max_size)

    async def create(self, up: Upload, idempotency_key: str = "") -> str:
        """Give a complete upload a fresh data id; under an Idempotency-Key already used for the
        same content, answer the id made then and store nothing."""
        fingerprint = f"{up.sha256}:{up.size}"
        try:
            for _ in range(ids.MAX_DRAWS):
                data_id = ids.new_id()
                # Under the lock: a PUT to this id (guessed before we answer) waits for the rename.
                async with self.locks.hold(data_id):
                    answer = await self._create(data_id, "ready", up.size, up.sha256,
                                                idempotency_key, fingerprint)
                    if answer is None:
                        continue
                    if answer != data_id:
                        return answer  # made by an earlier request under this key
                    try:
                        await self._install(up, data_id)
                    except BaseException:
                        # No file, so no metadata, nor a key answering it (best effort: Redis
                        # may be what failed).
                        with contextlib.suppress(Exception):
                            await self.redis.delete(self.keys.data(data_id), *(
                                [self._idempotency(idempotency_key)] if idempotency_key else []))
                        raise
                    return data_id
            raise RuntimeError("could not draw a free data id")
        finally:
            up.discard()

    async def reserve(self, idempotency_key: str = "") -> str:
        """A fresh data id with no content yet (state reserved); no file until a PUT."""
        for _ in range(ids.MAX_DRAWS):
            answer = await self._create(ids.new_id(), "reserved", 0, "", idempotency_key,
                                        RESERVE_FINGERPRINT)
            if answer is not None:
                return answer
        raise RuntimeError("could not draw a free data id")

    def _idempotency(self, key: str) -> str:
        return self.keys.idempotency(IDEMPOTENCY_SCOPE, key)

    async def _create(self, data_id: str, state: str, size: int, sha256: str, key: str,
                      fingerprint: str) -> str | None:
        """Record a new id: the id to answer, or None when `data_id` is taken."""
        result = await self.scripts.data_create(
            [self.keys.data(data_id), self._idempotency(key)],
            [data_id, state, size, sha256, now_ms(), fingerprint if key else "",
             self.idempotency_ttl])
        if result[0] == "id_taken":
            return None
        if result[0] == "idempotency_mismatch":
            raise Unprocessable("this Idempotency-Key was used for a different upload",
                                code="idempotency_mismatch")
        answer: str = result[1]
        return answer

    async def check_write(self, data_id: str, writer: Writer = REQUESTER) -> None:
        """Refuse, before a body streams, a PUT that `commit` would refuse (it checks again)."""
        await self._commit(data_id, writer, 0, "", "check")

    async def commit(self, data_id: str, up: Upload, writer: Writer = REQUESTER) -> None:
        """Make a complete upload the content of an existing id: the one step that replaces
        content, so that checks on who may replace it belong here."""
        try:
            async with self.locks.hold(data_id):
                await self._commit(data_id, writer, up.size, up.sha256, "")
                await self._install(up, data_id)
        finally:
            up.discard()

    async def _commit(self, data_id: str, writer: Writer, size: int, sha256: str,
                      mode: str) -> None:
        result = await self.scripts.data_commit(
            [self.keys.data(data_id)],
            [size, sha256, now_ms(), writer.worker_id, writer.lease, self.keys.job_prefix, mode])
        error = _refused(data_id, writer, result)
        if error is not None:
            raise error

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
