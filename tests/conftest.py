from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor

from broker import config
from broker.http.app import create_app
from tests.brokerproc import BrokerProcess, free_port
from tests.inprocess import InProcess

redis_server = factories.redis_proc()
redisdb = factories.redisdb("redis_server", decode=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: object) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of the shared broker, in process and as a process alike."""
    return tmp_path_factory.mktemp("shared") / "data"


@pytest.fixture(scope="session")
def app_client(redis_url: str, data_dir: Path) -> Iterator[InProcess]:
    """The broker app in this process (create_app, lifespan included) on the suite's Redis:
    what tests of request handling talk to."""
    settings = config.load({}, {"REDIS_URL": redis_url, "BROKER_DATA_DIR": str(data_dir)})
    with InProcess(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def broker_proc(redis_url: str, data_dir: Path) -> Iterator[BrokerProcess]:
    """The same broker as a process (`broker serve`, same Redis, same data directory), for the
    tests where the process matters: real sockets, the CLI and the agent, signals."""
    proc = BrokerProcess(redis_url, data_dir).start()
    yield proc
    proc.stop()


@pytest.fixture
def r(redisdb: redis.Redis) -> redis.Redis:
    """A client on the test Redis; the database is flushed after each test."""
    return redisdb


@pytest.fixture
def client(app_client: InProcess, r: redis.Redis) -> httpx.Client:
    """The in-process broker, on a clean database."""
    return app_client


@pytest.fixture
def served(broker_proc: BrokerProcess, r: redis.Redis) -> Iterator[httpx.Client]:
    """A client of the broker process, on a clean database: for tests that stream a body in or
    out as it happens, or read the process's own metrics."""
    with httpx.Client(base_url=broker_proc.url, timeout=30.0) as c:
        yield c


@pytest.fixture
def app_with(redis_url: str, tmp_path: Path, r: redis.Redis) -> Iterator[
        Callable[..., InProcess]]:
    """Broker apps in this process with settings of their own (BROKER_* variables), on the
    suite's Redis; all shut down at the end."""
    started: list[InProcess] = []

    def start(**env: str) -> InProcess:
        settings = config.load({}, {"REDIS_URL": redis_url,
                                    "BROKER_DATA_DIR": str(tmp_path / "data"), **env})
        client = InProcess(create_app(settings))
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


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
