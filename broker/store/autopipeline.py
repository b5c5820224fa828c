"""Redis commands issued in the same turn of the event loop go to Redis as one pipeline.

Under load, many requests reach their Redis call in the same turn of the loop. Sent one by one,
each pays its own socket write and read and redis-py's whole command path, which costs more CPU
than the request's own work. Here each command is queued, and at the end of the turn the queue
goes out as one non-transactional pipeline: one write, one read, and each caller gets its own
reply or error. Redis still runs the commands one after another in the order they were queued,
so every script stays atomic and a caller sees what a lone call would have seen. A lone call
pays one more turn of the loop. A lost connection is retried as redis-py retries any command
(the client's Retry, the whole batch resent), so what is sent here must be safe to replay,
as every broker script is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Queued = tuple["asyncio.Future[Any]", bytes]


class AutoPipeline:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[Queued] = []
        self._sending: set[asyncio.Task[None]] = set()
        # Connections taken from the client's pool once and kept between batches, each read
        # to the end of its replies before it comes back here.
        self._idle: list[Any] = []
        self._timeout: float | None = redis.connection_pool.connection_kwargs.get(
            "socket_timeout")

    def execute_packed(self, command: bytes) -> asyncio.Future[Any]:
        """Queue one command already in Redis's wire format (broker/store/resp.py); the future
        holds its reply, or raises its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((future, command))
        return future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Queued]) -> None:
        try:
            replies = await self._exchange([command for _, command in batch])
        except asyncio.CancelledError:
            for future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed past the client's retries
            for future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (future, _), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _exchange(self, commands: list[bytes]) -> list[Any]:
        """Write every command on one pooled connection, then read every reply (a command's
        error is its reply). This is redis-py's non-transactional pipeline without the
        per-call bookkeeping of its Pipeline object, which cost more than a lone command. The
        connection is one this pipeline keeps, not checked out of the pool for each batch:
        redis-py 8's pool takes a lock, records metrics and probes the socket on every
        checkout and return."""
        pool = self._redis.connection_pool
        if self._idle:
            connection = self._idle.pop()
        else:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            # One deadline for the whole batch (below) in place of redis-py's own around each
            # write and each reply, which costs a task or a timer every time.
            connection.socket_timeout = None

        async def once() -> list[Any]:
            await connection.send_packed_command(b"".join(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # read in full: the connection stays in step
                    replies.append(exc)
            return replies

        async def reset(_error: Exception) -> None:
            await connection.disconnect()

        in_step = False
        try:
            async with asyncio.timeout(self._timeout):
                replies: list[Any] = await connection.retry.call_with_retry(once, reset)
            in_step = True
            return replies
        except TimeoutError:
            raise RedisTimeoutError(f"no reply from Redis within {self._timeout} s") from None
        finally:
            if in_step:  # kept for the next batch: the pool's checks cost more than a batch
                self._idle.append(connection)
            else:  # cut off mid-reply, perhaps: the pool gets it back disconnected
                connection.socket_timeout = self._timeout
                await connection.disconnect()
                await pool.release(connection)
