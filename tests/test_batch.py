"""Batches: many jobs submitted, contracted and reported per request."""

from __future__ import annotations

import httpx
import redis

from tests.helpers import contract, job, register


def test_batch_submit_answers_each_job_in_order(client: httpx.Client, r: redis.Redis) -> None:
    resp = client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"},
        {"function_id": "f", "runtime": "sh", "data1_id": "zzzzzzzz"},
        {"runtime": "sh"},
        "not an object",
        {"function_id": "g", "runtime": "node", "max_attempts": 5},
    ]})
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert [sorted(x) for x in results] == [["job_id"], ["detail", "error", "field"],
                                           ["detail", "error", "field"], ["detail", "error"],
                                           ["job_id"]]
    assert results[1]["error"] == "unknown_data" and results[2]["error"] == "missing_field"
    assert r.zrange("broker:queue:sh", 0, -1) == [results[0]["job_id"]]
    assert job(client, results[4]["job_id"])["max_attempts"] == 5
    for bad in ({"jobs": []}, {"jobs": "x"}, {}):
        assert client.post("/jobs", json=bad).status_code == 400


def test_a_worker_takes_and_reports_many_jobs_at_once(client: httpx.Client) -> None:
    ids = [x["job_id"] for x in client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh"} for _ in range(5)]}).json()["results"]]
    worker = register(client, "sh")
    single = contract(client, worker).json()
    assert single["job_id"] == ids[0] and "contracts" not in single
    many = contract(client, worker, max=3).json()["contracts"]
    assert [c["job_id"] for c in many] == ids[1:4]
    assert len({c["lease"] for c in [single, *many]}) == 4
    reports = [{"job_id": c["job_id"], "lease": c["lease"], "status": "succeeded"}
               for c in many]
    reports[1]["lease"] = "stale"
    reports.append({"job_id": ids[0], "status": "failed", "error": "boom"})
    reports.append({"job_id": "BAD", "status": "succeeded"})
    resp = client.put("/jobs", json={"reports": reports}, headers={"X-Worker-Id": worker})
    results = resp.json()["results"]
    assert results[0] == {"ok": True} and results[2] == {"ok": True}
    assert results[1]["error"] == "lease_lost" and results[3] == {"ok": True}
    assert results[4]["error"] == "invalid_id"
    assert [job(client, i)["status"] for i in ids] == ["failed", "succeeded", "running",
                                                       "succeeded", "pending"]
    assert contract(client, worker, max=10).json()["contracts"][0]["job_id"] == ids[4]
    assert contract(client, worker, max=10).status_code == 204
    assert contract(client, worker, max=0).status_code == 400
    assert client.put("/jobs", json={"reports": reports}).status_code == 400  # no worker id
