"""No operation on one job scans a queue: every command the scripts send costs O(log N) or
less in the queue's length (ZRANGE only at a queue's head, or as a LIMITed batch of what is
due). Checked on the commands themselves (MONITOR), which holds for a
queue of any size; the benchmark measures the same thing as time."""

from __future__ import annotations

import threading

import httpx
import redis

from tests.helpers import contract, put_job, register, submit

# Commands whose cost does not grow with a queue's length (ZRANGE only as a look at the head),
# or grows as its logarithm.
CONSTANT = {"hget", "hmget", "hset", "hdel", "hincrby", "hgetall", "exists", "incr", "del",
            "expire", "persist", "publish", "sadd", "srem", "zadd", "zrem", "zcard", "zscore",
            "smembers", "evalsha", "eval", "echo", "ping", "hello", "script", "client",
            "get", "set", "scard", "sismember", "smismember", "lpop", "rpush",
            "xadd",  # with MAXLEN ~: trims whole nodes, amortized constant
            "zpopmin"}  # ZPOPMIN of a claim's count (at most 100): the head of a queue
# Not here: after an outage the first settle moves every worker's and lease's deadline
# (settle.lua: absorb_outage), once per outage, not per job.


def _monitor(r: redis.Redis, seen: list[list[str]], ready: threading.Event) -> None:
    with r.monitor() as m:
        ready.set()
        for event in m.listen():
            words = event["command"].split(" ")
            if words[0].upper() == "ECHO" and "stop-monitor" in event["command"]:
                return
            seen.append(words)


def test_cancel_delete_move_and_claim_touch_only_the_head_or_one_member(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    jobs = [submit(client, "sh") for _ in range(6)]
    seen: list[list[str]] = []
    ready = threading.Event()
    t = threading.Thread(target=_monitor, args=(r, seen, ready))
    t.start()
    ready.wait(5)
    put_job(client, jobs[3], {"status": "cancelled"})
    client.delete("/job", headers={"X-Job-Id": jobs[4]})
    put_job(client, jobs[2], {"runtime": "node"})
    contract(client, worker)
    r.echo("stop-monitor")
    t.join(10)
    names = [w[0].strip('"').lower() for w in seen]
    assert "evalsha" in names or "eval" in names
    assert set(names) <= CONSTANT | {"zrange"}, sorted(set(names) - CONSTANT)
    for words in seen:
        if words[0].strip('"').lower() == "zrange":
            args = [w.strip('"').upper() for w in words[2:]]
            # Either a look at a queue's head, or a bounded batch of what is due by time.
            assert args[:2] == ["0", "0"] or ("BYSCORE" in args and "LIMIT" in args), words
