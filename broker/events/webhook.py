"""The webhook: a job's final event posted as JSON to a URL, signed, by an rq worker.

`enqueue` (called by the outbox pump, outbox.py) puts one rq job per delivery on the webhook
queue, under an id made from the outbox entry, with rq's `unique` so that a pump that
crashed between enqueuing and acknowledging enqueues it no second time, and with rq's own
`Retry`; `deliver` is that rq job. A delivery whose retries run out stays in rq's failed job
registry (`rq info`, `broker status`). A receiver may still see a delivery twice (a worker
killed after the POST and before rq recorded it): X-Broker-Delivery is the same both times.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
from typing import Any

from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from broker.events import targets

SIGNATURE = "X-Broker-Signature"  # sha256=<hex HMAC-SHA256 of the body under the secret>
DELIVERY = "X-Broker-Delivery"  # the same for every attempt at one delivery
EVENT = "X-Broker-Event"  # succeeded, failed or cancelled
MAX_ANSWER = 64 * 1024  # what is read of the receiver's answer


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    out = {"Content-Type": "application/json", "User-Agent": "redis-job-broker-webhook",
           DELIVERY: delivery, EVENT: event}
    if secret:
        out[SIGNATURE] = sign(body, secret)
    return out


class _Pinned(http.client.HTTPConnection):
    """HTTP to the address the target check resolved, not to whatever the name gives now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(sock, server_hostname=self.host)


def deliver(url: str, body: bytes, sent_headers: dict[str, str], timeout: float,
            denied: list[str]) -> int:
    """POST `body` to `url`; the receiver's status when 2xx, else DeliveryFailed (rq retries
    it). The address is checked against `denied` networks first (targets.Refused)."""
    parts = targets.parse(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or ""
    _, address = targets.resolve(host, port, targets.networks(denied))
    kind = _PinnedTLS if secure else _Pinned
    connection = kind(host, port, address, timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers=sent_headers)
        response = connection.getresponse()
        response.read(MAX_ANSWER)
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise DeliveryFailed(f"{url} answered {response.status} {response.reason}")
    return response.status


def enqueue(queue: Queue, delivery: str, url: str, body: bytes, sent_headers: dict[str, str],
            timeout: float, retries: tuple[int, ...], denied: tuple[str, ...]) -> bool:
    """Put one delivery on rq's queue; False when it was there already (a repeat)."""
    options: dict[str, Any] = {}
    if retries:
        options["retry"] = Retry(max=len(retries), interval=list(retries))
    try:
        queue.enqueue_call(deliver, args=(url, body, sent_headers, timeout, list(denied)),
                           job_id=delivery, unique=True, timeout=int(timeout) + 10,
                           description=f"webhook to {url}", **options)
    except DuplicateJobError:
        return False
    return True


def counts(queue: Queue, recent: int = 5) -> dict[str, Any]:
    """Where the deliveries stand in rq: queued, waiting out a retry interval, failed for
    good (rq's failed job registry; the latest `recent` of them with their error), and the
    notifiers listening."""
    failed = FailedJobRegistry(queue=queue)
    latest = failed.get_job_ids(0, recent - 1, desc=True)
    rows = []
    for job in Job.fetch_many(latest, connection=queue.connection):
        if job is None:
            continue
        error = (job.exc_info or "").strip().splitlines()
        url = job.args[0] if job.args else ""
        rows.append({"delivery": job.id, "url": url, "error": error[-1] if error else "",
                     "failed_at": job.ended_at.isoformat() if job.ended_at else None})
    scheduled = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    return {"queued": queue.count, "retrying": scheduled.count,
            "failed": failed.count, "notifiers": Worker.count(queue=queue),
            "latest_failures": rows}
