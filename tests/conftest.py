from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor

from tests.brokerproc import BrokerProcess, free_port

redis_server = factories.redis_proc()
redisdb = factories.redisdb("redis_server", decode=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: object) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def broker_proc(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        BrokerProcess]:
    """One broker shared by the tests that need no special settings."""
    proc = BrokerProcess(redis_url, tmp_path_factory.mktemp("shared") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def r(redisdb: redis.Redis) -> redis.Redis:
    """A client on the test Redis; the database is flushed after each test."""
    return redisdb


@pytest.fixture
def client(broker_proc: BrokerProcess, r: redis.Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=broker_proc.url, timeout=30.0) as c:
        yield c


@pytest.fixture
def start_broker(redis_url: str, tmp_path: Path, r: redis.Redis) -> Iterator[
        Callable[..., BrokerProcess]]:
    """Start brokers with their own settings (environment variables); all stopped at the end."""
    started: list[BrokerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> BrokerProcess:
        proc = BrokerProcess(redis_url, data_dir or tmp_path / "data", env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RedisExecutor]]:
    """Private redis-servers a test may stop, kill and restart (pytest-redis's executor)."""
    started: list[RedisExecutor] = []

    def start(appendonly: str = "no") -> RedisExecutor:
        datadir = tmp_path / f"redis{len(started)}"
        datadir.mkdir()
        executor = RedisExecutor(
            shutil.which("redis-server") or "redis-server", databases=1, redis_timeout=5,
            loglevel="warning", host="127.0.0.1", port=free_port(), appendonly=appendonly,
            datadir=datadir, startup_timeout=30,
        )
        executor.start()
        started.append(executor)
        return executor

    yield start
    for executor in started:
        if executor.running():
            executor.stop()
