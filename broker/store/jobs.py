"""Typed store methods for jobs: one per script, return codes mapped to errors."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from broker import ids, lifecycle
from broker.clock import now_ms
from broker.config import Settings, heartbeat_interval, outage_threshold_ms
from broker.errors import BrokerError, Conflict, NotFound, Unprocessable
from broker.lifecycle import Role
from broker.store.keys import Keys
from broker.store.scripts import Scripts
from broker.store.workers import SETTLE_BATCH, Claim, claim_of

# The job fields a PUT /job may carry besides status (run_at as ms; a body's delay is one).
EDITABLE = ("data1_id", "data2_id", "function_id", "runtime", "priority", "run_at")


# Per-request values are plain dataclasses: a frozen one's __init__ costs 3 µs for 12 fields.
@dataclass
class NewJob:
    function_id: str
    runtime: str
    data1_id: str = ""
    data2_id: str = ""
    max_attempts: int | None = None
    timeout: float | None = None
    idempotency_key: str = ""
    fingerprint: str = ""
    priority: int = 0
    run_at: int | None = None  # when it is due, ms since the epoch; None: now
    ttl: int | None = None  # its retention once finished, seconds; None: the broker's
    after: list[str] = field(default_factory=list)  # jobs that must succeed first
    callback_url: str = ""  # where its end is posted (a webhook), or ""


@dataclass
class Reported:
    """A final report that took the next work: how long the run took (seconds, or None),
    whether the job had been cancelled meanwhile, and the claim."""

    ran: float | None
    cancelled: bool
    claim: Claim


@dataclass
class JobUpdate:
    """What a PUT /job asks for: a status (or none) and the job fields it carries."""

    role: Role
    status: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    worker_id: str = ""
    lease: str = ""
    error: str = ""
    retry: bool = True  # a failure runs again while attempts remain, unless the worker says no


def _or_empty(value: int | None) -> str:
    return "" if value is None else str(value)


def _pairs(fields: dict[str, str], exclude: tuple[str, ...] = ()) -> list[str]:
    return [x for k, v in fields.items() if k not in exclude for x in (k, v)]


class Jobs:
    def __init__(self, redis: Redis, scripts: Scripts, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.ctx = keys.context_of(settings)
        self.settings = settings

    def _limits(self, job: NewJob) -> tuple[int, float]:
        """The job's max_attempts and timeout, the settings' where it names none."""
        return (job.max_attempts or self.settings.max_attempts,
                float(job.timeout or self.settings.job_timeout))

    def _submit_call(self, job: NewJob, job_id: str) -> tuple[list[str], list[Any]]:
        k = self.keys
        return (
            [k.job(job_id), k.queue(job.runtime), k.seq, k.data(job.data1_id),
             k.data(job.data2_id), k.idempotency("job", job.idempotency_key)],
            [job_id, job.data1_id, job.data2_id, job.function_id, job.runtime, now_ms(),
             "1", *self._limits(job),
             job.fingerprint if job.idempotency_key else "", self.settings.idempotency_ttl,
             self.ctx, self.settings.max_runtimes, job.priority, _or_empty(job.run_at),
             _or_empty(job.ttl), orjson.dumps(job.after).decode() if job.after else "",
             job.callback_url])

    def _batch_row(self, job: NewJob, job_id: str) -> list[str]:
        """One job of a submit_batch call, its numbers written as redis-py writes submit's."""
        attempts, timeout = self._limits(job)
        key = self.keys.idempotency("job", job.idempotency_key) if job.idempotency_key else ""
        return [job_id, job.data1_id, job.data2_id, job.function_id, job.runtime, str(attempts),
                repr(timeout), key, job.fingerprint if key else "", str(job.priority),
                _or_empty(job.run_at), _or_empty(job.ttl),
                orjson.dumps(job.after).decode() if job.after else "", job.callback_url]

    async def submit(self, job: NewJob) -> str:
        """Create the job; under an idempotency key already used, answer the first job's id."""
        for _ in range(ids.MAX_DRAWS):
            job_id = ids.new_id()
            result = await self.scripts.submit(*self._submit_call(job, job_id))
            if result[0] != "id_taken":
                self._raise_for(result, job_id, "requester", "pending", job.__dict__)
                created: str = result[1]
                return created
        raise RuntimeError("could not draw a free job id")

    async def submit_many(self, jobs: list[NewJob]) -> list[str | BrokerError]:
        """Create many jobs in one script call, each atomically (the batch as a whole is not
        all-or-nothing): a job id, or the error that refused that job."""
        drawn = ids.new_ids(len(jobs))
        rows = [self._batch_row(job, job_id) for job, job_id in zip(jobs, drawn, strict=True)]
        results = await self.scripts.submit_batch(
            [self.keys.seq], [now_ms(), self.ctx, orjson.dumps(rows),
                              self.settings.max_runtimes, self.settings.idempotency_ttl])
        out: list[str | BrokerError] = []
        for job, job_id, result in zip(jobs, drawn, results, strict=True):
            try:
                if result[0] == "id_taken":  # a collision: this one alone draws again
                    out.append(await self.submit(job))
                    continue
                self._raise_for(result, job_id, "requester", "pending", job.__dict__)
                out.append(result[1])
            except BrokerError as exc:
                out.append(exc)
        return out

    def _batch_call(self, worker_id: str,
                    reports: list[tuple[str, JobUpdate]]) -> tuple[list[str], list[Any]]:
        k, s = self.keys, self.settings
        now = now_ms()
        rows = [[job_id, u.lease, u.status or "running", u.fields.get("data2_id", ""), u.error,
                 "1" if u.retry else "", repr(random.random())] for job_id, u in reports]
        return ([k.workers, k.deadlines, k.delayed, k.worker(worker_id),
                 k.worker_jobs(worker_id)],
                [worker_id, now, now + int(s.worker_timeout * 1000), int(s.retry_base * 1000),
                 int(s.retry_max * 1000), self.ctx, orjson.dumps(rows),
                 int(s.lease_timeout * 1000)])

    async def report_many(self, worker_id: str,
                          reports: list[tuple[str, JobUpdate]]) -> list[BrokerError | None]:
        """One worker's reports on many jobs in one script call, each atomic: None, or the
        error that refused it."""
        results = await self.scripts.report_batch(*self._batch_call(worker_id, reports))
        return self._outcomes(reports, results)

    async def report_many_next(self, worker_id: str, reports: list[tuple[str, JobUpdate]],
                               lease: str, count: int,
                               wait: float) -> tuple[list[BrokerError | None], Claim]:
        """report_many, and a claim of up to `count` next jobs under `lease`, in one script
        (lua/report_batch_next.lua); when Redis is full the reports are made alone."""
        s = self.settings
        keys, args = self._batch_call(worker_id, reports)
        try:
            results, claimed = await self.scripts.report_batch_next(keys, [
                *args, lease, SETTLE_BATCH, int(wait * 1000), count, outage_threshold_ms(s)])
        except ResponseError as exc:
            if not isinstance(exc, OutOfMemoryError) and not str(exc).startswith("OOM"):
                raise
            results = await self.scripts.report_batch(keys, args)
            claimed = ["empty", "[]"]
        return self._outcomes(reports, results), self._taken(claimed, worker_id, int(args[1]))

    def _taken(self, claimed: Any, worker_id: str, now: int) -> Claim:
        """The claim that followed a report. A worker unknown to it (forgotten, its jobs still
        its own to report on) takes nothing: the reports stand, and its next contract says
        404 unknown_worker."""
        if claimed[0] == "unknown_worker":
            return Claim((), ())
        return claim_of(claimed, worker_id, now, heartbeat_interval(self.settings))

    def _outcomes(self, reports: list[tuple[str, JobUpdate]],
                  results: list[Any]) -> list[BrokerError | None]:
        out: list[BrokerError | None] = []
        for (job_id, u), result in zip(reports, results, strict=True):
            try:
                self._raise_for(result, job_id, "worker", u.status or "running", u.fields)
                out.append(None)
            except BrokerError as exc:
                out.append(exc)
        return out

    async def get(self, job_id: str) -> dict[str, str]:
        job: dict[str, str] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        if not job:
            raise NotFound(f"no job {job_id}", code="unknown_job")
        return job

    async def delete(self, job_id: str) -> None:
        k = self.keys
        result = await self.scripts.delete_job(
            [k.job(job_id), k.deadlines, k.delayed, k.tombstones],
            [job_id, now_ms(), self.ctx, self.settings.tombstone_ttl * 1000],
        )
        self._raise_for(result, job_id, "requester", "deleted", {})

    async def update(self, job_id: str, u: JobUpdate) -> float | None:
        """Apply a PUT /job; when it ends a run, answer how long the run took (seconds)."""
        target = u.status
        if u.role == "worker" and target in (None, "running", "succeeded", "failed"):
            result = await self._report(job_id, u, target or "running")
        elif u.role == "worker" and target == "pending":
            result = await self._release(job_id, u)
        elif u.role == "requester" and target == "cancelled":
            result = await self._cancel(job_id, u)
        elif u.role == "requester" and target in (None, "pending", "scheduled"):
            result = await self._requeue(job_id, u, "rerun" if target else "edit")
        else:
            status = await self.redis.hget(self.keys.job(job_id), "status")
            result = ["illegal", status] if status else ["not_found"]
        self._raise_for(result, job_id, u.role, target or "its current status", u.fields)
        started = result[1] if u.role == "worker" and len(result) > 1 else ""
        return (now_ms() - int(started)) / 1000 if started else None

    def _report_call(self, job_id: str, u: JobUpdate, target: str) -> tuple[list[str],
                                                                              list[Any]]:
        k, s = self.keys, self.settings
        output = u.fields.get("data2_id", "")
        now = now_ms()
        return (
            [k.job(job_id), k.worker_jobs(u.worker_id), k.data(output), k.workers, k.deadlines,
             k.delayed, k.worker(u.worker_id)],
            [job_id, u.worker_id, u.lease, target, output, u.error, now,
             now + int(s.worker_timeout * 1000), "1" if u.retry else "",
             int(s.retry_base * 1000), int(s.retry_max * 1000), random.random(), self.ctx,
             int(s.lease_timeout * 1000), *_pairs(u.fields, exclude=("data2_id",))])

    async def _report(self, job_id: str, u: JobUpdate, target: str) -> Any:
        return await self.scripts.report(*self._report_call(job_id, u, target))

    async def report_next(self, job_id: str, u: JobUpdate, lease: str, count: int,
                          wait: float) -> Reported:
        """A worker's final report and its claim of up to `count` next jobs under `lease`, in
        one script (lua/report_next.lua). A refused report raises and takes nothing; a report
        on a job cancelled meanwhile is answered in `cancelled` and still takes. When Redis is
        full the report is made alone (it may run then; a claim may not) and takes nothing."""
        s = self.settings
        keys, args = self._report_call(job_id, u, u.status or "succeeded")
        echoed = args[14:]
        try:
            report, claimed = await self.scripts.report_next(keys, [
                *args[:14], lease, SETTLE_BATCH, int(wait * 1000), count,
                outage_threshold_ms(s), *echoed])
        except ResponseError as exc:
            if not isinstance(exc, OutOfMemoryError) and not str(exc).startswith("OOM"):
                raise
            report = await self.scripts.report(keys, args)
            claimed = ["empty", "[]"]
        cancelled = report[0] == "cancelled"
        if not cancelled:
            self._raise_for(report, job_id, "worker", u.status or "succeeded", u.fields)
        started = report[1] if len(report) > 1 else ""
        ran = (now_ms() - int(started)) / 1000 if started else None
        return Reported(ran, cancelled, self._taken(claimed, u.worker_id, int(args[6])))

    async def _release(self, job_id: str, u: JobUpdate) -> Any:
        k = self.keys
        return await self.scripts.release(
            [k.job(job_id), k.worker_jobs(u.worker_id), k.deadlines],
            [job_id, u.worker_id, u.lease, now_ms(), self.ctx, self.settings.max_givebacks,
             *_pairs(u.fields)],
        )

    async def _cancel(self, job_id: str, u: JobUpdate) -> Any:
        k = self.keys
        return await self.scripts.cancel(
            [k.job(job_id), k.deadlines, k.delayed],
            [job_id, now_ms(), self.ctx, *_pairs(u.fields)],
        )

    async def _requeue(self, job_id: str, u: JobUpdate, mode: str) -> Any:
        k = self.keys
        return await self.scripts.requeue(
            [k.job(job_id), k.seq, k.data(u.fields.get("data1_id", "")),
             k.data(u.fields.get("data2_id", "")), k.tombstones],
            [job_id, now_ms(), mode, self.ctx, self.settings.max_runtimes,
             *_pairs(u.fields)],
        )

    async def pause(self, runtime: str, paused: bool) -> bool:
        """Pause or resume a runtime; answers whether that changed anything."""
        result = await self.scripts.pause(
            [self.keys.paused], [runtime, "1" if paused else "", self.ctx,
                                 self.settings.max_runtimes])
        if result[0] == "too_many_runtimes":
            raise ids.too_many_runtimes(int(result[1]))
        return bool(int(result[1]))

    @staticmethod
    def _raise_for(result: Any, job_id: str, role: Role, target: str,
                   fields: dict[str, Any]) -> None:
        code = result[0]
        if code == "ok":
            return
        raise _error(code, result[1:], job_id, role, target, fields)


