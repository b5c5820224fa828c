"""The agent: register, long-poll for contracts, run each job, deliver its output, and drain
cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from broker.client.api import BrokerClient, BrokerError, Unreachable, backoff
from broker.wire import Contract
from worker_agent import livelog, runner
from worker_agent.cache import FunctionCache
from worker_agent.runtimes import command

log = logging.getLogger("worker_agent")
T = TypeVar("T")


@dataclass(frozen=True)
class AgentConfig:
    broker: str
    runtimes: dict[str, list[str]]
    token: str = field(default="", repr=False)
    concurrency: int = 1
    wait: float = 30.0
    grace: float = 30.0
    heartbeat: float = 10.0  # used until the broker names its own interval
    give_up_after: float = 600.0  # stop retrying a delivery the broker never answers
    limits: runner.Limits = field(default_factory=runner.Limits)
    live_log: bool = True  # send the function's stderr to the broker while it runs


LAST_FLUSH = 10.0  # seconds the rest of a log may hold up the job's report, at most


async def _last_words(shipping: asyncio.Task[None], shipper: livelog.Shipper) -> None:
    """Stop the shipping (waiting out a request under way, so nothing is sent twice), then
    send what is left before the job's report, for LAST_FLUSH seconds at most."""
    shipping.cancel()
    try:
        await shipping
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # the log's trouble is never the job's
        log.warning("job %s: live log: %s: %s", shipper.job_id, type(exc).__name__, exc)
    try:
        await asyncio.wait_for(shipper.flush(), LAST_FLUSH)
    except TimeoutError:
        log.warning("job %s: the rest of its live log could not be sent in %.0fs",
                    shipper.job_id, LAST_FLUSH)


class JobLost(Exception):
    """The broker says this worker no longer holds the job (cancelled, re-assigned, gone)."""


class Fatal(Exception):
    """The broker refuses this agent in a way retrying cannot mend (its token, say): the agent
    stops and says why in one line."""


def refusal(exc: BrokerError) -> Fatal:
    if exc.status == 401:
        return Fatal(f"the broker refused the worker token ({exc.status} {exc.code}: "
                     f"{exc.detail}); give it with --token, --token-file or "
                     f"BROKER_WORKER_TOKEN")
    if exc.status == 403:
        return Fatal(f"the broker refused this token for a worker ({exc.status} {exc.code}: "
                     f"{exc.detail}); is it the requester token?")
    return Fatal(f"the broker refused the agent: {exc}")


@dataclass
class RunningJob:
    contract: Contract
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""  # "lost" or "shutdown" once stop is set


