"""Bodies streamed to and from the broker: a file read for an upload (counting its progress),
and a download written whole or not at all, parsing the seed's multipart answer as it comes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

# Told how many bytes of a transfer are done so far in its current attempt (a retried transfer
# starts again from 0).
Progress = Callable[[int], None]


class Counting:
    """A file wrapper that reports how far it has been read, for progress bars."""

    def __init__(self, f: IO[bytes], progress: Progress) -> None:
        self._f = f
        self._progress = progress
        self._done = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._done += len(chunk)
        self._progress(self._done)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()


class _FirstPart:
    """Writes the first part of a multipart stream to `out`, as python-multipart parses it."""

    def __init__(self, boundary: bytes, out: IO[bytes], progress: Progress | None) -> None:
        from python_multipart.multipart import MultipartParser

        self.out, self.progress = out, progress
        self.parts, self.ended, self.done = 0, False, 0
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_end": self._end})

    def _begin(self) -> None:
        self.parts += 1

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.parts == 1:
            self.out.write(data[start:end])
            self.done += end - start
            if self.progress:
                self.progress(self.done)

    def _end(self) -> None:
        self.ended = True

    def write(self, chunk: bytes) -> None:
        self.parser.write(chunk)

    def close(self) -> None:
        self.parser.finalize()
        if not self.ended:
            raise httpx.ReadError("the download ended before its closing boundary")


class _Raw:
    def __init__(self, out: IO[bytes], progress: Progress | None) -> None:
        self.out, self.progress, self.done = out, progress, 0

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.done += len(chunk)
        if self.progress:
            self.progress(self.done)

    def close(self) -> None:
        pass


async def save_body(resp: httpx.Response, dest: Path, progress: Progress | None) -> None:
    """Write the body to `dest` whole or not at all: the first multipart part, or the raw
    bytes when the broker answered application/octet-stream."""
    from python_multipart.multipart import parse_options_header

    media, options = parse_options_header(resp.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with tmp.open("wb") as out:
            sink: _FirstPart | _Raw = (
                _FirstPart(boundary, out, progress)
                if media.startswith(b"multipart/") and boundary else _Raw(out, progress))
            async for chunk in resp.aiter_bytes():
                sink.write(chunk)
            sink.close()
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
