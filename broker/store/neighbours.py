"""A job's neighbours in a pipeline, for the dashboard's job page: the jobs it waits on (its
`after`) and the jobs still waiting on it (its waiters set, lua/lib/deps.lua), each with its
status and runtime. A waiter leaves that set when it is released or fails, so the jobs that
ran after a finished one are not listed (their own page names it in `after`)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from broker.store.keys import Keys

MAX_SHOWN = 100  # of the waiters; a job may have many


async def neighbours(redis: Redis, keys: Keys, job_id: str,
                     after: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(upstream, downstream), each [{"job_id", "status", "runtime"}]; a job gone since has
    status None."""
    waiters: list[str] = await redis.srandmember(  # type: ignore[assignment]
        keys.job_waiters(job_id), MAX_SHOWN)
    ids = [*after, *sorted(waiters)]
    async with redis.pipeline(transaction=False) as pipe:
        for other in ids:
            pipe.hmget(keys.job(other), "status", "runtime")
        rows = await pipe.execute()
    found = [{"job_id": other, "status": status, "runtime": runtime}
             for other, (status, runtime) in zip(ids, rows, strict=True)]
    return found[:len(after)], found[len(after):]
