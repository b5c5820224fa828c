"""Streaming multipart uploads: the one file part goes straight to a temporary file in the data
directory, hashed on the way; nothing is held in memory beyond two batches of about a MiB.

`receive` either returns an `Upload` (a complete, fsynced temporary file with its size and
sha256) or raises, having removed whatever it wrote.

The process writing a temporary file holds an exclusive `flock` on it from its creation until
it is renamed into place or removed. A temporary file whose lock can be taken therefore has no
live writer: its process died, and `sweep_abandoned` removes it, however young it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MAX_BOUNDARY_LENGTH, MultipartParser, parse_options_header

from broker.errors import BadRequest, InsufficientStorage, TooLarge, UnsupportedMediaType
from broker.ids import digits

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD = b"file"
TEMP_PREFIX = ".tmp-"
MAX_PARTS = 16
MAX_PART_HEADERS = 8
MAX_PART_HEADER_SIZE = 4096
# What a body may carry beyond the file's bytes: boundaries, part headers, ignored form fields.
FRAMING = 64 * 1024
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# The file part's bytes are hashed and written by a thread, a batch of about this size at a time,
# while the event loop receives and parses the next (hashlib and os.write release the GIL).
BATCH = 1024 * 1024
# A batch smaller than this (a small upload, or the tail of one) costs less to hash and write
# on the event loop than to hand to a thread.
INLINE = 64 * 1024


# How often a fresh temporary file may be lost to a sweep between its creation and its lock.
TEMP_ATTEMPTS = 8


@dataclass
class Upload:
    """A complete upload in its temporary file, not yet visible under any data id; `fd` is
    the open file holding the writer's lock."""

    path: Path | None
    size: int
    sha256: str
    fd: int = -1

    def discard(self) -> None:
        """Remove the temporary file, unless it has been renamed into place; then let go of the
        lock (in this order, so that a sweep never sees it unlocked under its name)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def locked_temp(directory: Path) -> tuple[int, Path]:
    """A fresh temporary file in `directory`, open and under this process's exclusive lock."""
    for _ in range(TEMP_ATTEMPTS):
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A sweep may have locked and unlinked it in the instant before our lock.
            if os.fstat(fd).st_nlink > 0:
                return fd, Path(name)
        except BlockingIOError:
            pass  # a sweep holds it and is removing it
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, f"could not keep a temporary file in {directory}")


def sweep_abandoned(directory: Path) -> list[Path]:
    """Remove every temporary file in `directory` whose writer is gone (its lock is free),
    whatever its age; return those removed. Safe beside live uploads of any process, and
    beside other sweeps."""
    removed = []
    for path in directory.glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):  # gone meanwhile, not a file, not ours
            if _remove_if_abandoned(path):
                removed.append(path)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer
        # Still under that name: not renamed into place nor removed since we opened it.
        st = os.fstat(fd)
        if st.st_nlink == 0 or os.stat(path, follow_symlinks=False).st_ino != st.st_ino:
            return False
        path.unlink()  # under our lock, so that a writer that locks it next sees it unlinked
        return True
    finally:
        os.close(fd)


def too_large(limit: int) -> TooLarge:
    return TooLarge(f"data may be at most {limit} bytes", limit=limit)


def disk_full(exc: OSError) -> InsufficientStorage:
    return InsufficientStorage(f"the broker's data disk is full ({exc.strerror}); nothing was "
                               "stored")


def boundary(headers: Mapping[str, str]) -> bytes:
    """The multipart boundary of a request, or 415/400 if it is not multipart/form-data."""
    media, options = parse_options_header(headers.get("content-type"))
    if media != b"multipart/form-data":
        shown = media.decode("latin-1") or "untyped"
        raise UnsupportedMediaType(
            f"the body must be multipart/form-data with a file part (curl -F file=@PATH), "
            f"not {shown:.60}")
    value = options.get(b"boundary", b"")
    if not value or len(value) > MAX_BOUNDARY_LENGTH:
        raise BadRequest("Content-Type multipart/form-data needs a boundary parameter of 1 to "
                         f"{MAX_BOUNDARY_LENGTH} characters", code="missing_boundary")
    return value