def _plain_error(code: str, job_id: str) -> BrokerError | None:
    """The error for a script answer that needs nothing but the job's id, or None."""
    if code == "not_found":
        return NotFound(f"no job {job_id}", code="unknown_job")
    if code == "lease_lost":
        return Conflict(f"job {job_id} is no longer held by this worker under this lease",
                        code="lease_lost")
    if code == "cancelled":
        return Conflict(f"job {job_id} was cancelled", code="cancelled")
    return None


def _error(code: str, rest: list[Any], job_id: str, role: Role, target: str,
           fields: dict[str, Any]) -> BrokerError:
    plain = _plain_error(code, job_id)
    if plain is not None:
        return plain
    if code == "illegal":
        return lifecycle.illegal(job_id, role, rest[0], target)
    if code == "locked":
        name, status = rest
        return Conflict(f"{name} of job {job_id} cannot change while the job is {status}"
                        + (" and held by its worker" if role == "worker" else ""),
                        code="field_locked", field=name)
    if code == "idempotency_mismatch":
        return Unprocessable("this Idempotency-Key was used for a different request",
                             code="idempotency_mismatch")
    if code == "too_many_runtimes":
        return ids.too_many_runtimes(int(rest[0]))
    if code == "output_taken":
        return Conflict(f"data2_id {fields.get('data2_id')!r} is already the output of job "
                        f"{rest[0]}; a data id is one job's output (POST /data/reg reserves "
                        "another)", code="output_taken", field="data2_id")
    if code == "unknown_job":
        return Unprocessable(f"after names job {rest[0]}, which does not exist",
                             code="unknown_job", field="after")
    if code == "unknown_data":
        name = rest[0]
        return Unprocessable(f"{name} {fields.get(name)!r} names no data", code="unknown_data",
                             field=name)
    raise RuntimeError(f"unexpected script answer {code!r}")
