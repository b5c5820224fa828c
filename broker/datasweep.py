"""The data sweep: what a crash left between the data directory and the metadata in Redis.

Each pass removes (and logs each removal):
- temporary files no live upload holds (their writer's flock is free: its process died);
- files named like a data id with no metadata hash, untouched for `GRACE` seconds (a create
  whose metadata was lost, or a DELETE that died before removing the file);
- metadata hashes in state `ready` whose file is missing, unchanged for `GRACE` seconds (a
  commit whose broker died before the rename).

The third is the broker's one periodic scan of Redis: SCAN MATCH `<prefix>data:*` COUNT 1000,
run every BROKER_DATA_SWEEP_INTERVAL seconds (600 by default), in batches, never blocking
Redis. No request ever scans.

Several broker processes may sweep at once: removing a file is idempotent, an orphan file is
removed under its id's lock after a fresh look at Redis, and metadata is dropped by
data_forget.lua only if it is still what the sweep read. Every broker sharing a Redis (and a key
prefix) must share the data directory too: a sweep judges the metadata by the files it sees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from redis.exceptions import RedisError

from broker import ids, upload
from broker.clock import now_ms
from broker.data import DataStore

log = logging.getLogger("broker")

# Younger than this, a file or metadata without its other half may be a write in progress.
GRACE = 60.0
SCAN_COUNT = 1000


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _old_id_files(directory: Path, cutoff: float) -> list[str]:
    """Names of the files in `directory` named like a data id and last modified before
    `cutoff`."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not ids.is_id(entry.name):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(
                        follow_symlinks=False).st_mtime < cutoff:
                    found.append(entry.name)
            except FileNotFoundError:
                pass
    return found


def _unlink_if_older(path: Path, cutoff: float) -> bool:
    try:
        if path.stat(follow_symlinks=False).st_mtime >= cutoff:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


async def _remove_temps(store: DataStore) -> int:
    removed = await asyncio.to_thread(upload.sweep_abandoned, store.dir)
    for temp in removed:
        log.warning("data sweep: removed %s, left by an upload whose broker process died", temp)
    return len(removed)


async def _remove_orphan(store: DataStore, data_id: str, cutoff: float) -> bool:
    # Under the id's lock, as a create records the metadata and renames the file under it.
    async with store.locks.hold(data_id):
        if await store.redis.exists(store.keys.data(data_id)):
            return False
        return await asyncio.to_thread(_unlink_if_older, store.path(data_id), cutoff)


async def _remove_orphan_files(store: DataStore) -> int:
    cutoff = time.time() - GRACE
    candidates = await asyncio.to_thread(_old_id_files, store.dir, cutoff)
    removed = 0
    for batch in _batches(candidates, SCAN_COUNT):
        async with store.redis.pipeline(transaction=False) as pipe:
            for data_id in batch:
                pipe.exists(store.keys.data(data_id))
            found = await pipe.execute()
        for data_id, exists in zip(batch, found, strict=True):
            if not exists and await _remove_orphan(store, data_id, cutoff):
                log.warning("data sweep: removed file %s, which had no metadata",
                            store.path(data_id))
                removed += 1
    return removed


async def _forget_missing(store: DataStore, names: list[str], cutoff_ms: int) -> int:
    """Drop the metadata among `names` that is ready, old, and has no file."""
    prefix = store.keys.data_prefix
    names = [n for n in names if n.startswith(prefix) and ids.is_id(n[len(prefix):])]
    async with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(name, "state", "updated_at")
        fields = await pipe.execute()
    old = [(name[len(prefix):], updated) for name, (state, updated) in zip(names, fields,
                                                                            strict=True)
           if state == "ready" and updated is not None and updated.isdigit()
           and int(updated) < cutoff_ms]
    removed = 0
    for data_id, updated in old:
        if await asyncio.to_thread(os.path.lexists, store.path(data_id)):
            continue
        if await store.scripts.data_forget([store.keys.data(data_id)], [updated]):
            log.warning("data sweep: removed the metadata of %s, whose file is missing",
                        data_id)
            removed += 1
    return removed


async def _forget_missing_files(store: DataStore) -> int:
    cutoff_ms = now_ms() - int(GRACE * 1000)
    match = _glob_escape(store.keys.data_prefix) + "*"
    removed = 0
    cursor = 0
    while True:
        cursor, names = await store.redis.scan(cursor, match=match, count=SCAN_COUNT)
        if names:
            removed += await _forget_missing(
                store, [n if isinstance(n, str) else n.decode() for n in names], cutoff_ms)
        if cursor == 0:
            return removed


async def sweep(store: DataStore) -> dict[str, int]:
    """One pass; the counts of what it removed."""
    return {
        "temp_files": await _remove_temps(store),
        "orphan_files": await _remove_orphan_files(store),
        "orphan_metadata": await _forget_missing_files(store),
    }


async def run(store: DataStore, interval: float) -> None:
    """Sweep now, then every `interval` seconds, for ever; Redis or disk trouble skips a pass."""
    while True:
        try:
            counts = await sweep(store)
            if any(counts.values()):
                log.info("data sweep: removed %s", ", ".join(
                    f"{count} {what.replace('_', ' ')}" for what, count in counts.items()))
        except (RedisError, OSError) as exc:
            log.warning("data sweep skipped: %s", exc)
        await asyncio.sleep(interval)
