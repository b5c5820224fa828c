"""Redis clients for the broker: commands fail fast (a 503, never a hung request), the pub/sub
connection waits forever. `memory://` gives in-process fakeredis, which keeps nothing."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

MEMORY_URL = "memory://"


def connector(url: str, timeout: float = 5.0) -> Callable[..., Redis]:
    """A factory of clients on `url`: factory(True) for commands, which fail after `timeout`
    seconds without an answer; factory(False) for pub/sub, which waits. factory(True, False)
    answers bytes, not text (a job's log may be any bytes)."""
    if url == MEMORY_URL:
        import fakeredis  # only the embedded fallback needs it

        server = fakeredis.FakeServer()

        def fake(_commands: bool, decode: bool = True) -> Redis:
            return fakeredis.FakeAsyncRedis(server=server, decode_responses=decode)

        return fake

    def real(commands: bool, decode: bool = True) -> Redis:
        return Redis.from_url(
            url,
            decode_responses=decode,
            socket_connect_timeout=2.0,
            socket_timeout=timeout if commands else None,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            health_check_interval=0 if commands else 30,
        )

    return real
