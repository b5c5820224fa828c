from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pytest_redis import factories

from tests.brokerproc import BrokerProcess

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
