"""Ids and names that reach Redis keys or file names: drawn here, checked here; and counts
that arrive as text (a Content-Length, a query's limit)."""

from __future__ import annotations

import re
import secrets

from broker.errors import BadRequest, Conflict

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 8
ID_PATTERN = re.compile(r"[0-9a-z]{8}")
# A runtime names a queue key and a pub/sub channel: no spaces, no glob characters.
RUNTIME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# How many fresh ids a create may draw before giving up (36**8 ids: a second draw is rare).
MAX_DRAWS = 8


_SPACE = len(ALPHABET) ** ID_LENGTH


# Every two-digit base-36 string, least significant digit first, as _base36 writes them.
_PAIRS = [ALPHABET[i % 36] + ALPHABET[i // 36] for i in range(36 * 36)]


def _base36(n: int) -> str:
    """n < 36**8 as 8 base-36 digits, least significant first."""
    n, a = divmod(n, 1296)
    n, b = divmod(n, 1296)
    n, c = divmod(n, 1296)
    return _PAIRS[a] + _PAIRS[b] + _PAIRS[c] + _PAIRS[n]


_MASK = (1 << 42) - 1


def new_ids(count: int) -> list[str]:
    """`count` ids of 8 characters of [0-9a-z], each uniform: 42 random bits, drawn again when
    past 36**8 (about one draw in three), then written in base 36. One read of the system's
    randomness serves a whole batch."""
    out: list[str] = []
    while len(out) < count:
        pool = secrets.token_bytes(6 * 2 * (count - len(out)))  # two draws per id left
        for i in range(0, len(pool), 6):
            n = int.from_bytes(pool[i:i + 6]) & _MASK
            if n < _SPACE:
                out.append(_base36(n))
                if len(out) == count:
                    break
    return out


def new_id() -> str:
    return new_ids(1)[0]


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: object, field: str) -> str:
    """Return `value` if it is a well-formed id, else raise 400 naming `field`."""
    if not is_id(value):
        raise BadRequest(f"{field} must be 8 characters of [0-9a-z], got {value!r:.40}",
                         code="invalid_id", field=field)
    assert isinstance(value, str)
    return value


def check_runtime(value: object, field: str = "runtime") -> str:
    if not isinstance(value, str) or RUNTIME_PATTERN.fullmatch(value) is None:
        raise BadRequest(
            f"{field} must be 1 to 64 characters of [A-Za-z0-9._+-] starting with a letter or "
            f"digit, got {value!r:.40}", code="invalid_runtime", field=field)
    return value


def too_many_runtimes(limit: int) -> Conflict:
    return Conflict(f"the broker already knows {limit} runtimes (BROKER_MAX_RUNTIMES), the most "
                    "it keeps; a job or worker naming a new one is refused until those naming "
                    "others are gone", code="too_many_runtimes", limit=limit)


_DIGITS = re.compile(r"[0-9]{1,18}")


def digits(raw: str | None) -> int | None:
    """An ASCII decimal count, or None (str.isdigit() also takes '²', which int() refuses)."""
    return int(raw) if raw is not None and _DIGITS.fullmatch(raw) else None
