"""The data sweep (broker/data_sweep.py) on a real Redis: abandoned temporary files, files without
metadata and metadata without files are removed and logged, anything young or alive is left
alone, and several sweepers at once are safe. Most tests sweep from the test process with a
DataStore of their own; the last ones watch a broker process sweep by itself."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from broker import ids
from broker.files import sweep as data_sweep
from broker.files import upload
from broker.files.datastore import DataStore
from broker.store.keys import Keys
from broker.store.scripts import Scripts
from tests.brokerproc import BrokerProcess, free_port
from tests.helpers import data_files, data_keys, sha, temp_files, until

T = TypeVar("T")
LONG_AGO = time.time() - 3600


def with_stores(redis_url: str, data_dir: Path, count: int,
                use: Callable[[list[DataStore]], Awaitable[T]]) -> T:
    """Run `use` on `count` DataStores of one data directory, as as many broker processes
    would hold (each with its own Redis client and locks)."""
    async def main() -> T:
        clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(count)]
        try:
            return await use([DataStore(c, Scripts(c), Keys(), data_dir, 1 << 30)
                              for c in clients])
        finally:
            for c in clients:
                await c.aclose()
    return asyncio.run(main())


def sweep_once(redis_url: str, data_dir: Path,
               before: Callable[[], object] = lambda: None) -> dict[str, int]:
    """One sweep by a fresh DataStore; `before` runs once the store is built (which sweeps
    temporary files by itself, as a starting broker does)."""
    async def use(stores: list[DataStore]) -> dict[str, int]:
        before()
        return await data_sweep.sweep(stores[0])
    return with_stores(redis_url, data_dir, 1, use)


def orphan_file(data_dir: Path, mtime: float = LONG_AGO) -> str:
    data_id = ids.new_id()
    path = data_dir / data_id
    path.write_bytes(b"no metadata")
    os.utime(path, (mtime, mtime))
    return data_id


def metadata(r: redis.Redis, data_dir: Path, *, state: str = "ready", updated_ms: int,
             with_file: bool = False) -> str:
    data_id = ids.new_id()
    r.hset(f"broker:data:{data_id}", mapping={
        "data_id": data_id, "state": state, "size": 5, "sha256": sha(b"hello"),
        "created_at": updated_ms, "updated_at": updated_ms})
    if with_file:
        (data_dir / data_id).write_bytes(b"hello")
    return data_id


def old_ms() -> int:
    return int(LONG_AGO * 1000)


def test_a_sweep_removes_old_orphans_of_both_kinds_and_logs_each(
        redis_url: str, r: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lonely_file = orphan_file(data_dir)
    lonely_meta = metadata(r, data_dir, updated_ms=old_ms())

    with caplog.at_level(logging.WARNING, logger="broker"):
        counts = sweep_once(redis_url, data_dir)

    assert counts == {"temp_files": 0, "orphan_files": 1, "orphan_metadata": 1,
                      "expired_data": 0}
    assert data_files(data_dir) == []
    assert data_keys(r) == []
    logged = caplog.text
    assert f"removed {data_dir / lonely_file}, which no metadata names" in logged
    assert f"removed the metadata of {lonely_meta}, whose file is missing" in logged


def test_a_sweep_leaves_young_reserved_and_whole_data_alone(
        redis_url: str, r: redis.Redis, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    now_ms = int(time.time() * 1000)
    young_file = orphan_file(data_dir, mtime=time.time() - 5)
    young_meta = metadata(r, data_dir, updated_ms=now_ms - 5000)
    reserved = metadata(r, data_dir, state="reserved", updated_ms=old_ms())
    whole = metadata(r, data_dir, updated_ms=old_ms(), with_file=True)
    os.utime(data_dir / whole, (LONG_AGO, LONG_AGO))
    (data_dir / "not-an-id").write_bytes(b"x")
    os.utime(data_dir / "not-an-id", (LONG_AGO, LONG_AGO))
    before_keys = data_keys(r)

    counts = sweep_once(redis_url, data_dir)

    assert counts == {"temp_files": 0, "orphan_files": 0, "orphan_metadata": 0,
                      "expired_data": 0}
    assert data_files(data_dir) == sorted([young_file, whole, "not-an-id"])
    assert data_keys(r) == before_keys == sorted(
        f"broker:data:{i}" for i in (young_meta, reserved, whole))


def test_metadata_changed_since_the_sweep_read_it_is_kept(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_id = metadata(r, data_dir, updated_ms=old_ms())
    r.hset(f"broker:data:{data_id}", "updated_at", old_ms() + 1)  # a commit landed meanwhile

    async def use(stores: list[DataStore]) -> Any:
        return await stores[0].scripts.data_forget([f"broker:data:{data_id}"], [old_ms()])

    assert with_stores(redis_url, data_dir, 1, use) == 0
    assert data_keys(r) == [f"broker:data:{data_id}"]


def test_abandoned_temp_files_go_whatever_their_age_and_live_ones_stay(
        redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    live_fd, live = upload.locked_temp(data_dir)  # an upload in progress, in this process
    dead = data_dir / ".tmp-dead"
    try:
        with caplog.at_level(logging.WARNING, logger="broker"):
            counts = sweep_once(redis_url, data_dir, lambda: dead.write_bytes(
                b"written a moment ago by a process now dead"))
        assert counts["temp_files"] == 1
        assert temp_files(data_dir) == [live.name]
        assert f"removed {dead}, left by an upload" in caplog.text
    finally:
        upload.Upload(live, 0, "", live_fd).discard()
    assert temp_files(data_dir) == []


def test_a_temp_file_swept_before_its_writer_locked_it_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_swept(**kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(**kwargs)
        made.append(name)
        if len(made) == 1:  # a sweep slips in between creation and lock
            assert upload.sweep_abandoned(tmp_path) == [Path(name)]
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_swept)
    fd, path = upload.locked_temp(tmp_path)
    try:
        assert len(made) == 2
        assert str(path) == made[1] and path.exists()
        with path.open("rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_two_sweepers_at_once_remove_each_orphan_once_without_error(
        redis_url: str, r: redis.Redis, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for _ in range(200):
        orphan_file(data_dir)
        metadata(r, data_dir, updated_ms=old_ms())

    async def use(stores: list[DataStore]) -> list[dict[str, int]]:
        for i in range(20):
            (data_dir / f".tmp-dead{i}").write_bytes(b"x")
        return list(await asyncio.gather(*(data_sweep.sweep(s) for s in stores)))

    results = with_stores(redis_url, data_dir, 3, use)

    totals = {k: sum(c[k] for c in results) for k in results[0]}
    assert totals == {"temp_files": 20, "orphan_files": 200, "orphan_metadata": 200,
                      "expired_data": 0}
    assert data_files(data_dir) == [] and temp_files(data_dir) == [] and data_keys(r) == []


def test_run_logs_a_redis_outage_and_carries_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        down = Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
        store = DataStore(down, Scripts(down), Keys(), tmp_path / "data", 1 << 20)
        task = asyncio.create_task(data_sweep.run(store, 0.05))
        await asyncio.sleep(0.5)
        try:
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await down.aclose()

    with caplog.at_level(logging.WARNING, logger="broker"):
        asyncio.run(main())
    assert caplog.text.count("data sweep skipped") >= 2


# -- a broker sweeping by itself (needs data_sweep.run wired into the app's lifespan) --------------

def test_a_broker_sweeps_orphans_on_its_own(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc = start_broker(data_dir, BROKER_DATA_SWEEP_INTERVAL="0.5")
    lonely_file = orphan_file(data_dir)
    lonely_meta = metadata(r, data_dir, updated_ms=old_ms())

    until(lambda: data_files(data_dir) == [] and data_keys(r) == [])
    log = proc.log()
    assert f"removed {data_dir / lonely_file}, which no metadata names" in log
    assert f"removed the metadata of {lonely_meta}" in log


def test_two_brokers_sweeping_one_data_dir_do_not_error(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    procs = [start_broker(data_dir, BROKER_DATA_SWEEP_INTERVAL="0.2") for _ in range(2)]
    for _ in range(3):
        for _ in range(50):
            orphan_file(data_dir)
            metadata(r, data_dir, updated_ms=old_ms())
        until(lambda: data_files(data_dir) == [] and data_keys(r) == [])
    # Each removal is logged once, by whichever broker made it.
    until(lambda: sum(p.log().count("which no metadata names") for p in procs) >= 150)
    for proc in procs:
        assert proc.proc is not None and proc.proc.poll() is None
        log = proc.log()
        assert "Traceback" not in log and "skipped" not in log, log
    removed = sum(p.log().count("which no metadata names") for p in procs)
    assert removed == 150
