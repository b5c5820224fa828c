"""Jobs' live logs: appended by the worker holding the job (lua/log_append.lua), read from
any byte offset. The log keeps its last BROKER_LOG_MAX bytes; offsets count every byte ever
appended, so a follower that asks from where it stopped gets exactly what is new, and learns
(start > offset) when bytes were dropped in between."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from broker.errors import Conflict, NotFound
from broker.store.keys import Keys
from broker.store.scripts import Scripts

MAX_CHUNK = 256 * 1024  # bytes one append may carry


@dataclass
class LogRead:
    data: bytes  # the kept bytes from the offset asked for (or from `start`, if later)
    start: int  # offset of the first byte the log still keeps
    size: int  # bytes ever appended: the offset to read on from
    status: str  # the job's status when read


class Logs:
    def __init__(self, raw: Redis, scripts: Scripts, keys: Keys, max_bytes: int) -> None:
        """`raw` answers bytes (a log may be any bytes)."""
        self.raw = raw
        self.scripts = scripts
        self.keys = keys
        self.max_bytes = max_bytes

    async def append(self, job_id: str, worker_id: str, lease: str, chunk: bytes) -> int:
        """Append as the job's holder; the log's size after it."""
        k = self.keys
        result = await self.scripts.log_append(
            [k.job(job_id), k.log(job_id)],
            [worker_id, lease, chunk, self.max_bytes, k.log_channel, job_id])
        if result[0] == "ok":
            return int(result[1])
        if result[0] == "not_found":
            raise NotFound(f"no job {job_id}", code="unknown_job")
        if result[0] == "illegal":
            raise Conflict(f"job {job_id} is {result[1]}, not running: its log is closed",
                           code="illegal_transition", status_now=result[1])
        if result[0] == "cancelled":
            raise Conflict(f"job {job_id} was cancelled", code="cancelled")
        raise Conflict(f"worker {worker_id} does not hold job {job_id}", code="lease_lost")

    async def read(self, job_id: str, offset: int = 0) -> LogRead:
        """What the log keeps from `offset` on, read in one transaction with its bookkeeping."""
        async with self.raw.pipeline(transaction=True) as pipe:
            pipe.lrange(self.keys.log(job_id), 0, -1)
            pipe.hmget(self.keys.job(job_id), "status", "log_size", "log_kept")
            chunks, (status, size_raw, kept_raw) = await pipe.execute()
        if status is None:
            raise NotFound(f"no job {job_id}", code="unknown_job")
        size = int(size_raw or 0)
        start = size - int(kept_raw or 0)
        data = b"".join(chunks)
        skip = max(0, offset - start)
        return LogRead(data[skip:], start, size, status.decode())
