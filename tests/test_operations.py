"""Health, metrics, listings and the access log, on a real broker."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import contract, put_job, register, submit


def test_jobs_are_listed_newest_first_with_a_cursor_that_survives_changes(
        client: httpx.Client) -> None:
    ids = [submit(client, "sh" if i % 2 else "node") for i in range(7)]
    first = client.get("/jobs", params={"limit": 3}).json()
    assert [j["job_id"] for j in first["jobs"]] == ids[::-1][:3]
    # A job on the next page changes status between the two requests.
    put_job(client, ids[2], {"status": "cancelled"})
    rest = client.get("/jobs", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [j["job_id"] for j in rest["jobs"]] == ids[::-1][3:]
    assert rest["next_cursor"] is None or client.get(
        "/jobs", params={"cursor": rest["next_cursor"]}).json()["jobs"] == []
    cancelled = client.get("/jobs", params={"status": "cancelled"}).json()["jobs"]
    assert [j["job_id"] for j in cancelled] == [ids[2]]
    sh = client.get("/jobs", params={"status": "pending", "runtime": "sh"}).json()["jobs"]
    assert [j["job_id"] for j in sh] == [ids[5], ids[3], ids[1]]


def test_listing_queries_are_checked(client: httpx.Client) -> None:
    for params in ({"status": "done"}, {"limit": 0}, {"limit": "x"}, {"cursor": "abc"},
                   {"runtime": "bad runtime"}):
        resp = client.get("/jobs", params=params)
        assert resp.status_code == 400, params
    assert client.get("/workers", params={"cursor": "NOT-AN-ID"}).status_code == 400


def test_workers_and_runtimes_are_listed(client: httpx.Client, r: redis.Redis) -> None:
    a, b = register(client, "sh"), register(client, "sh", "python3")
    job_id = submit(client, "sh")
    submit(client, "python3")
    contract(client, a)
    workers = {w["worker_id"]: w for w in client.get("/workers").json()["workers"]}
    assert set(workers) == {a, b}
    assert workers[a]["running"] == [job_id] and workers[b]["running"] == []
    assert workers[b]["Runtime"] == ["sh", "python3"] and workers[a]["last_seen"]
    runtimes = {r["runtime"]: r for r in client.get("/runtimes").json()["runtimes"]}
    assert runtimes["sh"] == {"runtime": "sh", "pending": 0, "running": 1, "scheduled": 0,
                              "waiting": 0, "workers": 2, "paused": False, "warning": None}
    assert runtimes["python3"] == {"runtime": "python3", "pending": 1, "running": 0,
                                   "scheduled": 0, "waiting": 0, "workers": 1,
                                   "paused": False, "warning": None}
    page = client.get("/workers", params={"limit": 1}).json()
    assert len(page["workers"]) == 1 and page["next_cursor"]
    rest = client.get("/workers", params={"cursor": page["next_cursor"]}).json()
    assert {w["worker_id"] for w in page["workers"] + rest["workers"]} == {a, b}
    assert rest["next_cursor"] is None and page["workers"][0]["worker_id"] == min(a, b)
    client.delete("/worker", headers={"X-Worker-Id": a})
    assert [w["worker_id"] for w in client.get("/workers").json()["workers"]] == [b]
    assert r.zrange("broker:worker_ids", 0, -1) == [b]  # read a page at a time, by id


def test_metrics_report_redis_truth_and_http_traffic(client: httpx.Client,
                                                     r: redis.Redis) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    submit(client, "sh")
    lease = contract(client, worker).json()["lease"]
    put_job(client, job_id, {"status": "succeeded"}, X_Worker_Id=worker, X_Lease=lease)
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'broker_jobs{status="succeeded"} 1.0' in text
    assert 'broker_jobs{status="pending"} 1.0' in text
    assert 'broker_queue_pending{runtime="sh"} 1.0' in text
    assert 'broker_workers_live{runtime="sh"} 1.0' in text
    assert 'broker_jobs_finished_total{status="succeeded"} 1.0' in text
    assert "broker_jobs_handed_out_total 1.0" in text
    assert "broker_job_wait_seconds_count" in text and "broker_job_run_seconds_count" in text
    assert 'broker_http_requests_total{method="POST",route="/job",status="200"}' in text


def test_each_request_logs_one_line_and_echoes_its_request_id(
        start_broker: Callable[..., BrokerProcess]) -> None:
    proc = start_broker(BROKER_ACCESS_LOG="json", BROKER_LOG_LEVEL="info")
    with httpx.Client(base_url=proc.url, timeout=30) as c:
        resp = c.post("/job", json={"function_id": "f", "runtime": "sh"},
                      headers={"X-Request-Id": "trace-123"})
        assert resp.headers["x-request-id"] == "trace-123"
        job_id = resp.json()["job_id"]
        generated = c.get("/job", headers={"X-Job-Id": job_id}).headers["x-request-id"]
        assert len(generated) == 32
    proc.stop()
    lines = [json.loads(line.split("broker.access: ", 1)[1])
             for line in proc.log().splitlines() if "broker.access: " in line]
    posted = [entry for entry in lines if entry["request_id"] == "trace-123"]
    assert len(posted) == 1
    assert posted[0]["job_id"] == job_id and posted[0]["status"] == 200
    assert posted[0]["method"] == "POST" and posted[0]["path"] == "/job"
    got = [entry for entry in lines if entry["request_id"] == generated]
    assert got[0]["job_id"] == job_id and got[0]["duration_ms"] >= 0
