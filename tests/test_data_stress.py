"""Data under pressure: a full disk, writers racing readers across two broker processes, and a
1 GiB round trip with the broker's memory measured."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from broker.errors import InsufficientStorage
from broker.files import owner as owner_lock
from broker.files import upload
from broker.files.datastore import file_name
from tests.brokerproc import BrokerProcess
from tests.helpers import (
    BOUNDARY,
    MULTIPART,
    closing,
    data_files,
    data_keys,
    get_raw,
    parse_multipart,
    part_head,
    post,
    put,
    sha,
    temp_files,
)

# -- a full disk ---------------------------------------------------------------------------------

TINY = 1024 * 1024


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TINY}", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full(tiny_disk: Path, redis_url: str, r: redis.Redis) -> Iterator[tuple[BrokerProcess,
                                                                           httpx.Client]]:
    """A broker whose data directory is the tiny disk; stopped before the disk is unmounted."""
    proc = BrokerProcess(redis_url, tiny_disk).start()  # its log goes beside the mount point
    try:
        with httpx.Client(base_url=proc.url, timeout=30.0) as client:
            yield proc, client
    finally:
        proc.stop()


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_disk_is_507_and_leaves_nothing_behind(
        full: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, client = full
    free = free_bytes(proc.data_dir)

    response = client.post("/data", files={"file": ("big", os.urandom(2 * TINY))})

    assert response.status_code == 507, response.text
    assert response.json()["error"] == "insufficient_storage"
    assert data_keys(r) == []
    assert temp_files(proc.data_dir) == [] and data_files(proc.data_dir) == []
    assert free_bytes(proc.data_dir) == free
    # The space came back: a small upload fits again.
    assert get_raw(client, post(client, b"fits")).content == b"fits"


def test_a_put_that_fills_the_disk_keeps_the_old_content(
        full: tuple[BrokerProcess, httpx.Client], r: redis.Redis) -> None:
    proc, client = full
    data_id = post(client, b"old content")
    meta = r.hgetall(f"broker:data:{data_id}")

    response = put(client, data_id, os.urandom(2 * TINY))

    assert response.status_code == 507, response.text
    assert response.json()["error"] == "insufficient_storage"
    assert r.hgetall(f"broker:data:{data_id}") == meta
    assert get_raw(client, data_id).content == b"old content"
    assert temp_files(proc.data_dir) == []


def test_a_quota_error_is_507_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No quota to exhaust here: EDQUOT is raised in place of the write, in process.
    def over_quota(fd: int, data: object) -> int:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    async def chunks() -> AsyncIterator[bytes]:
        yield part_head() + b"x" * 1000 + closing()

    monkeypatch.setattr("broker.files.upload.os.write", over_quota)
    with pytest.raises(InsufficientStorage):
        asyncio.run(upload.receive(chunks(), BOUNDARY.encode(), tmp_path, 10_000))
    assert list(tmp_path.iterdir()) == []


# -- batches hashed and written by a thread ------------------------------------------------------

def uneven_chunks(content: bytes) -> Callable[[], AsyncIterator[bytes]]:
    """A multipart body of `content` in chunks of changing sizes, some across batches."""
    body = part_head() + content + closing()

    async def chunks() -> AsyncIterator[bytes]:
        at, step = 0, 1
        while at < len(body):
            yield body[at:at + step]
            at, step = at + step, step * 7 % 700_001 + 1
    return chunks


def test_a_body_of_many_batches_is_written_and_hashed_in_order(tmp_path: Path) -> None:
    content = os.urandom(3 * upload.BATCH + 12_345)
    received = asyncio.run(upload.receive(uneven_chunks(content)(), BOUNDARY.encode(), tmp_path,
                                          10 * upload.BATCH))
    try:
        assert received.path is not None
        assert (received.size, received.sha256) == (len(content), sha(content))
        assert received.path.read_bytes() == content
    finally:
        received.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_quota_error_in_a_later_batch_is_507_too(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, written = os.write, [0]

    def over_quota_later(fd: int, data: bytes) -> int:  # in the thread: the batch is large
        if written[0] >= upload.BATCH:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        n = real_write(fd, data)
        written[0] += n
        return n

    monkeypatch.setattr("broker.files.upload.os.write", over_quota_later)
    with pytest.raises(InsufficientStorage):
        asyncio.run(upload.receive(uneven_chunks(os.urandom(4 * upload.BATCH))(),
                                   BOUNDARY.encode(), tmp_path, 10 * upload.BATCH))
    assert list(tmp_path.iterdir()) == []


def test_a_client_gone_while_a_batch_is_being_written_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    started = threading.Event()

    def slow_write(fd: int, data: bytes) -> int:
        started.set()
        time.sleep(0.2)
        return real_write(fd, data)

    async def chunks() -> AsyncIterator[bytes]:
        yield part_head() + os.urandom(upload.BATCH)
        await asyncio.to_thread(started.wait, 5)  # the batch is in the thread now
        raise ConnectionResetError("client gone")

    async def scenario() -> None:
        with pytest.raises(ConnectionResetError):
            await upload.receive(chunks(), BOUNDARY.encode(), tmp_path, 10 * upload.BATCH)
        assert list(tmp_path.iterdir()) == []
        # The cleanup waited for the write: none lands later, in a file that reuses its fd.
        other = tmp_path / "other"
        with other.open("wb"):
            await asyncio.sleep(0.3)
        assert other.stat().st_size == 0

    monkeypatch.setattr("broker.files.upload.os.write", slow_write)
    asyncio.run(scenario())


# -- racing writers and readers ------------------------------------------------------------------

def version(v: int) -> bytes:
    """Version v: one repeated byte, and a length of its own."""
    return bytes([v]) * (512 * 1024 + v * 1000)


def check_download(response: httpx.Response) -> int:
    """Assert a download is exactly one whole version; return which."""
    assert response.status_code == 200, response.text
    body = response.content
    v = body[0]
    assert body == version(v), f"download mixes versions (starts as {v}, {len(body)} bytes)"
    assert response.headers["content-length"] == str(len(body))
    if "x-content-sha256" in response.headers:
        assert response.headers["x-content-sha256"] == sha(body)
    return v


def assert_consistent(r: redis.Redis, data_dir: Path, data_id: str) -> None:
    """The metadata names a file whose bytes it describes, and no other version is left."""
    meta = r.hgetall(f"broker:data:{data_id}")
    named = file_name(data_id, meta.get("version", ""))
    on_disk = (data_dir / named).read_bytes()
    assert (meta["sha256"], meta["size"]) == (sha(on_disk), str(len(on_disk)))
    assert [p.name for p in data_dir.iterdir() if p.name.split(".")[0] == data_id] == [named]


@pytest.fixture
def two_brokers(start_broker: Callable[..., BrokerProcess],
                tmp_path: Path) -> Iterator[list[httpx.Client]]:
    """Two broker processes sharing one data directory and one Redis."""
    procs = [start_broker(tmp_path / "shared-data"), start_broker(tmp_path / "shared-data")]
    clients = [httpx.Client(base_url=p.url, timeout=30.0) for p in procs]
    yield clients
    for c in clients:
        c.close()


def test_downloads_during_replacements_never_mix_versions(
        two_brokers: list[httpx.Client], r: redis.Redis, tmp_path: Path) -> None:
    a, b = two_brokers
    data_id = post(a, version(1))
    stop = threading.Event()
    seen: set[int] = set()

    def write(client: httpx.Client, versions: range) -> None:
        for v in versions:
            assert put(client, data_id, version(v)).status_code == 200

    def read(client: httpx.Client) -> None:
        while not stop.is_set():
            seen.add(check_download(get_raw(client, data_id)))

    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(read, c) for c in (a, b)]
        writers = [pool.submit(write, a, range(2, 40, 2)), pool.submit(write, b, range(3, 40, 2))]
        for w in writers:
            w.result()
        stop.set()
        for reader in readers:
            reader.result()
    assert len(seen) > 2  # the readers really overlapped the writers
    check_download(get_raw(a, data_id))
    assert_consistent(r, tmp_path / "shared-data", data_id)


def test_racing_puts_through_two_processes_leave_metadata_matching_the_bytes(
        two_brokers: list[httpx.Client], r: redis.Redis, tmp_path: Path) -> None:
    a, b = two_brokers
    data_id = post(a, b"start")
    barrier = threading.Barrier(2)

    def write(client: httpx.Client, v: int) -> None:
        barrier.wait()
        assert put(client, data_id, version(v)).status_code == 200

    with ThreadPoolExecutor(2) as pool:
        for round_ in range(15):
            list(pool.map(write, (a, b), (2 * round_ + 1, 2 * round_ + 2)))
            assert_consistent(r, tmp_path / "shared-data", data_id)
            winner = check_download(get_raw(b, data_id))
            assert winner in (2 * round_ + 1, 2 * round_ + 2)


def test_a_delete_racing_a_put_leaves_no_orphan(two_brokers: list[httpx.Client],
                                                  r: redis.Redis, tmp_path: Path) -> None:
    a, b = two_brokers
    for _ in range(10):
        data_id = post(a, b"x")
        with ThreadPoolExecutor(2) as pool:
            replaced = pool.submit(put, a, data_id, version(5))
            deleted = pool.submit(b.delete, "/data", headers={"X-Data-Id": data_id})
            assert replaced.result().status_code in (200, 404)
            assert deleted.result().status_code == 204
        assert data_keys(r) == []
        assert data_files(tmp_path / "shared-data") == []
        assert temp_files(tmp_path / "shared-data") == []


def open_data_files(proc: BrokerProcess) -> list[str]:
    assert proc.proc is not None
    fds = Path(f"/proc/{proc.proc.pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    owner = str(proc.data_dir / owner_lock.LOCK_FILE)  # held open while the broker runs
    return [t for t in targets if t.startswith(str(proc.data_dir)) and t != owner]


def test_abandoned_downloads_leave_no_open_files(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker()
    with httpx.Client(base_url=proc.url, timeout=30.0) as client:
        data_id = post(client, os.urandom(64 * 1024 * 1024))  # more than the socket buffers
        for _ in range(10):
            # The download abandoned last time is closed once the broker notices the hang-up;
            # wait for that, so that the one open now is the only one.
            deadline = time.monotonic() + 10
            while open_data_files(proc) and time.monotonic() < deadline:
                time.sleep(0.01)
            with client.stream("GET", "/data", headers={"X-Data-Id": data_id}) as response:
                chunks = response.iter_raw(65536)  # kept: dropping it would close the response
                next(chunks)  # a little, then hang up
                assert open_data_files(proc) == [str(proc.data_dir / data_id)]
        deadline = time.monotonic() + 10
        while open_data_files(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_data_files(proc) == []
        assert get_raw(client, data_id).status_code == 200  # and the broker is fine


def test_a_put_whose_id_is_deleted_while_the_body_streams_is_404_and_stores_nothing(
        served: httpx.Client, r: redis.Redis, broker_proc: BrokerProcess) -> None:
    data_id = post(served, b"doomed")
    deleted = threading.Event()

    def body() -> Iterator[bytes]:
        yield part_head() + b"new content, first half; "
        assert deleted.wait(10)
        yield b"second half" + closing()

    with ThreadPoolExecutor(1) as pool:
        putting = pool.submit(served.put, "/data", content=body(),
                              headers={"Content-Type": MULTIPART, "X-Data-Id": data_id})
        deadline = time.monotonic() + 10
        while not temp_files(broker_proc.data_dir):  # past the existence check, streaming
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=broker_proc.url) as other:
            assert other.delete("/data", headers={"X-Data-Id": data_id}).status_code == 204
        deleted.set()
        response = putting.result()
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_data"
    assert data_keys(r) == []
    assert data_id not in data_files(broker_proc.data_dir)
    assert temp_files(broker_proc.data_dir) == []


# -- one GiB through the broker ------------------------------------------------------------------

GIB = 1024**3
MIB = 1024**2
RSS_BOUND_KIB = 100 * 1024


def gib_of_content(digest: hashlib._Hash) -> Iterator[bytes]:
    """1 GiB in 1 MiB chunks, each different, hashed as it is produced (never all in memory)."""
    block = bytearray(os.urandom(MIB))
    for i in range(GIB // MIB):
        block[:8] = i.to_bytes(8, "big")
        chunk = bytes(block)
        digest.update(chunk)
        yield chunk


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_gib_round_trip_keeps_the_broker_memory_flat(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis) -> None:
    proc = start_broker()
    sent = hashlib.sha256()
    head, tail = part_head(), closing()

    def body() -> Iterator[bytes]:
        yield head
        yield from gib_of_content(sent)
        yield tail

    with httpx.Client(base_url=proc.url, timeout=120.0) as client:
        started = time.monotonic()
        response = client.post("/data", content=body(), headers={
            "Content-Type": MULTIPART, "Content-Length": str(len(head) + GIB + len(tail))})
        upload_s = time.monotonic() - started
        assert response.status_code == 200, response.text
        data_id = response.text
        assert r.hget(f"broker:data:{data_id}", "sha256") == sent.hexdigest()

        started = time.monotonic()
        with client.stream("GET", "/data", headers={"X-Data-Id": data_id}) as download:
            assert download.headers["content-length"] == str(
                int(download.headers["content-length"]))
            parts = parse_multipart(download.headers["content-type"],
                                    download.iter_raw(MIB), keep=False)
        multipart_s = time.monotonic() - started
        assert [(p.size, p.hash.hexdigest()) for p in parts] == [(GIB, sent.hexdigest())]

        started = time.monotonic()
        raw = hashlib.sha256()
        size = 0
        with client.stream("GET", "/data", headers={
                "X-Data-Id": data_id, "Accept": "application/octet-stream"}) as download:
            for chunk in download.iter_raw(MIB):
                raw.update(chunk)
                size += len(chunk)
        raw_s = time.monotonic() - started
        assert (size, raw.hexdigest()) == (GIB, sent.hexdigest())

    peak = proc.peak_rss_kib()
    print(f"\n1 GiB: upload {GIB / MIB / upload_s:.0f} MiB/s, multipart download "
          f"{GIB / MIB / multipart_s:.0f} MiB/s, raw download {GIB / MIB / raw_s:.0f} MiB/s; "
          f"broker peak RSS {peak / 1024:.1f} MiB")
    assert peak < RSS_BOUND_KIB, f"broker peak RSS {peak} KiB"
