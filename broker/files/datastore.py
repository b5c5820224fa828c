"""Data files on disk beside a metadata hash in Redis that names the file holding the content.

Content is never overwritten in place. An upload goes to a complete, fsynced temporary file,
which is renamed to a name of its own (`<data_id>` for the content a POST creates,
`<data_id>.<version>` for each PUT), and only then is the metadata switched to name it
(data_create.lua, data_commit.lua); the version it replaced is removed after the switch. So the
metadata names a whole file at every instant, whatever fails and whenever Redis runs the script:

- a script answered ok: the new file is the content; the replaced one goes.
- a script answered no (a lease lost, an id taken): the new file goes; nothing else changed.
- no answer (Redis timed out or the connection dropped; Redis may still run it): both files
  stay, the client hears 503 and may repeat (the same Idempotency-Key, the same lease), and the
  data sweep removes whichever file the metadata does not name once it is older than its
  grace period.

Readers need no lock: a reader that finds the file it read of just replaced reads the metadata
again. Deleting removes the metadata first, then the file it named.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from broker import ids
from broker.clock import now_ms
from broker.errors import BrokerError, Conflict, Forbidden, NotFound, Unprocessable
from broker.files import upload
from broker.files.download import Opened, etag
from broker.files.upload import Upload
from broker.store.keys import Keys
from broker.store.scripts import Scripts

log = logging.getLogger("broker")

IDEMPOTENCY_SCOPE = "data"
# What /data/reg requests are, to an Idempotency-Key: all alike.
RESERVE_FINGERPRINT = "reserve"


@dataclass(frozen=True)
class Writer:
    """Who writes with PUT /data: a requester (no worker id), or a worker, maybe under a lease."""

    worker_id: str = ""
    lease: str = ""
    own_outputs_only: bool = False  # a worker with its own credential: no other data


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
    if code == "not_output":
        return Forbidden(f"worker {writer.worker_id} may write only the outputs of jobs it "
                         f"holds, and data {data_id} is no job's output")
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
    """Give `source` the name `target`, never over an existing file (FileExistsError)."""
    os.link(source, target)
    os.unlink(source)
    os.utime(target)  # the sweep's grace period counts from here, not from the last byte
    _fsync_dir(target.parent)


def file_name(data_id: str, version: str) -> str:
    """The file holding one version of a data id's content."""
    return f"{data_id}.{version}" if version else data_id


# How often a reader looks again when the file it was told of was replaced under it.
OPEN_ATTEMPTS = 5


