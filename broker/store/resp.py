"""Script calls in Redis's wire format (RESP2 arrays of bulk strings), packed by hiredis.

redis-py packs each command through a general path that checks and encodes every argument one
call at a time; for a script call of 15 arguments that was 27 µs, and every broker request
makes one. hiredis (installed with redis-py's `hiredis` extra) packs the same bytes in C, in
less than half the time of the Python packer this module used to hold (docs/performance.md
has the figures). The bytes are redis-py's (tests/test_resp.py compares them), and
so are the arguments taken: str (UTF-8), bytes, int, float; anything else is refused before
anything is sent.
"""

from __future__ import annotations

from typing import Any

from hiredis import pack_command


class ScriptCall:
    """EVALSHA of one script: `pack` makes the bytes of one call with its keys and arguments."""

    def __init__(self, sha: str) -> None:
        self._sha = sha

    def pack(self, keys: list[Any], args: list[Any]) -> bytes:
        try:
            packed: bytes = pack_command(("EVALSHA", self._sha, len(keys), *keys, *args))
        except TypeError as exc:  # what redis-py refuses too: bool, None, lists
            raise TypeError(f"cannot send that to Redis: {exc}") from None
        return packed
