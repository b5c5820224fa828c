"""The only module that spells a Redis key. The README's key table is checked against it.

Lua scripts never spell a key either: where a script must reach a key it learns only while it
runs (the job it pops, the queue of a runtime it reads), it gets the key's prefix from here as an
argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

from broker.config import Settings


@dataclass(frozen=True)
class Keys:
    prefix: str = "broker:"

    # -- jobs --------------------------------------------------------------------------------
    @property
    def job_prefix(self) -> str:
        return f"{self.prefix}job:"

    def job(self, job_id: str) -> str:
        """Hash: one job's fields (status, ids, worker, lease, timestamps)."""
        return self.job_prefix + job_id

    @property
    def queue_prefix(self) -> str:
        return f"{self.prefix}queue:"

    def queue(self, runtime: str) -> str:
        """Sorted set: pending job ids of one runtime, scored by priority, then enqueue
        sequence: seq - priority * 2^44 (lua/lib/queue.lua), so a plain job's score is its
        sequence number and the lowest score is the next to go."""
        return self.queue_prefix + runtime

    @property
    def seq(self) -> str:
        """String counter: the enqueue sequence that orders every queue."""
        return f"{self.prefix}seq"

    # -- workers -----------------------------------------------------------------------------
    @property
    def worker_prefix(self) -> str:
        return f"{self.prefix}worker:"

    def worker(self, worker_id: str) -> str:
        """Hash: one worker (worker_id, Runtime as a JSON list, registered_at, last_seen)."""
        return self.worker_prefix + worker_id

    @property
    def worker_jobs_suffix(self) -> str:
        return ":jobs"

    def worker_jobs(self, worker_id: str) -> str:
        """Set: ids of the jobs a worker is running."""
        return self.worker(worker_id) + self.worker_jobs_suffix

    @property
    def workers(self) -> str:
        """Sorted set: every registered worker id, scored by when it will be declared dead
        unless heard from again (ms)."""
        return f"{self.prefix}workers"

    @property
    def dead_workers(self) -> str:
        """List: the last 100 workers declared dead, newest first, each a JSON object
        (worker_id, Runtime, registered_at, last_seen, dead_at, gave_back; lua/lib/settle.lua)."""
        return f"{self.prefix}dead_workers"

    @property
    def worker_ids(self) -> str:
        """Sorted set, every score 0: every registered worker id, in the order of the ids, so
        that the listing pages through it by id (ZRANGE BYLEX) without reading it all."""
        return f"{self.prefix}worker_ids"

    @property
    def deadlines(self) -> str:
        """Sorted set: running job ids, scored by when their time limit runs out (ms)."""
        return f"{self.prefix}deadlines"

    @property
    def leases(self) -> str:
        """Sorted set: running job ids, scored by when their lease runs out unless a heartbeat
        renews it (ms)."""
        return f"{self.prefix}leases"

    @property
    def clock(self) -> str:
        """String: the latest time (ms) a broker settled what time decides; a gap since then
        is an outage nobody could be heard through, given back to workers and leases."""
        return f"{self.prefix}clock"

    @property
    def tombstones(self) -> str:
        """Sorted set: cancelled jobs deleted while running, scored by when they go (ms)."""
        return f"{self.prefix}tombstones"

    @property
    def scheduled(self) -> str:
        """Sorted set: scheduled job ids (run_at, delay), scored by when they are due (ms)."""
        return f"{self.prefix}scheduled"

    @property
    def schedule_channel(self) -> str:
        """Pub/sub channel: a job became the earliest scheduled one; the message is its due
        time (ms), so every broker process sets its timer (store/schedule.py) no later."""
        return f"{self.prefix}schedule"

    @property
    def expiry(self) -> str:
        """Sorted set: finished job ids, scored by when retention removes them (ms)."""
        return f"{self.prefix}expiry"

    @property
    def paused(self) -> str:
        """Set: the paused runtimes, whose jobs no contract hands out."""
        return f"{self.prefix}paused"

    @property
    def delayed(self) -> str:
        """Sorted set: pending job ids waiting out a retry backoff, scored by when due (ms)."""
        return f"{self.prefix}delayed"

    # -- indexes for listings and metrics ----------------------------------------------------
    @property
    def index_prefix(self) -> str:
        return f"{self.prefix}index:"

    def index(self, status: str) -> str:
        """Sorted set: the ids of the jobs in one status, scored by creation number."""
        return self.index_prefix + status

    @property
    def runtimes(self) -> str:
        """Set: every runtime a job or a worker has named."""
        return f"{self.prefix}runtimes"

    @property
    def runtime_refs(self) -> str:
        """Hash: runtime -> how many jobs and workers name it; the runtime is forgotten at
        none."""
        return f"{self.prefix}runtime_refs"

    @property
    def runtime_prefix(self) -> str:
        return f"{self.prefix}runtime:"

    @property
    def runtime_workers_suffix(self) -> str:
        return ":workers"

    def runtime_workers(self, runtime: str) -> str:
        """Set: the registered workers that run this runtime."""
        return self.runtime_prefix + runtime + self.runtime_workers_suffix

    @property
    def running(self) -> str:
        """Hash: runtime -> how many of its jobs are running."""
        return f"{self.prefix}running"

    @property
    def scheduled_counts(self) -> str:
        """Hash: runtime -> how many of its jobs are scheduled."""
        return f"{self.prefix}scheduled_counts"

    @property
    def runtime_seen(self) -> str:
        """Hash: runtime -> when a worker running it last left or was declared dead (ms), so
        a job's `waiting` can say when one was last seen."""
        return f"{self.prefix}runtime_seen"

    @property
    def waiting_counts(self) -> str:
        """Hash: runtime -> how many of its jobs are waiting for their inputs or other jobs."""
        return f"{self.prefix}waiting_counts"

    @property
    def waiters_prefix(self) -> str:
        return f"{self.prefix}waiters:"

    @property
    def data_waiters_prefix(self) -> str:
        return f"{self.waiters_prefix}data:"

    def data_waiters(self, data_id: str) -> str:
        """Set: the waiting jobs that need this data filled (lua/lib/deps.lua)."""
        return self.data_waiters_prefix + data_id

    @property
    def job_waiters_prefix(self) -> str:
        return f"{self.waiters_prefix}job:"

    def job_waiters(self, job_id: str) -> str:
        """Set: the waiting jobs that need this job to succeed (`after`)."""
        return self.job_waiters_prefix + job_id

    @property
    def cascade(self) -> str:
        """List: waiting jobs to fail because something they waited on ended without success,
        each "job_id cause"; a script fails a bounded batch, the sweep the rest."""
        return f"{self.prefix}cascade"

    @property
    def stats(self) -> str:
        """Hash: counters since the Redis began (handed_out, succeeded, failed, cancelled)."""
        return f"{self.prefix}stats"

    @property
    def minutes_prefix(self) -> str:
        return f"{self.prefix}minutes:"

    def minute(self, minute_number: int) -> str:
        """Hash with a TTL of 2 hours: jobs handed out, succeeded, failed and cancelled in one
        minute (ms // 60000), written by the transition scripts (lua/lib/status.lua)."""
        return f"{self.minutes_prefix}{minute_number}"

    # -- events ------------------------------------------------------------------------------
    @property
    def events(self) -> str:
        """Stream: one entry per job status change (lua/lib/events.lua), capped near
        BROKER_EVENTS_MAXLEN entries; the live feed GET /events reads it."""
        return f"{self.prefix}events"

    @property
    def outbox(self) -> str:
        """Stream: the ends of jobs whose webhook is still to be enqueued on rq, read by the
        webhook pump's consumer group (broker/events/outbox.py), each entry deleted once
        enqueued; never trimmed."""
        return f"{self.prefix}outbox"

    @property
    def webhook_queue(self) -> str:
        """The name of the rq queue webhook deliveries go on (rq spells its keys itself:
        rq:queue:<name>, rq:job:<id>, and its registries)."""
        return f"{self.prefix}webhooks"

    @property
    def log_prefix(self) -> str:
        return f"{self.prefix}log:"

    def log(self, job_id: str) -> str:
        """List: the last BROKER_LOG_MAX bytes of a job's live log, as the chunks its worker
        sent (the first one cut to fit); it goes when the job goes."""
        return self.log_prefix + job_id

    @property
    def log_channel(self) -> str:
        """Pub/sub channel: a job's live log grew; the message is its id, so followers of
        that log on every broker process read on."""
        return f"{self.prefix}logs"

    # -- idempotency -------------------------------------------------------------------------
    def idempotency(self, scope: str, key: str) -> str:
        """String: the fingerprint and the id a create under this Idempotency-Key answered."""
        return f"{self.prefix}idem:{scope}:{key}"

    # -- data --------------------------------------------------------------------------------
    @property
    def data_prefix(self) -> str:
        return f"{self.prefix}data:"

    def data(self, data_id: str) -> str:
        """Hash: one data file's metadata (state, size, sha256, times; and for a job's output,
        the job, worker and lease allowed to write it)."""
        return self.data_prefix + data_id

    # -- pub/sub -----------------------------------------------------------------------------
    @property
    def wake_prefix(self) -> str:
        return f"{self.prefix}wake:"

    def wake(self, runtime: str) -> str:
        """Pub/sub channel: a job became pending on this runtime's queue."""
        return self.wake_prefix + runtime

    @property
    def wake_pattern(self) -> str:
        return self.wake_prefix + "*"

    @property
    def waiting_prefix(self) -> str:
        return f"{self.prefix}waiting:"

    def waiting(self, runtime: str) -> str:
        """String with a TTL: a worker long-polls on this runtime, so a job that becomes
        pending on it is published on its wake channel (lua/lib/wake.lua)."""
        return self.waiting_prefix + runtime

    @cached_property
    def prefixes(self) -> str:
        """The prefixes scripts build keys from, and the index keys every status change
        updates, as the JSON argument the scripts decode."""
        return json.dumps({
            "job": self.job_prefix, "queue": self.queue_prefix, "wake": self.wake_prefix,
            "waiting": self.waiting_prefix,
            "worker": self.worker_prefix, "jobs_suffix": self.worker_jobs_suffix,
            "data": self.data_prefix, "index": self.index_prefix, "running": self.running,
            "stats": self.stats, "runtimes": self.runtimes, "runtime": self.runtime_prefix,
            "leases": self.leases, "clock": self.clock, "runtime_refs": self.runtime_refs,
            "worker_ids": self.worker_ids,
            "workers_suffix": self.runtime_workers_suffix, "seq": self.seq,
            "scheduled": self.scheduled, "schedule_channel": self.schedule_channel,
            "scheduled_counts": self.scheduled_counts, "expiry": self.expiry,
            "paused": self.paused, "delayed": self.delayed,
            "waiting_counts": self.waiting_counts, "data_waiters": self.data_waiters_prefix,
            "job_waiters": self.job_waiters_prefix,
            "cascade": self.cascade, "runtime_seen": self.runtime_seen,
            "events": self.events, "outbox": self.outbox,
            "log": self.log_prefix, "minutes": self.minutes_prefix,
            "dead_workers": self.dead_workers,
        })

    def context(self, job_ttl_ms: int, events_max: int = 1_000_000,
                webhook_url: str = "") -> str:
        """The prefixes and index keys, and the settings every status change needs (the
        retention of a finished job, ms, 0 keeps it; the events stream's approximate cap;
        the URL every job's end is posted to, BROKER_WEBHOOK_URL, or ""), as the JSON
        argument the scripts decode as `p`. Built once per process."""
        return json.dumps({**json.loads(self.prefixes), "job_ttl": job_ttl_ms,
                           "events_max": events_max, "webhook_url": webhook_url})

    def context_of(self, settings: Settings) -> str:
        return self.context(settings.job_ttl * 1000, settings.events_max, settings.webhook_url)
