"""A stateful property test of the job model: random sequences of create (plain, prioritised,
scheduled, or in a pipeline: on reserved data, after other jobs), claim, report, release,
cancel, delete, edit, re-run, pause and resume, data reserved and filled, against the
in-process broker and real Redis. After every step each job is in exactly one status index,
in a queue exactly when pending and not waiting out a retry, scheduled exactly when in the
scheduled set, in the retention set exactly when finished, in waiters sets exactly when
waiting (as many as it counts); each data file counts the jobs that name it; queue scores
follow priority then sequence; and the per-runtime counts agree with the jobs."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.helpers import contract, put_job

STATUSES = ("waiting", "scheduled", "pending", "running", "succeeded", "failed", "cancelled")
FINISHED = {"succeeded", "failed", "cancelled"}
RUNTIMES = ("a", "b")
PRIORITY_STEP = 2**44


def check_model(r: redis.Redis) -> None:
    jobs = {k.removeprefix("broker:job:"): r.hgetall(k) for k in r.scan_iter("broker:job:*")}
    indexed = {s: set(r.zrange(f"broker:index:{s}", 0, -1)) for s in STATUSES}
    queues = {rt: dict(r.zrange(f"broker:queue:{rt}", 0, -1, withscores=True))
              for rt in RUNTIMES}
    scheduled = set(r.zrange("broker:scheduled", 0, -1))
    delayed = set(r.zrange("broker:delayed", 0, -1))
    expiry = set(r.zrange("broker:expiry", 0, -1))
    for job_id, h in jobs.items():
        status = h["status"]
        assert [s for s in STATUSES if job_id in indexed[s]] == [status], (job_id, h)
        in_queues = [rt for rt in RUNTIMES if job_id in queues[rt]]
        if status == "pending" and job_id not in delayed:
            assert in_queues == [h["runtime"]], (job_id, h)
            score = queues[h["runtime"]][job_id]
            assert score == int(h["seq"]) - int(h.get("priority", 0)) * PRIORITY_STEP
        else:
            assert in_queues == [], (job_id, h)
        assert (job_id in scheduled) == (status == "scheduled"), (job_id, h)
        assert (job_id in delayed) <= (status == "pending")
        assert (job_id in expiry) == (status in FINISHED), (job_id, h)
    for s in STATUSES:
        assert indexed[s] <= set(jobs), s
    assert scheduled <= set(jobs) and expiry <= set(jobs)
    for rt in RUNTIMES:
        assert set(queues[rt]) <= set(jobs)
    waiters = {k: set(r.smembers(k)) for k in r.scan_iter("broker:waiters:*")}
    for job_id, h in jobs.items():
        sets = [k for k, members in waiters.items() if job_id in members]
        if h["status"] == "waiting":
            assert int(h["waits"]) == len(sets) > 0, (job_id, h, sets)
        else:
            assert sets == [] and "waits" not in h, (job_id, h, sets)
    assert r.llen("broker:cascade") == 0
    naming = collections.Counter(
        data_id for h in jobs.values()
        for data_id in {h.get("data1_id", ""), h.get("data2_id", ""), h.get("function_id", "")}
        if len(data_id) == 8)
    for key in r.scan_iter("broker:data:*"):
        counted = r.hget(key, "jobs")
        assert counted is not None and int(counted) == naming[key.split(":")[-1]], key
    for status, key in (("running", "broker:running"), ("scheduled", "broker:scheduled_counts"),
                        ("waiting", "broker:waiting_counts")):
        counted = {k: int(v) for k, v in r.hgetall(key).items() if int(v)}
        actual = collections.Counter(h["runtime"] for h in jobs.values() if h["status"] == status)
        assert counted == dict(actual), status


class JobModel(RuleBasedStateMachine):
    jobs = Bundle("jobs")
    held = Bundle("held")
    data = Bundle("data")

    def __init__(self, client: httpx.Client, r: redis.Redis) -> None:
        super().__init__()
        r.flushdb()
        self.client, self.r = client, r
        self.worker = client.post("/worker", json={"Runtime": list(RUNTIMES)}).json()[
            "worker_id"]

    @rule(target=jobs, runtime=st.sampled_from(RUNTIMES),
          priority=st.none() | st.integers(-100, 100),
          later=st.sampled_from([None, 0, -3600, 3600]))
    def create(self, runtime: str, priority: int | None, later: int | None) -> Any:
        body: dict[str, Any] = {"function_id": "f", "runtime": runtime}
        if priority is not None:
            body["priority"] = priority
        if later is not None:
            body["delay" if later >= 0 else "run_at"] = (
                later if later >= 0 else "2020-01-01T00:00:00Z")
        resp = self.client.post("/job", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["job_id"]

    @rule(target=data)
    def reserve(self) -> Any:
        return self.client.post("/data/reg").text.strip()

    @rule(data_id=data)
    def fill(self, data_id: str) -> None:
        resp = self.client.put("/data", headers={"X-Data-Id": data_id},
                               files={"file": b"filled"})
        assert resp.status_code in (200, 404), resp.text

    @rule(target=jobs, runtime=st.sampled_from(RUNTIMES), data1=st.none() | data,
          data2=st.none() | data, after=st.lists(jobs, max_size=2))
    def create_in_pipeline(self, runtime: str, data1: str | None, data2: str | None,
                           after: list[str]) -> Any:
        body: dict[str, Any] = {"function_id": "f", "runtime": runtime, "after": after}
        if data1:
            body["data1_id"] = data1
        if data2 and data2 != data1:
            body["data2_id"] = data2
        resp = self.client.post("/job", json=body)
        assert resp.status_code in (200, 409, 422), resp.text
        return resp.json().get("job_id", "zzzzzzzz")

    @rule(target=held, count=st.integers(1, 3))
    def claim(self, count: int) -> Any:
        resp = contract(self.client, self.worker, max=count)
        if resp.status_code == 204:
            return multiple()
        body = resp.json()
        given = body.get("contracts", [body])
        return multiple(*[(c["job_id"], c["lease"]) for c in given])

    @rule(held=consumes(held), outcome=st.sampled_from(
        ["succeeded", "failed", "failed-final", "pending"]))
    def report(self, held: tuple[str, str], outcome: str) -> None:
        job_id, lease = held
        body: dict[str, Any] = {"status": outcome.removesuffix("-final")}
        if outcome == "failed-final":
            body["retry"] = False
        resp = put_job(self.client, job_id, body, X_Worker_Id=self.worker, X_Lease=lease)
        assert resp.status_code in (204, 404, 409), resp.text

    @rule(job_id=jobs, change=st.sampled_from([
        {"status": "cancelled"}, {"status": "pending"}, {"priority": 50},
        {"priority": -7, "runtime": "b"}, {"runtime": "a"}, {"delay": 3600},
        {"status": "scheduled", "delay": 600}, {"run_at": "2020-01-01T00:00:00Z"},
        {"status": "pending", "delay": 0}]))
    def edit(self, job_id: str, change: dict[str, Any]) -> None:
        resp = put_job(self.client, job_id, change)
        assert resp.status_code in (204, 404, 409), resp.text

    @rule(job_id=consumes(jobs))
    def delete(self, job_id: str) -> None:
        resp = self.client.delete("/job", headers={"X-Job-Id": job_id})
        assert resp.status_code in (204, 404), resp.text

    @rule(runtime=st.sampled_from(RUNTIMES), paused=st.booleans())
    def pause(self, runtime: str, paused: bool) -> None:
        resp = self.client.put("/runtimes", json={"runtime": runtime, "paused": paused})
        assert resp.status_code == 200, resp.text

    @invariant()
    def model_holds(self) -> None:
        check_model(self.r)


def test_every_sequence_of_steps_keeps_the_job_model_true(client: httpx.Client,
                                                          r: redis.Redis) -> None:
    run_state_machine_as_test(
        lambda: JobModel(client, r),
        settings=settings(max_examples=100, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck)))
