"""The time every script is given: milliseconds since the epoch, from this process's clock."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
