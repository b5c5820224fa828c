"""Wire shapes: how a job, a worker and a contract look in JSON, for the broker that answers
and the client that reads (one Contract for both)."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any

JOB_TIMES = ("created_at", "updated_at", "started_at", "finished_at", "retry_at", "run_at")


@functools.lru_cache(maxsize=256)  # a claim of many jobs starts them all at the same ms
def iso(ms: str | int | None) -> str | None:
    """Milliseconds since the epoch as RFC 3339 UTC, e.g. 2026-11-27T23:35:13.123Z."""
    if ms is None or ms == "":
        return None
    seconds, millis = divmod(int(ms), 1000)
    t = time.gmtime(seconds)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{millis:03d}Z")


def job(job_id: str, h: dict[str, str]) -> dict[str, Any]:
    """A job hash as JSON: the seed's fields, then what the broker adds. The lease is the
    holder's secret and never shown. The id is the key's, not a field (memory)."""
    return {
        "job_id": job_id,
        "data1_id": h.get("data1_id", ""),
        "data2_id": h.get("data2_id", ""),
        "function_id": h.get("function_id", ""),
        "runtime": h.get("runtime", ""),
        "status": h.get("status", ""),
        "worker_id": h.get("worker_id") or None,
        "attempts": int(h.get("attempts", 0)),
        "max_attempts": int(h.get("max_attempts", 1)),
        "timeout": float(h.get("timeout", 0)),
        "priority": int(h.get("priority") or 0),
        "ttl": int(h["ttl"]) if h.get("ttl") else None,
        "after": json.loads(h["after"]) if h.get("after") else [],
        "callback_url": h.get("callback_url") or None,
        "error": h.get("error") or None,
        **{name: iso(h.get(name)) for name in JOB_TIMES},
        # A job never changed since its creation keeps no updated_at of its own (memory).
        "updated_at": iso(h.get("updated_at") or h.get("created_at")),
        "waiting": None,  # why it is not running: GET /job fills it in (store/why.py)
    }


def worker(h: dict[str, str]) -> dict[str, Any]:
    return {
        "worker_id": h["worker_id"],
        "Runtime": json.loads(h["Runtime"]),
        "registered_at": iso(h.get("registered_at")),
        "last_seen": iso(h.get("last_seen")),
    }


# Per-request values are plain dataclasses: a frozen one's __init__ costs 3 µs for 12 fields.
@dataclass
class Contract:
    """One job handed to a worker (GET /worker/contract): the seed's fields, then the lease
    and limits the broker adds."""

    worker_id: str
    job_id: str
    data1_id: str
    data2_id: str
    function_id: str
    runtime: str
    lease: str = ""
    attempts: int = 0
    max_attempts: int = 1
    timeout: float | None = None  # this run's time limit, seconds
    started_at: str | None = None
    heartbeat_interval: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)  # its fields, in order (asdict copies deeply, and slowly)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Contract:
        return cls(
            worker_id=body["worker_id"], job_id=body["job_id"], data1_id=body["data1_id"],
            data2_id=body["data2_id"], function_id=body["function_id"],
            runtime=body["runtime"], lease=body.get("lease", ""),
            attempts=int(body.get("attempts", 0)),
            max_attempts=int(body.get("max_attempts", 1)), timeout=body.get("timeout"),
            started_at=body.get("started_at"),
            heartbeat_interval=body.get("heartbeat_interval"))


HISTORY = "e:"  # the job hash's fields that hold its history, one per event, by stream id
HISTORY_FIELDS = ("event", "from", "to", "worker", "attempt", "shift", "reason")


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def history(job_id: str, h: dict[str, str]) -> list[dict[str, Any]]:
    """A job hash's history fields (lua/lib/events.lua) as events, oldest first."""
    ids = sorted((name[len(HISTORY):] for name in h if name.startswith(HISTORY)),
                 key=_stream_order)
    out = []
    for stream_id in ids:
        f = dict(zip(HISTORY_FIELDS, h[HISTORY + stream_id].split("\t", 6), strict=False))
        f["event"] = f.get("event") or f.get("to", "")
        f["time"] = str(_stream_order(stream_id)[0] + int(f.pop("shift", 0) or 0))
        out.append(event({**f, "id": stream_id, "job": job_id, "runtime": h.get("runtime", "")}))
    return out


def event(fields: dict[str, str]) -> dict[str, Any]:
    """A job event (lua/lib/events.lua) as JSON, from its stream entry's fields or its
    history record, `id` being the stream id."""
    attempt = fields.get("attempt")
    return {
        "id": fields.get("id"),
        "event": fields.get("event"),
        "job_id": fields.get("job"),
        "runtime": fields.get("runtime"),
        "from": fields.get("from") or None,
        "to": fields.get("to") or None,
        "worker_id": fields.get("worker") or None,
        "attempt": int(attempt) if attempt else None,
        "time": iso(fields.get("time")),
        "reason": fields.get("reason") or None,
    }
