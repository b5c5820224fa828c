"""A running function's stderr, sent to the broker while it runs (POST /job/log).

The function writes its stderr to a file in its work directory (runner.py), so nothing here
can stall it: a Shipper reads what the file gained every LOG_INTERVAL seconds and sends it as
one chunk of at most LOG_CHUNK bytes. When more piled up than that, the oldest bytes are
skipped with a line that says so (the broker keeps only a job's last 1 MiB anyway). After the
function ends, `flush` sends what is left, before the job's final report, so the log is whole
when the job is finished. A refusal that says the worker no longer holds the job stops the
shipping (the heartbeat deals with the job itself); a broker that cannot be reached keeps the
bytes for the next try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from broker.client.api import BrokerError, Unreachable

log = logging.getLogger("worker_agent")

LOG_INTERVAL = 1.0  # seconds between two chunks of one job, at least
LOG_CHUNK = 64 * 1024  # bytes one chunk carries, at most
# What the broker answers once this worker may no longer write the job (any other 4xx stops
# the log too, with a warning: a log is never worth failing the job's report for).
REFUSED = frozenset({"lease_lost", "cancelled", "illegal_transition", "unknown_job",
                     "not_found"})

Send = Callable[[bytes], Awaitable[None]]


def skipped_line(count: int) -> bytes:
    return f"[worker-agent: {count} bytes of stderr skipped]\n".encode()


class Shipper:
    def __init__(self, path: Path, send: Send, interval: float = LOG_INTERVAL,
                 chunk: int = LOG_CHUNK, job_id: str = "") -> None:
        self.path = path
        self.job_id = job_id  # for the agent's own log lines
        self.send = send
        self.interval = interval
        self.chunk = chunk
        self.offset = 0  # bytes of the file read so far
        self.pending = b""  # read, not yet accepted by the broker
        self.skipped = 0  # bytes dropped since the broker last accepted a chunk
        self.stopped = False

    def _take(self) -> bytes:
        """What to send now: the bytes not yet accepted, at most `chunk` of them."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > self.offset:
            start = max(self.offset, size - self.chunk)  # never read what would be cut
            with self.path.open("rb") as f:
                f.seek(start)
                self.pending += f.read(size - start)
            self.skipped += start - self.offset
            self.offset = size
        room = self.chunk - 100 if self.skipped or len(self.pending) > self.chunk else self.chunk
        if len(self.pending) > room:  # room for the line that says what was skipped
            self.skipped += len(self.pending) - room
            self.pending = self.pending[-room:]
        return (skipped_line(self.skipped) if self.skipped else b"") + self.pending

    async def flush(self) -> None:
        """Send what the file gained (and what an earlier try could not send)."""
        if self.stopped:
            return
        data = self._take()
        if not data:
            return
        try:
            await self.send(data)
        except BrokerError as exc:
            if exc.status < 500:  # never the job's outcome's business: the log stops
                level = logging.INFO if exc.code in REFUSED else logging.WARNING
                log.log(level, "job %s: live log stops: the broker refused it (%s)",
                        self.job_id, exc)
                self.stopped = True
                return
            log.warning("job %s: live log: the broker failed (%s); trying again",
                        self.job_id, exc)
            return
        except (Unreachable, httpx.TransportError) as exc:
            log.warning("job %s: live log: the broker is unreachable (%s); trying again",
                        self.job_id, exc)
            return
        self.pending, self.skipped = b"", 0

    async def run(self) -> None:
        """Ship every interval until cancelled."""
        while not self.stopped:
            await asyncio.sleep(self.interval)
            await self.flush()
