from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from pytest_redis.executor import RedisExecutor

from tests.brokerproc import BrokerProcess
from tests.helpers import contract, register, submit, until


def test_redis_away_is_503_with_retry_after_and_the_broker_recovers(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data").start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            worker = register(c, "sh")
            server.stop()
            for resp in (c.post("/job", json={"function_id": "f", "runtime": "sh"}),
                         c.get("/job", headers={"X-Job-Id": "abcdefgh"}),
                         contract(c, worker)):
                assert resp.status_code == 503, resp.text
                assert resp.json()["error"] == "redis_unavailable"
                assert resp.headers["retry-after"].isdigit()
            server.start()
            until(lambda: c.post("/worker", json={"Runtime": ["sh"]}).status_code == 200)
            # The wake-up subscription came back too: a waiting worker is woken.
            worker = register(c, "sh")
            admin = redis.Redis(port=server.port, decode_responses=True)
            until(lambda: _woken_after_submit(c, worker, admin))
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()


def _woken_after_submit(c: httpx.Client, worker: str, admin: redis.Redis) -> bool:
    result: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: result.update(resp=contract(c, worker, wait=3)))
    t.start()
    until(lambda: admin.exists("broker:waiting:sh") == 1)  # it waits
    job_id = submit(c, "sh")
    t.join(10)
    resp = result["resp"]
    return resp.status_code == 200 and resp.json()["job_id"] == job_id


def test_health_answers_while_readiness_follows_redis(
        own_redis: Callable[..., RedisExecutor], tmp_path: Path) -> None:
    server = own_redis()
    proc = BrokerProcess(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data").start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            assert c.get("/readyz").status_code == 200
            server.stop()
            down = c.get("/readyz")
            assert down.status_code == 503 and "Redis" in down.json()["detail"]
            assert c.get("/healthz").status_code == 200
            server.start()
            until(lambda: c.get("/readyz").status_code == 200)
    finally:
        proc.stop()