def check_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse up front a body whose declared length cannot fit under the limit."""
    declared = headers.get("content-length", "")
    if (digits(declared) or 0) > limit + FRAMING:
        raise too_large(limit)


class _Sink:
    """MultipartParser callbacks: note each part's Content-Disposition, and gather the file
    part's bytes into a batch, which `flush` hands to a thread to hash and write to a temporary
    file while the next batch arrives.

    One batch at most is in the thread and one gathering, so the writes and the hash keep the
    bytes' order, and memory stays bounded. The two batch buffers are reused: a copy into them
    costs the event loop less than keeping the received chunks alive (which made malloc hand
    memory back to the system and fault it in again, batch after batch). Measured on two
    cores, against hashing and writing on the event loop: handing the thread the chunks
    themselves, or only the hashing, gained little or nothing; this gains about a fifth.

    The thread writes under `lock`, and only while `fd` is open: `discard` takes the lock, so
    no write lands after the fd is closed, nor in whatever file reuses its number."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self.parts = 0
        self.name = bytearray()
        self.value = bytearray()
        self.disposition = b""
        self.fd = -1
        self.path: Path | None = None
        self.writing = False
        self.ended = False
        self.size = 0
        self.ignored = 0
        self.hash = hashlib.sha256()
        self.gathering = bytearray()  # grows to the largest batch, then is reused
        self.gathered = 0
        self.spare = bytearray()  # the other buffer: the one in the thread, once handed over
        self.busy: asyncio.Future[None] | None = None
        self.lock = threading.Lock()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end, "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadRequest(f"a data upload may have at most {MAX_PARTS} parts",
                             code="too_many_parts")
        self.disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        if self.name.lower() == b"content-disposition":
            self.disposition = bytes(self.value)
        self.name.clear()
        self.value.clear()

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self.disposition)
        if kind != b"form-data":
            raise BadRequest("each part needs a Content-Disposition: form-data header",
                             code="malformed_multipart")
        # The file part: any part with a filename, or a plain part under the default name.
        if b"filename" not in options and options.get(b"name") != FIELD:
            return
        if self.path is not None:
            raise BadRequest("a data upload carries exactly one file part", code="too_many_files")
        self.fd, self.path = locked_temp(self.directory)
        self.writing = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing:
            # Another form field: dropped, but bounded, so that no body is endless.
            self.ignored += end - start
            if self.ignored > FRAMING:
                raise TooLarge(f"form fields beside the file may total at most {FRAMING} bytes",
                               limit=FRAMING)
            return
        view = memoryview(data)[start:end]  # no copy
        self.size += len(view)
        if self.size > self.limit:
            raise too_large(self.limit)
        end = self.gathered + len(view)
        self.gathering[self.gathered:end] = view  # a copy, growing the buffer if need be
        self.gathered = end

    def on_part_end(self) -> None:
        self.writing = False

    def on_end(self) -> None:
        self.ended = True

    async def flush(self) -> None:
        """Wait for the batch in the thread (raising its error), then hand over the one
        gathered, if any."""
        if self.busy is not None:
            busy, self.busy = self.busy, None
            await busy
        if not self.gathered:
            return
        batch = memoryview(self.gathering)[:self.gathered]
        self.gathering, self.spare, self.gathered = self.spare, self.gathering, 0
        if len(batch) < INLINE:
            self._write(batch)
            return
        self.busy = asyncio.get_running_loop().run_in_executor(None, self._write, batch)
        # Left unawaited when another error ends the upload: its own is then not logged.
        self.busy.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _write(self, batch: memoryview) -> None:
        """Hash and write a batch (in a thread, or inline), unless the file is discarded."""
        with self.lock, batch:  # releasing the buffer, so that it may grow again
            if self.fd < 0:
                return
            self.hash.update(batch)
            rest = batch
            while rest:
                rest = rest[os.write(self.fd, rest):]

    def discard(self) -> None:
        """Remove the temporary file once the thread is done with it: on the event loop, at
        worst for one batch's write, since a cleanup must not be cancelled half-way."""
        with self.lock:
            Upload(self.path, 0, "", self.fd).discard()
            self.path, self.fd = None, -1

async def receive(stream: AsyncIterator[bytes], boundary: bytes, directory: Path,
                  limit: int) -> Upload:
    """Parse a multipart body as it streams; return its one file part, fsynced."""
    sink = _Sink(directory, limit)
    try:
        try:
            await _feed(sink, stream, boundary, limit)
            await asyncio.to_thread(os.fsync, sink.fd)
        except FormParserError as exc:
            raise BadRequest(f"malformed multipart body: {exc}", code="malformed_multipart",
                             ) from None
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise disk_full(exc) from None
            raise
    except BaseException:
        # Client gone, limit crossed, disk full, cancelled: leave nothing behind. (Cancelled
        # during the fsync, its thread may outlive the fd; an fsync of whatever file reuses
        # the number moves no bytes, so that is harmless.)
        with contextlib.suppress(OSError):
            sink.discard()
        raise
    # The Upload takes over the open fd: the lock holds until the file is installed or discarded.
    return Upload(sink.path, sink.size, sink.hash.hexdigest(), sink.fd)


async def _feed(sink: _Sink, stream: AsyncIterator[bytes], boundary: bytes, limit: int) -> None:
    parser = MultipartParser(boundary, sink.callbacks(), max_header_count=MAX_PART_HEADERS,
                             max_header_size=MAX_PART_HEADER_SIZE)
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit + FRAMING:
            raise too_large(limit)
        parser.write(chunk)
        if sink.gathered >= BATCH:
            await sink.flush()
    await sink.flush()  # the last batch
    await sink.flush()  # and its error, if any
    if not sink.ended:
        raise BadRequest("the multipart body ended before its closing boundary",
                         code="truncated_multipart")
    if sink.path is None:
        raise BadRequest("no file part: send the content as a file part, e.g. curl -F "
                         "file=@PATH", code="missing_file")