class DataStore:
    def __init__(self, redis: Redis, scripts: Scripts, keys: Keys, data_dir: Path,
                 max_size: int, idempotency_ttl: int = 86400, ctx: str = "",
                 data_ttl: int = 0) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        # The scripts' context (keys.py: Keys.context): a fill or a delete moves waiting jobs on.
        self.ctx = ctx or keys.context(7 * 86400 * 1000)
        self.data_ttl = data_ttl  # seconds; 0: data is deleted only by DELETE /data
        self.dir = data_dir
        self.max_size = max_size
        self.idempotency_ttl = idempotency_ttl
        data_dir.mkdir(parents=True, exist_ok=True)
        for temp in upload.sweep_abandoned(data_dir):
            log.warning("removed %s, left by an upload whose broker process died", temp)

    def path(self, data_id: str, version: str = "") -> Path:
        return self.dir / file_name(data_id, version)

    async def receive(self, stream: AsyncIterator[bytes], boundary: bytes) -> Upload:
        return await upload.receive(stream, boundary, self.dir, self.max_size)

    async def create(self, up: Upload, idempotency_key: str = "") -> str:
        """Give a complete upload a fresh data id; under an Idempotency-Key already used for the
        same content, answer the id made then and store nothing."""
        fingerprint = f"{up.sha256}:{up.size}"
        try:
            for _ in range(ids.MAX_DRAWS):
                data_id = ids.new_id()
                # Placed first: once the script has run, whenever that is, its file is there.
                placed = await self._place(up, data_id, "")
                if placed is None:
                    continue  # a file of that name exists: the id is someone's
                try:
                    answer = await self._create(data_id, "ready", up.size, up.sha256,
                                                idempotency_key, fingerprint)
                except BrokerError:  # refused: the file we placed is nobody's
                    await self._remove(placed)
                    raise
                if answer == data_id:
                    return data_id
                await self._remove(placed)  # the id was taken, or the key answered another
                if answer is not None:
                    return answer
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
        await self._commit(data_id, writer, 0, "", "", "check")

    async def commit(self, data_id: str, up: Upload, writer: Writer = REQUESTER) -> None:
        """Make a complete upload the content of an existing id: the one step that replaces
        content, so that checks on who may replace it belong here."""
        try:
            placed = None
            while placed is None:  # a new version's name is free but for a 1 in 36^8 draw
                version = ids.new_id()
                placed = await self._place(up, data_id, version)
            try:
                replaced = await self._commit(data_id, writer, up.size, up.sha256, version, "")
            except BrokerError:  # refused: nothing changed but the file we placed
                await self._remove(placed)
                raise
            if replaced is not None and replaced != placed:  # a replayed script answers
                await self._remove(replaced)                 # the version it set itself
        finally:
            up.discard()

    async def _commit(self, data_id: str, writer: Writer, size: int, sha256: str,
                      version: str, mode: str) -> Path | None:
        """Run data_commit: the file of the content it replaced (None: there was none)."""
        result = await self.scripts.data_commit(
            [self.keys.data(data_id)],
            [size, sha256, now_ms(), writer.worker_id, writer.lease, self.keys.job_prefix, mode,
             version, "1" if writer.own_outputs_only else "", self.ctx])
        error = _refused(data_id, writer, result)
        if error is not None:
            raise error
        if mode == "check" or result[1] != "ready":
            return None
        return self.path(data_id, result[2])

    async def open(self, data_id: str) -> Opened:
        """Open a ready id's current file: the metadata read and the file opened agree."""
        for _ in range(OPEN_ATTEMPTS):
            meta: dict[str, str] = await self.redis.hgetall(  # type: ignore[assignment]
                self.keys.data(data_id))
            if not meta:
                raise unknown(data_id)
            if meta.get("state") != "ready":
                raise Conflict(f"data {data_id} is reserved but has no content yet; PUT /data "
                               "with X-Data-Id to fill it first", code="data_not_ready")
            try:
                fd = os.open(self.path(data_id, meta.get("version", "")),
                             os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue  # replaced and removed since the metadata was read: look again
            except OSError:  # a symbolic link, or worse, where the file should be
                break
            try:
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                break
            consistent = meta.get("size") == str(st.st_size)
            return Opened(data_id, fd, st.st_size, etag(st),
                          meta.get("sha256") if consistent else None)
        raise NotFound(f"data {data_id} has metadata but its file is missing or is not a "
                       "regular file; PUT it again or DELETE it", code="unknown_data")

    async def delete(self, data_id: str) -> None:
        """Metadata first, then the file it named: a reader that got the fd keeps its bytes."""
        result = await self.scripts.data_delete([self.keys.data(data_id)],
                                                [data_id, now_ms(), self.ctx])
        if result[0] == "not_found":
            raise unknown(data_id)
        if result[1] == "ready":
            await self._remove(self.path(data_id, result[2]))

    async def _place(self, up: Upload, data_id: str, version: str) -> Path | None:
        """Give the upload its own name, fsynced, before any metadata names it; None when a
        file already has that name."""
        assert up.path is not None
        target = self.path(data_id, version)
        try:
            await asyncio.to_thread(_install, up.path, target)
        except FileExistsError:
            return None
        except OSError as exc:
            if exc.errno in upload.DISK_FULL:
                raise upload.disk_full(exc) from None
            raise
        up.path = None
        return target

    @staticmethod
    async def _remove(path: Path) -> None:
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:  # a directory where a file should be: the sweep's, not ours
            log.warning("could not remove %s: %s", path, exc)
