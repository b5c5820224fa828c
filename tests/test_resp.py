"""Script calls are packed byte for byte as redis-py packs them, and a real Redis runs them."""

from __future__ import annotations

import socket

import pytest
import redis
from redis.connection import Connection

from broker.store.resp import ScriptCall

KEYS = ["key:1", "ключ"]
ARGS = [b"\x00\xffraw", 0, -7, 2**62, 1.5, 1e-05, float("inf"), 3600.0, "", b"", "x" * 70_000]


def redis_py(*command: object) -> bytes:
    packed: list[bytes] = Connection().pack_command(*command)  # type: ignore[no-untyped-call]
    return b"".join(packed)


def test_a_script_call_of_every_kind_of_argument_matches_redis_py_byte_for_byte() -> None:
    assert ScriptCall("a" * 40).pack(KEYS, ARGS) == redis_py("EVALSHA", "a" * 40, 2, *KEYS,
                                                             *ARGS)


def test_a_script_call_matches_redis_py_byte_for_byte() -> None:
    keys, args = ["k1", "k2"], ["a", 1, 2.25, b"b", "é"]
    packed = ScriptCall("f" * 40).pack(keys, args)
    assert packed == redis_py("EVALSHA", "f" * 40, 2, *keys, *args)


@pytest.mark.parametrize("value", [True, None, object(), [1]])
def test_what_redis_py_refuses_is_refused_before_anything_is_sent(value: object) -> None:
    with pytest.raises(TypeError):
        ScriptCall("a" * 40).pack(["k"], [value])


def test_redis_runs_what_it_packs(redis_url: str, r: redis.Redis) -> None:
    host, port = redis_url.removeprefix("redis://").removesuffix("/0").rsplit(":", 1)
    value = "ключ " + "x" * 70_000
    sha = r.script_load("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('STRLEN', "
                        "KEYS[1])")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(ScriptCall(sha).pack(["packed"], [value]))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply == b":70009\r\n"
    assert r.get("packed") == value
