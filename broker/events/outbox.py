"""The webhook pump: finished jobs that want a webhook, from the outbox stream onto rq.

The script that finishes such a job adds it to the outbox stream (lua/lib/events.lua) with
the URLs to post to, so the delivery to make is in Redis the moment the job's end is. The
pump runs in the notifier (notifier.py), in the outbox's consumer group: it reads an entry,
enqueues one rq job per URL (the job's callback_url, then BROKER_WEBHOOK_URL as the broker
that ended the job had it) under ids made from the entry's, and only then acknowledges and
deletes the entry. A notifier that dies in between leaves the entry pending; any pump claims
it after CLAIM_IDLE_MS and enqueues it again, which rq's `unique` turns into nothing when the
first enqueue had landed. So a delivery is never dropped, and is enqueued once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import orjson
from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue

from broker import wire
from broker.config import Settings
from broker.events import webhook
from broker.store.keys import Keys

log = logging.getLogger("broker.outbox")

GROUP = "webhooks"
BATCH = 50
BLOCK_MS = 2000
CLAIM_IDLE_MS = 5000  # an entry read this long ago and not acknowledged: its pump died


def body_of(event: dict[str, Any], job: dict[str, Any] | None) -> bytes:
    """What a webhook posts: the event, and the job as GET /job shows it (null once gone)."""
    return orjson.dumps({"event": event, "job": job})


class Pump:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings, queue: Queue) -> None:
        """`redis` must not time out reads shorter than BLOCK_MS."""
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._queue = queue
        self._consumer = f"{socket.gethostname()}-{os.getpid()}"

    def run(self, stop: threading.Event) -> None:
        """Pump until `stop` is set, going on after Redis errors with backoff."""
        delay = 0.05
        while not stop.is_set():
            try:
                self._ensure_group()
                while not stop.is_set():
                    self.pump_once()
                    delay = 0.05
            except (RedisError, OSError) as exc:
                log.warning("webhook pump: %s; retrying in %.2fs", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self._keys.outbox, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def pump_once(self) -> int:
        """Entries a dead pump left, else new ones (waiting up to BLOCK_MS), each enqueued;
        how many."""
        key = self._keys.outbox
        claimed: Any = self._redis.xautoclaim(key, GROUP, self._consumer, CLAIM_IDLE_MS,
                                              "0-0", count=BATCH)
        entries = claimed[1]
        if not entries:
            reply: Any = self._redis.xreadgroup(GROUP, self._consumer, {key: ">"},
                                                count=BATCH, block=BLOCK_MS)
            entries = [e for _stream, found in reply or [] for e in found]
        for entry_id, fields in entries:
            if fields:  # a claimed entry deleted meanwhile comes back empty
                self._enqueue(entry_id, fields)
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(key, GROUP, entry_id)
                pipe.xdel(key, entry_id)
                pipe.execute()
        return len(entries)

    def _enqueue(self, entry_id: str, fields: dict[str, str]) -> None:
        event = wire.event(fields)
        h: Any = self._redis.hgetall(self._keys.job(fields["job"]))
        body = body_of(event, wire.job(fields["job"], h) if h else None)
        s = self._settings
        urls = [u for u in (fields.get("url", ""), fields.get("all", "")) if u]
        for i, url in enumerate(urls):
            delivery = f"webhook-{entry_id.replace('-', '_')}-{i}"
            headers = webhook.headers(body, s.webhook_secret, delivery, event["event"] or "")
            fresh = webhook.enqueue(self._queue, delivery, url, body, headers,
                                    s.webhook_timeout, s.webhook_retries, s.webhook_deny)
            log.debug("webhook %s to %s: %s", delivery, url, "enqueued" if fresh else "repeat")
