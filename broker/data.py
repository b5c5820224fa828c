"""Data files on disk (placeholder until the data store lands)."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from broker.keys import Keys
from broker.scripts import Scripts


class DataStore:
    def __init__(self, redis: Redis, scripts: Scripts, keys: Keys, data_dir: Path,
                 max_size: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.dir = data_dir
        self.max_size = max_size
        data_dir.mkdir(parents=True, exist_ok=True)
