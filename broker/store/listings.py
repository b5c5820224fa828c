"""Listings for tools and people, read from the indexes the scripts keep (never a scan).

Jobs come newest first by creation number; a cursor is the creation number to continue below,
so a page never repeats or skips a job that stays in the listed status while others change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from broker import wire
from broker.lifecycle import STATUSES
from broker.store.keys import Keys

# The counters of each minute (keys.py: Keys.minute), in the order GET /throughput answers them.
MINUTE_FIELDS = ("handed_out", "succeeded", "failed", "cancelled")

# A runtime filter reads at most this many index entries per requested job before it answers
# a shorter page (with a cursor to go on), so a rare runtime never makes one request long.
FILTER_BUDGET = 10


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class Listings:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def _below(self, statuses: tuple[str, ...], cursor: float,
                     count: int) -> list[tuple[str, float]]:
        """The `count` newest (id, creation number) below `cursor` across `statuses`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.zrange(self.keys.index(status), f"({cursor}", "-inf", desc=True,
                            byscore=True, offset=0, num=count, withscores=True)
            results = await pipe.execute()
        merged = sorted((pair for rows in results for pair in rows), key=lambda p: -p[1])
        return [(member, float(score)) for member, score in merged[:count]]

    async def jobs(self, status: str | None, runtime: str | None, limit: int,
                   cursor: float) -> Page:
        statuses = (status,) if status else STATUSES
        found: list[dict[str, Any]] = []
        budget = limit * FILTER_BUDGET
        while len(found) < limit and budget > 0:
            batch = await self._below(statuses, cursor, min(limit, budget))
            if not batch:
                return Page(found, None)
            budget -= len(batch)
            hashes = await self._hashes([job_id for job_id, _ in batch])
            for (job_id, score), h in zip(batch, hashes, strict=True):
                cursor = score
                if h and (runtime is None or h.get("runtime") == runtime):
                    found.append(wire.job(job_id, h))
                    if len(found) == limit:
                        break
        return Page(found, f"{cursor:.0f}")

    async def _hashes(self, job_ids: list[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return rows

    async def workers(self, limit: int, after: str) -> Page:
        """Workers by id after `after`, a page at a time: read from the id listing as far as
        the page goes (and one more, to know whether there is more)."""
        ids: list[str] = await self.redis.zrange(  # type: ignore[assignment]
            self.keys.worker_ids, f"({after}" if after else "-", "+", bylex=True, offset=0,
            num=limit + 1)
        page = ids[:limit]
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in page:
                pipe.hgetall(self.keys.worker(worker_id))
                pipe.smembers(self.keys.worker_jobs(worker_id))
            rows = await pipe.execute()
        items = []
        for h, running in zip(rows[::2], rows[1::2], strict=True):
            if h:
                items.append({**wire.worker(h), "running": sorted(running)})
        more = len(ids) > limit
        return Page(items, page[-1] if more and page else None)

    async def runtimes(self) -> list[dict[str, Any]]:
        """Every runtime a job or a worker names, and every paused one."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(k.runtimes)
            pipe.smembers(k.paused)
            named, paused = await pipe.execute()
        names = sorted(named | paused)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(k.queue(name))
                pipe.scard(k.runtime_workers(name))
            pipe.hgetall(k.running)
            pipe.hgetall(k.scheduled_counts)
            pipe.hgetall(k.waiting_counts)
            rows = await pipe.execute()
        running: dict[str, str] = rows[-3]
        scheduled: dict[str, str] = rows[-2]
        waiting: dict[str, str] = rows[-1]
        out = []
        for i, name in enumerate(names):
            pending, workers = rows[2 * i], rows[2 * i + 1]
            out.append({
                "runtime": name, "pending": pending, "running": int(running.get(name, 0)),
                "scheduled": int(scheduled.get(name, 0)), "waiting": int(waiting.get(name, 0)),
                "workers": workers, "paused": name in paused,
                "warning": f"{pending} pending job(s) and no live worker serves {name}"
                           if pending and not workers else None})
        return out

    async def gauges(self) -> dict[str, Any]:
        """What /metrics reads from Redis at scrape time."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(k.index(status))
            pipe.hgetall(k.stats)
            rows = await pipe.execute()
        return {"jobs": dict(zip(STATUSES, rows[:len(STATUSES)], strict=True)),
                "stats": {name: int(v) for name, v in rows[-1].items()},
                "runtimes": await self.runtimes()}

    async def throughput(self, now_ms: int, minutes: int = 60) -> list[dict[str, Any]]:
        """The jobs handed out and finished in each of the last `minutes` minutes up to the
        one of `now_ms`, oldest first; zeros for a minute nothing counted in."""
        last = now_ms // 60_000
        numbers = range(last - minutes + 1, last + 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in numbers:
                pipe.hmget(self.keys.minute(n), MINUTE_FIELDS)
            rows = await pipe.execute()
        return [{"minute": wire.iso(n * 60_000),
                 **{f: int(v or 0) for f, v in zip(MINUTE_FIELDS, row, strict=True)}}
                for n, row in zip(numbers, rows, strict=True)]

    async def dead_workers(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last `limit` workers declared dead, newest first (lua/lib/settle.lua)."""
        rows: list[str] = await self.redis.lrange(  # type: ignore[assignment]
            self.keys.dead_workers, 0, limit - 1)
        out = []
        for row in rows:
            d = json.loads(row)
            out.append({"worker_id": d["worker_id"], "Runtime": d["Runtime"],
                        "registered_at": wire.iso(d["registered_at"]),
                        "last_seen": wire.iso(d["last_seen"]), "dead_at": wire.iso(d["dead_at"]),
                        "gave_back": d["gave_back"]})
        return out
