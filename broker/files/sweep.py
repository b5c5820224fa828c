"""The data sweep: what a crash or a lost answer left between the data directory and the
metadata in Redis.

Each pass removes (and logs each removal):
- temporary files no live upload holds (their writer's flock is free: its process died);
- content files (`<data_id>` or `<data_id>.<version>`) that no metadata names, untouched for
  `GRACE` seconds: the version a PUT replaced when its answer was lost, the file of a create
  whose script never ran, or of a DELETE that died before removing it;
- metadata hashes in state `ready` whose file is missing, unchanged for `GRACE` seconds (only
  damage from outside does that now: every write places its file before its metadata names it).

- with BROKER_DATA_TTL set, data that has outlived it: named by no job that still exists and
  not written for that long (metadata and file; data_expire.lua decides).

The third and fourth share the broker's one periodic scan of Redis: SCAN MATCH `<prefix>data:*`
COUNT 1000, run every BROKER_DATA_SWEEP_INTERVAL seconds (600 by default), in batches, never
blocking Redis.

Several broker processes may sweep at once: removing a file is idempotent, a file is removed
only if a fresh look at Redis still finds it unnamed and it is still old (a file a write is
about to name was placed moments ago), and metadata is dropped by data_forget.lua only if it is
still what the sweep read. Every broker sharing a Redis (and a key prefix) must share the data
directory too: a sweep judges the metadata by the files it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from redis.exceptions import RedisError

from broker import ids
from broker.clock import now_ms
from broker.files import upload
from broker.files.datastore import DataStore

log = logging.getLogger("broker")
T = TypeVar("T")

# Younger than this, a file or metadata without its other half may be a write in progress.
GRACE = 60.0
SCAN_COUNT = 1000


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _old_content_files(directory: Path, cutoff: float) -> list[tuple[str, str]]:
    """(data_id, version) of the content files in `directory` last modified before `cutoff`."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            data_id, _, version = entry.name.partition(".")
            if not ids.is_id(data_id) or (version and not ids.is_id(version)):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    found.append((data_id, version))
            except FileNotFoundError:
                pass
    return found


def _unlink_if_older(path: Path, cutoff: float) -> bool:
    try:
        if path.stat(follow_symlinks=False).st_mtime >= cutoff:
            return False
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # only an empty one: what is inside is not ours to judge
        else:
            path.unlink()
    except (FileNotFoundError, OSError):
        return False
    return True


async def _remove_temps(store: DataStore) -> int:
    removed = await asyncio.to_thread(upload.sweep_abandoned, store.dir)
    for temp in removed:
        log.warning("data sweep: removed %s, left by an upload whose broker process died", temp)
    return len(removed)


async def _named(store: DataStore, files: list[tuple[str, str]]) -> list[bool]:
    """For each (data_id, version): whether the metadata names that file as the content."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for data_id, _ in files:
            pipe.hmget(store.keys.data(data_id), "state", "version")
        found = await pipe.execute()
    return [state == "ready" and (version or "") == wanted
            for (_, wanted), (state, version) in zip(files, found, strict=True)]


async def _remove_orphan_files(store: DataStore) -> int:
    cutoff = time.time() - GRACE
    candidates = await asyncio.to_thread(_old_content_files, store.dir, cutoff)
    removed = 0
    for batch in _batches(candidates, SCAN_COUNT):
        unnamed = [f for f, named in zip(batch, await _named(store, batch), strict=True)
                   if not named]
        if not unnamed:
            continue
        for (data_id, version), named in zip(unnamed, await _named(store, unnamed),
                                             strict=True):
            path = store.path(data_id, version)
            if not named and await asyncio.to_thread(_unlink_if_older, path, cutoff):
                log.warning("data sweep: removed %s, which no metadata names", path)
                removed += 1
    return removed


async def _forget_missing(store: DataStore, names: list[str], cutoff_ms: int) -> int:
    """Drop the metadata among `names` that is ready, old, and has no file."""
    prefix = store.keys.data_prefix
    names = [n for n in names if n.startswith(prefix) and ids.is_id(n[len(prefix):])]
    async with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(name, "state", "updated_at", "version")
        fields = await pipe.execute()
    old = [(name[len(prefix):], updated, version or "")
           for name, (state, updated, version) in zip(names, fields, strict=True)
           if state == "ready" and updated is not None and updated.isdigit()
           and int(updated) < cutoff_ms]
    removed = 0
    for data_id, updated, version in old:
        if await asyncio.to_thread(os.path.lexists, store.path(data_id, version)):
            continue
        if await store.scripts.data_forget([store.keys.data(data_id)], [updated]):
            log.warning("data sweep: removed the metadata of %s, whose file is missing",
                        data_id)
            removed += 1
    return removed


async def _expire(store: DataStore, names: list[str]) -> int:
    """Remove the data among `names` that BROKER_DATA_TTL has run out for: named by no job
    that still exists, and not written for that long (data_expire.lua decides)."""
    prefix = store.keys.data_prefix
    names = [n for n in names if n.startswith(prefix) and ids.is_id(n[len(prefix):])]
    cutoff = now_ms() - store.data_ttl * 1000
    async with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(name, "updated_at", "jobs")
        fields = await pipe.execute()
    removed = 0
    for name, (updated, jobs) in zip(names, fields, strict=True):
        if jobs != "0" or not (updated or "").isdigit() or int(updated) >= cutoff:
            continue
        result = await store.scripts.data_expire([name], [updated, cutoff])
        if result[0] == "ok":
            if result[1] == "ready":
                await asyncio.to_thread(_unlink, store.path(name[len(prefix):], result[2]))
            removed += 1
    return removed


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _sweep_metadata(store: DataStore) -> tuple[int, int]:
    """One SCAN over the data metadata: the metadata dropped because its file is missing, and
    the data BROKER_DATA_TTL removed (when set)."""
    cutoff_ms = now_ms() - int(GRACE * 1000)
    match = _glob_escape(store.keys.data_prefix) + "*"
    forgotten, expired, cursor = 0, 0, 0
    while True:
        cursor, found = await store.redis.scan(cursor, match=match, count=SCAN_COUNT)
        names = [n if isinstance(n, str) else n.decode() for n in found]
        if names:
            forgotten += await _forget_missing(store, names, cutoff_ms)
            if store.data_ttl:
                expired += await _expire(store, names)
        if cursor == 0:
            return forgotten, expired


async def sweep(store: DataStore) -> dict[str, int]:
    """One pass; the counts of what it removed."""
    temps = await _remove_temps(store)
    orphans = await _remove_orphan_files(store)
    forgotten, expired = await _sweep_metadata(store)
    return {"temp_files": temps, "orphan_files": orphans, "orphan_metadata": forgotten,
            "expired_data": expired}


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
