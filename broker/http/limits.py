"""Bounds on a request's head (its request line and headers), which uvicorn with httptools
leaves open: how many bytes it may take, and how long it may take to arrive.

Past the size, the broker answers 431 and closes the connection, having held no more than the
limit and one read of the socket; past the time (a client that opens a connection and sends
nothing, or trickles its headers: slowloris), 408 and the connection is closed. Both answers
are in the one error shape, written by the protocol itself: the application never sees such a
request. Behind a reverse proxy the proxy's own limits come first (see the README).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def bounded_protocol(max_bytes: int, timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the head of every request bounded."""

    class Bounded(_Bounded):
        head_limit = max_bytes
        head_timeout = timeout

    return Bounded


class _Bounded(HttpToolsProtocol):
    head_limit = 0
    head_timeout = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._reading_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.head_limit:
            self._refuse(431, "header_too_large",
                         f"the request's line and headers may be at most {self.head_limit} "
                         "bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and self.cycle is None:
            self.transport.close()  # connected and sent nothing: nobody to answer
            return
        self._refuse(408, "header_timeout",
                     f"the request's line and headers took more than {self.head_timeout:g} s "
                     "to arrive")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        if self.transport.is_closing():
            return
        body = json.dumps({"error": code, "detail": detail}).encode()
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.transport.close()
        self._reading_head = False
        self._disarm_head_timer()