class Agent:
    def __init__(self, config: AgentConfig, client: BrokerClient | None = None) -> None:
        self.config = config
        self.client = client or BrokerClient(config.broker, token=config.token)
        self.worker_id = ""
        self.stopping = asyncio.Event()
        self.jobs: dict[str, RunningJob] = {}
        self.taken: dict[str, Contract] = {}  # job id -> the next job its report took
        self._register_lock = asyncio.Lock()
        self._heartbeat = config.heartbeat
        self._cache_dir = Path(tempfile.mkdtemp(prefix="worker-agent-"))
        self.cache = FunctionCache(self.client, self._cache_dir)

    def stop(self) -> None:
        """First call: drain. A second call ends the grace period at once."""
        if self.stopping.is_set():
            self._end_grace()
        self.stopping.set()

    async def run(self) -> None:
        """Serve until stopped; raises Fatal when the broker refuses the agent for good."""
        try:
            await self._register("")
            if not self.worker_id:
                return
            slots = [asyncio.create_task(self._slot()) for _ in range(self.config.concurrency)]
            await self.stopping.wait()
            log.info("stopping: no new contracts; %d job(s) running, %.0fs grace",
                     len(self.jobs), self.config.grace)
            _, late = await asyncio.wait(slots, timeout=self.config.grace)
            if late:
                self._end_grace()
                await asyncio.wait(late)
            with contextlib.suppress(BrokerError, Unreachable, httpx.TransportError):
                await self.client.unregister(self.worker_id)
            log.info("worker %s unregistered; bye", self.worker_id)
            for slot in slots:  # every slot's outcome is read: none is left unretrieved
                error = slot.exception()
                if isinstance(error, Fatal):
                    raise error
        finally:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            await self.client.aclose()

    def _end_grace(self) -> None:
        for job in self.jobs.values():
            if not job.stop.is_set():
                job.reason = "shutdown"
                job.stop.set()

    async def _register(self, stale: str) -> None:
        """Register, or register again when the broker forgot `stale`; retried with backoff."""
        async with self._register_lock:
            if self.worker_id != stale:
                return
            attempt = 0
            while not self.stopping.is_set():
                try:
                    answer = await self.client.register(sorted(self.config.runtimes))
                except (httpx.TransportError, Unreachable, BrokerError) as exc:
                    if isinstance(exc, BrokerError) and exc.status < 500:
                        raise refusal(exc) from exc
                    log.warning("cannot register with %s (%s); retrying", self.config.broker,
                                exc)
                    await self._sleep(backoff(attempt))
                    attempt += 1
                    continue
                self.worker_id = answer["worker_id"]
                if answer.get("worker_token"):  # from now on it acts as this worker only
                    self.client.use_token(answer["worker_token"])
                self._heartbeat = float(answer.get("heartbeat_interval") or self._heartbeat)
                log.info("registered as worker %s for %s", self.worker_id,
                         ", ".join(answer["Runtime"]))
                return

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _slot(self) -> None:
        """Take and run jobs one at a time until stopping; a refusal stops the whole agent."""
        try:
            await self._take_jobs()
        except Fatal:
            self.stop()
            raise

    async def _take_jobs(self) -> None:
        failures = refusals = 0
        while not self.stopping.is_set():
            try:
                contract = await self._poll()
                failures = refusals = 0
            except BrokerError as exc:
                refusals += exc.status == 401
                if exc.code == "unknown_worker" or (exc.status == 401 and refusals <= 3):
                    # Forgotten, or its own token no longer holds (the broker's worker token
                    # changed): the shared token registers it again, or says why not.
                    log.warning("the broker no longer knows worker %s (%s); registering again",
                                self.worker_id, exc.code)
                    await self._register(self.worker_id)
                    continue
                if exc.status < 500:
                    raise refusal(exc) from exc
                contract, failures = None, failures + 1
            except httpx.TransportError as exc:
                log.warning("broker unreachable (%s); retrying", exc)
                contract, failures = None, failures + 1
            except (ValueError, KeyError, TypeError) as exc:  # an answer it cannot read
                log.error("unreadable contract answer (%s: %s); retrying", type(exc).__name__,
                          exc)
                contract, failures = None, failures + 1
            if failures:
                await self._sleep(backoff(failures, cap=30.0))
            while contract is not None:  # each report may hand the slot its next job
                if self.stopping.is_set():
                    await self._give_back(contract)
                    break
                contract = await self._execute(contract)

    async def _poll(self) -> Contract | None:
        """One long-poll, abandoned (the broker then hands the job to nobody) when stopping."""
        poll = asyncio.ensure_future(self.client.contract(self.worker_id, self.config.wait))
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return None
        return poll.result()

    async def _execute(self, c: Contract) -> Contract | None:
        """Run one job to its report; the next job that report took, if any."""
        job = RunningJob(c)
        self.jobs[c.job_id] = job
        log.info("job %s contract: runtime %s, attempt %d", c.job_id, c.runtime, c.attempts)
        try:
            with tempfile.TemporaryDirectory(prefix=f"job-{c.job_id}-") as tmp:
                await self._run_job(job, Path(tmp))
        except JobLost as exc:
            log.warning("job %s lost (%s): function killed, nothing uploaded", c.job_id, exc)
        except Unreachable as exc:
            log.error("job %s: the broker stayed unreachable (%s); giving up on it",
                      c.job_id, exc)
        except BrokerError as exc:
            if exc.status in (401, 403):
                raise refusal(exc) from exc
            log.error("job %s: the broker refused a call (%s); giving up on it", c.job_id, exc)
        except Exception as exc:  # one job's trouble must not end the slot
            log.error("job %s: %s: %s", c.job_id, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            with contextlib.suppress(Exception):
                await self._report(c, "failed", f"the worker agent failed running it: "
                                   f"{type(exc).__name__}: {exc}", retry=True)
        finally:
            del self.jobs[c.job_id]
        return self.taken.pop(c.job_id, None)

    async def _run_job(self, job: RunningJob, tmp: Path) -> None:
        c = job.contract
        try:
            function = await self.cache.fetch(c.function_id, tmp / "function")
            input_path = tmp / "input"
            if c.data1_id:
                await self.client.download(c.data1_id, input_path)
            else:
                input_path.touch()
        except BrokerError as exc:
            if exc.status in (401, 403, 409) or exc.status >= 500:
                raise
            await self._report(c, "failed", f"could not download the job's data: {exc}",
                               retry=False)
            return
        try:
            argv = command(self.config.runtimes[c.runtime], str(function), str(input_path),
                           str(tmp / "output"))
        except (KeyError, IndexError, ValueError) as exc:
            await self._report(c, "failed", f"cannot start the function: the runtime "
                               f"{c.runtime!r} has a bad template ({exc!r})", retry=False)
            return
        beat = asyncio.create_task(self._beat(job))
        limits = self.config.limits
        if c.timeout:  # the job's own time limit, when shorter than the agent's
            limits = dataclasses.replace(limits, time=min(limits.time, c.timeout))
        log.info("job %s start: %s", c.job_id, " ".join(argv))
        shipper = livelog.Shipper(runner.stderr_path_of(tmp), functools.partial(
            self.client.append_log, c.job_id, worker_id=self.worker_id, lease=c.lease),
            job_id=c.job_id)
        shipping = asyncio.create_task(shipper.run()) if self.config.live_log else None
        try:  # the heartbeat renews the job's lease until its outcome is delivered
            outcome = await runner.run(argv, tmp, c.job_id, input_path, limits, job.stop)
            log.info("job %s finish: %.2fs, %s", c.job_id, outcome.duration,
                     outcome.describe())
            if shipping is not None:
                await _last_words(shipping, shipper)
            await self._conclude(job, outcome)
        finally:
            beat.cancel()
            if shipping is not None:
                shipping.cancel()

    async def _conclude(self, job: RunningJob, outcome: runner.Outcome) -> None:
        c = job.contract
        if job.reason == "lost":
            raise JobLost("cancelled or re-assigned while running")
        if job.reason == "shutdown":
            await self._give_back(c)
        elif outcome.ok:
            await self._deliver(c, outcome.output)
        else:
            detail = outcome.describe()
            if outcome.start_error:
                detail += f" (runtime {c.runtime}: {' '.join(self.config.runtimes[c.runtime])})"
            await self._report(c, "failed", f"{detail}\n{outcome.stderr_tail}".rstrip(),
                               retry=outcome.retryable)

    async def _beat(self, job: RunningJob) -> None:
        c = job.contract
        interval = c.heartbeat_interval or self._heartbeat
        while True:
            await asyncio.sleep(interval)
            try:
                await self.client.put_job(c.job_id, {"status": "running"},
                                          worker_id=self.worker_id, lease=c.lease)
            except BrokerError as exc:
                if exc.status in (404, 409):
                    log.warning("job %s: broker says %s; stopping the function", c.job_id,
                                exc.code)
                    job.reason = "lost"
                    job.stop.set()
                    return
            except Unreachable as exc:
                log.warning("job %s: heartbeat failed (%s)", c.job_id, exc)

    async def _deliver(self, c: Contract, output: Path) -> None:
        fields: dict[str, str] = {"status": "succeeded"}
        if c.data2_id:
            await self._until_answered(lambda: self.client.put_data(
                c.data2_id, output, worker_id=self.worker_id, lease=c.lease))
        else:
            fields["data2_id"] = await self._until_answered(lambda: self.client.upload(output))
        await self._final_report(c, fields)
        log.info("job %s succeeded: output %s", c.job_id, fields.get("data2_id", c.data2_id))

    async def _report(self, c: Contract, status: str, error: str, *, retry: bool) -> None:
        """Report a failure; `retry` says whether another run might succeed (the broker runs
        it again while attempts remain). Always sent, so that no broker default decides."""
        fields = {"status": status, "error": error[-8192:], "retry": retry}
        await self._final_report(c, fields)
        again = "may run again" if retry else "final"
        log.info("job %s %s (%s): %s", c.job_id, status, again,
                 error.splitlines()[0] if error else "")

    async def _final_report(self, c: Contract, fields: dict[str, Any]) -> None:
        """The job's last report, taking the slot's next job in the same request (kept in
        `taken` for _execute to answer) unless the agent is stopping."""
        if self.stopping.is_set():
            await self._until_answered(lambda: self.client.put_job(
                c.job_id, fields, worker_id=self.worker_id, lease=c.lease))
            return
        taken, cancelled = await self._until_answered(lambda: self.client.report_and_take(
            c.job_id, fields, worker_id=self.worker_id, lease=c.lease))
        if cancelled:
            log.warning("job %s was cancelled while it ran: its report changed nothing",
                        c.job_id)
        if taken is not None:
            self.taken[c.job_id] = taken

    async def _give_back(self, c: Contract) -> None:
        await self._until_answered(lambda: self.client.put_job(
            c.job_id, {"status": "pending"}, worker_id=self.worker_id, lease=c.lease))
        log.info("job %s given back to the broker (shutdown)", c.job_id)

    async def _until_answered(self, call: Callable[[], Awaitable[T]]) -> T:
        """Repeat a delivery while the broker is unreachable, never losing a result, until it
        answers; a 409 or 404 means the job is no longer ours."""
        deadline = time.monotonic() + self.config.give_up_after
        attempt = 0
        while True:
            try:
                return await call()
            except BrokerError as exc:
                if exc.status in (404, 409):
                    raise JobLost(exc.code) from exc
                raise
            except (Unreachable, httpx.TransportError) as exc:
                if time.monotonic() > deadline:
                    raise Unreachable(str(exc)) from exc
                log.warning("broker unreachable (%s); retrying the delivery", exc)
            await asyncio.sleep(backoff(attempt, cap=5.0))
            attempt += 1
