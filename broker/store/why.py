"""Why a job is not running: a machine-readable reason and a sentence, computed on read.

Bounded: one pipelined round trip for a pending or scheduled job (a queue position is the
sorted set's rank, never a scan), and for a waiting job one per step of following the
producers of its inputs (at most CYCLE_HOPS), with at most MAX_AFTER reads for `after`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from broker.store.keys import Keys
from broker.wire import iso

CYCLE_HOPS = 10


def _ago(ms: str | None) -> str:
    if not ms:
        return "never"
    seconds = max(0.0, time.time() - int(ms) / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"last one seen {seconds / size:.0f} {unit} ago"
    return f"last one seen {seconds:.0f} s ago"


def _input_ids(h: dict[str, str]) -> list[str]:
    """As lua/lib/deps.lua's input_ids: data1_id, and a function_id shaped like a data id."""
    out = [h["data1_id"]] if h.get("data1_id") else []
    fn = h.get("function_id", "")
    if len(fn) == 8 and fn != h.get("data1_id"):
        out.append(fn)
    return out


async def _pending(redis: Redis, keys: Keys, job_id: str, h: dict[str, str]) -> dict[str, Any]:
    runtime = h["runtime"]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sismember(keys.paused, runtime)
        pipe.zrank(keys.queue(runtime), job_id)
        pipe.zcard(keys.queue(runtime))
        pipe.scard(keys.runtime_workers(runtime))
        pipe.hget(keys.running, runtime)
        pipe.hget(keys.runtime_seen, runtime)
        paused, rank, depth, workers, running, seen = await pipe.execute()
    running = int(running or 0)
    if rank is None and h.get("retry_at"):
        error = (h.get("error") or "").splitlines()[0:1]
        return {"reason": "retry_backoff", "until": iso(h["retry_at"]),
                "detail": f"waiting out a retry backoff until {iso(h['retry_at'])}"
                          + (f"; last error: {error[0][:200]}" if error else "")}
    place = f"position {rank + 1:,} of {depth:,} in {runtime}" if rank is not None else ""
    if paused:
        return {"reason": "paused", "detail": f"runtime {runtime} is paused (PUT /runtimes "
                f"with paused false resumes it)" + (f"; {place}" if place else "")}
    if not workers:
        return {"reason": "no_worker",
                "detail": f"no live worker serves runtime {runtime} ({_ago(seen)})"}
    busy = ", all busy" if running >= workers else ""
    return {"reason": "queued", "position": rank + 1 if rank is not None else None,
            "detail": f"{place}; {workers} live worker{'s' if workers != 1 else ''}, "
                      f"{running} {runtime} job{'s' if running != 1 else ''} running{busy}"}


async def _waiting(redis: Redis, keys: Keys, job_id: str, h: dict[str, str]) -> dict[str, Any]:
    inputs = _input_ids(h)
    after: list[str] = orjson.loads(h["after"]) if h.get("after") else []
    async with redis.pipeline(transaction=False) as pipe:
        for data_id in inputs:
            pipe.hmget(keys.data(data_id), ["state", "filled", "output_of"])
        for upstream in after:
            pipe.hget(keys.job(upstream), "status")
        rows = await pipe.execute()
    data_rows, after_rows = rows[:len(inputs)], rows[len(inputs):]
    producers = [d[2] for d in data_rows if d[2]]
    statuses: dict[str, str | None] = {}
    if producers:
        async with redis.pipeline(transaction=False) as pipe:
            for producer in producers:
                pipe.hget(keys.job(producer), "status")
            statuses = dict(zip(producers, await pipe.execute(), strict=True))
    unfilled = []
    for data_id, (state, filled, producer) in zip(inputs, data_rows, strict=True):
        if state is None or filled == "1":
            continue
        status = statuses.get(producer) if producer else None
        if status == "succeeded" or (status is None and state == "ready"):
            continue
        unfilled.append({"data_id": data_id, "producer": producer if status else None,
                         "producer_status": status})
    pending_after = [{"job_id": j, "status": s} for j, s in zip(after, after_rows, strict=True)
                     if s != "succeeded"]
    cycle = await _cycle(redis, keys, job_id, [u["producer"] for u in unfilled
                                                if u["producer"]] + [a["job_id"] for a in
                                                                     pending_after])
    return {"reason": "inputs" if unfilled else "after", "inputs": unfilled,
            "after": pending_after, "cycle": cycle or None,
            "detail": _waiting_detail(job_id, unfilled, pending_after, cycle)}


def _waiting_detail(job_id: str, unfilled: list[dict[str, Any]],
                    pending_after: list[dict[str, Any]], cycle: list[str]) -> str:
    parts = []
    if unfilled:
        parts.append("inputs not filled yet: " + ", ".join(
            f"{u['data_id']} (to be written by job {u['producer']}, {u['producer_status']})"
            if u["producer"] else f"{u['data_id']} (reserved; a PUT /data fills it)"
            for u in unfilled))
    if pending_after:
        parts.append("after jobs not succeeded yet: " + ", ".join(
            f"{a['job_id']} ({a['status']})" for a in pending_after))
    if cycle:
        parts.append("it can never start: a cycle " + " -> ".join([job_id, *cycle]))
    return "; ".join(parts) or "what it waited on is done; it goes on now"


async def _cycle(redis: Redis, keys: Keys, job_id: str, upstream: list[str]) -> list[str]:
    """A chain of waiting jobs from `upstream` back to `job_id`, followed at most CYCLE_HOPS
    steps breadth first (one round trip a step); [] when there is none within reach."""
    paths = {u: [u] for u in upstream}
    for _ in range(CYCLE_HOPS):
        if not paths:
            return []
        if job_id in paths:
            return paths[job_id]
        async with redis.pipeline(transaction=False) as pipe:
            for u in paths:
                pipe.hmget(keys.job(u), ["status", "data1_id", "function_id", "after"])
            rows = dict(zip(paths, await pipe.execute(), strict=True))
        following: dict[str, list[str]] = {}
        for u, (status, data1, fn, after) in rows.items():
            if status != "waiting":
                continue
            h = {"data1_id": data1 or "", "function_id": fn or ""}
            nxt = list(orjson.loads(after)) if after else []
            async with redis.pipeline(transaction=False) as pipe:
                for data_id in _input_ids(h):
                    pipe.hget(keys.data(data_id), "output_of")
                nxt += [p for p in await pipe.execute() if p]
            for n in nxt:
                following.setdefault(n, [*paths[u], n])
        paths = dict(list(following.items())[:100])
    return paths.get(job_id, [])


async def why(redis: Redis, keys: Keys, job_id: str, h: dict[str, str]) -> dict[str, Any] | None:
    """Why the job in hash `h` is not running; None for a running or finished job."""
    status = h.get("status")
    if status == "scheduled":
        return {"reason": "scheduled", "until": iso(h.get("run_at")),
                "detail": f"scheduled to run at {iso(h.get('run_at'))}"}
    if status == "pending":
        return await _pending(redis, keys, job_id, h)
    if status == "waiting":
        return await _waiting(redis, keys, job_id, h)
    return None
