"""Function code, downloaded once per data_id and re-used while its ETag holds."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from broker.client.api import BrokerClient


class FunctionCache:
    def __init__(self, client: BrokerClient, directory: Path) -> None:
        self.client = client
        self.dir = directory
        self._etags: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def fetch(self, function_id: str, dest: Path) -> Path:
        """Copy the function's code to `dest` (a job's own copy, which it may change),
        downloading it only when the broker's ETag changed."""
        lock = self._locks.setdefault(function_id, asyncio.Lock())
        cached = self.dir / function_id
        async with lock:
            known = self._etags.get(function_id) if cached.exists() else None
            etag = await self.client.download(function_id, cached, etag=known)
            if etag is not None:
                self._etags[function_id] = etag
        shutil.copyfile(cached, dest)
        dest.chmod(0o700)  # so that a runtime may run the code itself: '{function}', via #!
        return dest
