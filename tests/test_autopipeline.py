"""AutoPipeline against a real redis-server: commands queued in one turn of the loop go out as
one pipeline, and each caller gets its own reply or error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.store.autopipeline import AutoPipeline
from broker.store.keys import Keys
from broker.store.scripts import Scripts
from tests.brokerproc import free_port


def run(pipeline: AutoPipeline, *command: object) -> asyncio.Future[Any]:
    """A plain command through the pipeline, packed as the broker packs its script calls."""
    return pipeline.execute_packed(pack_command(command))


def reads(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def test_commands_of_one_turn_reach_redis_in_one_read_each_with_its_own_reply(
        redis_url: str, r: redis.Redis) -> None:
    async def main() -> tuple[list[Any], int]:
        client = Redis.from_url(redis_url, decode_responses=True)
        pipeline = AutoPipeline(client)
        await client.ping()  # the connection exists before we count
        before = reads(r)
        replies = await asyncio.gather(*(run(pipeline, "INCRBY", "n", i)
                                         for i in range(1, 101)))
        after = reads(r)
        await client.aclose()
        return replies, after - before

    replies, read_events = asyncio.run(main())
    assert replies == [i * (i + 1) // 2 for i in range(1, 101)]  # in order, each its own
    # 100 commands sent one by one would be 100 reads; here they are one write. The INFO
    # call that counts takes a read of its own; a large write may be read in two.
    assert read_events <= 4, read_events


def test_an_error_reaches_only_its_own_caller(redis_url: str, r: redis.Redis) -> None:
    r.set("text", "not a number")

    async def main() -> list[Any]:
        client = Redis.from_url(redis_url, decode_responses=True)
        pipeline = AutoPipeline(client)
        replies = await asyncio.gather(run(pipeline, "INCR", "count"),
                                       run(pipeline, "INCR", "text"),
                                       run(pipeline, "INCR", "count"),
                                       return_exceptions=True)
        await client.aclose()
        return replies

    first, bad, last = asyncio.run(main())
    assert (first, last) == (1, 2)
    assert isinstance(bad, ResponseError) and "not an integer" in str(bad)


def test_a_cancelled_caller_leaves_the_others_their_replies(redis_url: str,
                                                           r: redis.Redis) -> None:
    async def main() -> tuple[Any, Any, list[Any]]:
        loop_errors: list[Any] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        client = Redis.from_url(redis_url, decode_responses=True)
        pipeline = AutoPipeline(client)
        gone = run(pipeline, "SET", "a", "1")
        kept = run(pipeline, "GET", "b")
        gone.cancel()
        reply = await kept
        after = await run(pipeline, "INCR", "after")  # the pipeline carries on
        await client.aclose()
        return reply, after, loop_errors

    # The cancelled caller's command was sent all the same (it was queued before the cancel),
    # and handing out the replies met no cancelled future it could not set.
    assert asyncio.run(main()) == (None, 1, [])
    assert r.get("a") == "1"


def test_a_lost_connection_fails_every_caller_of_the_batch() -> None:
    async def main() -> list[Any]:
        client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0),
                       socket_connect_timeout=1)
        pipeline = AutoPipeline(client)
        replies = await asyncio.gather(*(run(pipeline, "PING") for _ in range(3)),
                                       return_exceptions=True)
        await client.aclose()
        return replies

    replies = asyncio.run(main())
    assert len(replies) == 3
    assert all(isinstance(e, RedisConnectionError) for e in replies), replies


@pytest.mark.parametrize("flush", [False, True])
def test_scripts_run_through_it_and_survive_redis_losing_them(
        redis_url: str, r: redis.Redis, flush: bool) -> None:
    """After a restart Redis knows no scripts: the NOSCRIPT answer loads the script and runs it."""
    k = Keys()
    now = int(time.time() * 1000)

    async def main() -> list[Any]:
        client = Redis.from_url(redis_url, decode_responses=True)
        scripts = Scripts(client)
        await scripts.touch([k.worker("nosuchwk"), k.workers], ["nosuchwk", now, now + 1])
        if flush:
            await client.script_flush()
        replies = await asyncio.gather(*(
            scripts.touch([k.worker(f"worker{i:02d}"), k.workers], [f"worker{i:02d}", now,
                                                                   now + 1000])
            for i in range(10)))
        await client.aclose()
        return replies

    assert asyncio.run(main()) == [["unknown_worker"]] * 10
    assert r.zcard(k.workers) == 0  # touch never makes a worker it does not know


def test_a_reply_that_does_not_come_within_the_socket_timeout_fails_its_batch_only(
        redis_url: str) -> None:
    """One deadline covers the batch; the connection it cut off mid-reply is not used again,
    so the next command reads its own reply and not the late one."""
    async def main() -> tuple[Any, Any]:
        client = Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.3)
        pipeline = AutoPipeline(client)
        late = await asyncio.gather(run(pipeline, "BLPOP", "nothing", 2),
                                    return_exceptions=True)
        await client.lpush("nothing", "x")  # what the cut-off BLPOP would now answer
        after = await run(pipeline, "LPOP", "nothing")
        await client.aclose()
        return late[0], after

    late, after = asyncio.run(main())
    assert isinstance(late, RedisTimeoutError), late
    assert after == "x"
