"""Streamed downloads of one open data file: multipart/form-data (one part named `file`) or raw
bytes, with an exact Content-Length and an ETag.

Length, ETag and bytes all come from one open file descriptor. Content is only ever replaced by
renaming a new file over the name, so the descriptor keeps the version it opened: a download
never mixes two versions.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Opened:
    """A data file opened for reading, with what was known about it when it was opened."""

    data_id: str
    fd: int
    size: int
    etag: str
    sha256: str | None  # None when the metadata could not be matched to this file


def etag(st: os.stat_result) -> str:
    """A strong validator: a new version is a new inode (rename), and size and mtime change."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    given = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in given or tag in given


def wants_raw(accept: str | None) -> bool:
    """Raw bytes only for a client that names application/octet-stream and not multipart."""
    types = {t.split(";", 1)[0].strip().lower() for t in (accept or "").split(",")}
    return "application/octet-stream" in types and "multipart/form-data" not in types


class _Reader:
    """Reads the fd in a worker thread, chunk by chunk, at explicit offsets (pread): no shared
    file offset, and a read still running when the client leaves only delays the close."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._pending: asyncio.Future[bytes] | None = None
        self._closed = False

    async def chunks(self, head: bytes, tail: bytes) -> AsyncIterator[bytes]:
        if head:
            yield head
        loop = asyncio.get_running_loop()
        offset = 0
        while offset < self.size:
            self._pending = loop.run_in_executor(
                None, os.pread, self.fd, min(CHUNK, self.size - offset), offset)
            # shield: a cancelled download must not let close() run while the thread reads.
            data = await asyncio.shield(self._pending)
            if not data:
                raise RuntimeError(f"data file shrank below {self.size} bytes while open")
            offset += len(data)
            yield data
        if tail:
            yield tail

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        fd = self.fd
        if self._pending is not None and not self._pending.done():
            self._pending.add_done_callback(lambda _: os.close(fd))
        else:
            os.close(fd)


class FileStream(StreamingResponse):
    """Streams an open file; closes it however the response ends, HEAD sends no body."""

    def __init__(self, reader: _Reader, head: bytes, tail: bytes, media_type: str,
                 headers: dict[str, str]) -> None:
        super().__init__(reader.chunks(head, tail), media_type=media_type, headers=headers)
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await super().__call__(scope, receive, send)
        finally:
            self.reader.close()


def response(opened: Opened, *, raw: bool, if_none_match: str | None) -> Response:
    """The answer to GET /data for an opened file; takes ownership of its fd."""
    headers = {"ETag": opened.etag, "X-Data-Id": opened.data_id}
    if opened.sha256 is not None:
        headers["X-Content-SHA256"] = opened.sha256
    reader = _Reader(opened.fd, opened.size)
    if matches(if_none_match, opened.etag):
        reader.close()
        return Response(status_code=304, headers=headers)
    if raw:
        head = tail = b""
        media = "application/octet-stream"
    else:
        boundary = "broker-" + secrets.token_hex(16)
        head = (f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{opened.data_id}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        media = f"multipart/form-data; boundary={boundary}"
    headers["Content-Length"] = str(len(head) + opened.size + len(tail))
    return FileStream(reader, head, tail, media, headers)
