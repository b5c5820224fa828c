from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.helpers import contract, job, put_job, register, submit, upload
from tests.inprocess import InProcess

SEED_JOB_FIELDS = {"job_id", "data1_id", "data2_id", "function_id", "runtime", "status"}


def test_post_job_makes_a_pending_job_on_its_runtimes_queue(client: httpx.Client,
                                                            r: redis.Redis) -> None:
    data1 = upload(client, b"input")
    resp = client.post("/job", json={"data1_id": data1, "data2_id": "", "function_id": "f1",
                                     "runtime": "python3"})
    assert resp.status_code == 200
    assert set(resp.json()) == {"job_id"}
    job_id = resp.json()["job_id"]
    body = job(client, job_id)
    assert set(body) >= SEED_JOB_FIELDS
    assert body["status"] == "pending" and body["data1_id"] == data1
    assert body["data2_id"] == "" and body["function_id"] == "f1"
    assert body["attempts"] == 0 and body["worker_id"] is None
    assert body["created_at"].endswith("Z") and body["started_at"] is None
    assert r.zrange("broker:queue:python3", 0, -1) == [job_id]
    assert r.hget(f"broker:job:{job_id}", "status") == "pending"


@pytest.mark.parametrize("field", ["data1_id", "data2_id"])
def test_a_data_id_that_names_no_data_is_refused_naming_the_field(
        client: httpx.Client, r: redis.Redis, field: str) -> None:
    resp = client.post("/job", json={field: "nosuchid", "function_id": "f", "runtime": "sh"})
    assert resp.status_code == 422
    assert resp.json()["error"] == "unknown_data"
    assert resp.json()["field"] == field and field in resp.json()["detail"]
    assert r.keys("broker:job:*") == [] and r.zcard("broker:queue:sh") == 0


@pytest.mark.parametrize(("body", "error"), [
    ({"runtime": "sh"}, "missing_field"),
    ({"function_id": "f"}, "missing_field"),
    ({"function_id": "", "runtime": "sh"}, "missing_field"),
    ({"function_id": 5, "runtime": "sh"}, "wrong_type"),
    ({"function_id": "f", "runtime": ["sh"]}, "invalid_runtime"),
    ({"function_id": "f", "runtime": "sh", "data1_id": "BAD"}, "invalid_id"),
    ({"function_id": "f", "runtime": "sh", "data1_id": 12345678}, "wrong_type"),
    ({"function_id": "f", "runtime": "sh", "colour": "red"}, "unknown_field"),
    ({"function_id": "f", "runtime": "sh", "job_id": "abcdefgh"}, "unknown_field"),
])
def test_post_job_refuses_bad_bodies(client: httpx.Client, body: dict[str, object],
                                     error: str) -> None:
    resp = client.post("/job", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == error


def test_post_job_refuses_malformed_or_mistyped_bodies(client: httpx.Client) -> None:
    bad_json = client.post("/job", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "malformed_json"
    not_object = client.post("/job", json=["f", "sh"])
    assert not_object.status_code == 400
    as_form = client.post("/job", data={"function_id": "f", "runtime": "sh"})
    assert as_form.status_code == 415 and as_form.json()["error"] == "unsupported_media_type"
    empty = client.post("/job")
    assert empty.status_code == 400 and empty.json()["error"] == "missing_body"
    huge = client.post("/job", json={"function_id": "f" * 70000, "runtime": "sh"})
    assert huge.status_code == 413


def test_get_job_needs_a_wellformed_known_id(client: httpx.Client) -> None:
    assert client.get("/job").json()["error"] == "missing_id"
    assert client.get("/job", headers={"X-Job-Id": "../../etc"}).status_code == 400
    unknown = client.get("/job", headers={"X-Job-Id": "00000000"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_job"


def test_the_whole_lifecycle_of_one_job(client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "python3")
    out = upload(client, b"")
    job_id = submit(client, "python3")
    given = contract(client, worker).json()
    assert given["job_id"] == job_id and given["data2_id"] == ""
    running = job(client, job_id)
    assert running["status"] == "running" and running["worker_id"] == worker
    assert running["attempts"] == 1 and running["started_at"] is not None
    assert r.smembers(f"broker:worker:{worker}:jobs") == {job_id}
    assert r.hget(f"broker:job:{job_id}", "lease") == given["lease"]

    # The seed's worker: POST /data for the output, then PUT /job with it and the outcome.
    resp = put_job(client, job_id, {"data2_id": out, "status": "succeeded"},
                   X_Worker_Id=worker, X_Lease=given["lease"])
    assert resp.status_code == 204, resp.text
    done = job(client, job_id)
    assert done["status"] == "succeeded" and done["data2_id"] == out
    assert done["finished_at"] is not None
    assert r.smembers(f"broker:worker:{worker}:jobs") == set()

    # Repeating the same final report is harmless; another outcome is not.
    assert put_job(client, job_id, {"status": "succeeded"}, X_Worker_Id=worker).status_code == 204
    assert put_job(client, job_id, {"status": "failed"}, X_Worker_Id=worker).status_code == 409

    # The requester runs it again: back to pending, at the tail of the queue.
    later = submit(client, "python3")
    assert put_job(client, job_id, {"status": "pending"}).status_code == 204
    rerun = job(client, job_id)
    assert rerun["status"] == "pending" and rerun["worker_id"] is None
    assert rerun["finished_at"] is None
    assert r.zrange("broker:queue:python3", 0, -1) == [later, job_id]


def test_a_seed_worker_echoing_the_contract_back_can_report(client: httpx.Client) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    given = contract(client, worker).json()
    body = {k: given[k] for k in ("job_id", "data1_id", "data2_id", "function_id", "runtime",
                                  "worker_id")}
    resp = client.put("/job", json={**body, "status": "failed", "error": "exit 3"})
    assert resp.status_code == 204, resp.text
    again = job(client, job_id)  # a failed attempt runs again while attempts remain
    assert (again["status"], again["error"], again["attempts"]) == ("pending", "exit 3", 1)
    assert again["retry_at"] is not None and again["worker_id"] is None


def test_a_failure_is_retried_until_attempts_run_out_unless_the_worker_says_no(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_RETRY_BASE="0.01", BROKER_SWEEP_INTERVAL="0.05")
    worker = register(c, "sh")
    retried = c.post("/job", json={"function_id": "f", "runtime": "sh",
                                   "max_attempts": 2}).json()["job_id"]
    errors = []
    for attempt in (1, 2):
        given = _contract_when_due(c, worker)
        assert (given["job_id"], given["attempts"]) == (retried, attempt)
        failed = put_job(c, retried, {"status": "failed", "error": f"boom {attempt}"},
                         X_Worker_Id=worker, X_Lease=given["lease"])
        assert failed.status_code == 204, failed.text
        errors.append(job(c, retried)["status"])
    assert errors == ["pending", "failed"]
    last = job(c, retried)
    assert (last["error"], last["attempts"], last["retry_at"]) == ("boom 2", 2, None)
    final = submit(c, "sh")
    given = _contract_when_due(c, worker)
    assert given["job_id"] == final
    put_job(c, final, {"status": "failed", "error": "bad input", "retry": False},
            X_Worker_Id=worker)
    assert job(c, final)["status"] == "failed" and job(c, final)["attempts"] == 1
    wrong = put_job(c, final, {"status": "failed", "retry": "no"}, X_Worker_Id=worker)
    assert wrong.status_code == 400 and wrong.json()["field"] == "retry"


def _contract_when_due(c: httpx.Client, worker: str) -> dict[str, Any]:
    given = contract(c, worker, wait=5)
    assert given.status_code == 200, given.text
    body: dict[str, Any] = given.json()
    return body


def test_a_worker_that_does_not_hold_the_job_cannot_write_it(client: httpx.Client) -> None:
    holder, other = register(client, "sh"), register(client, "sh")
    job_id = submit(client, "sh")
    lease = contract(client, holder).json()["lease"]
    for headers in ({"X_Worker_Id": other}, {"X_Worker_Id": holder, "X_Lease": "stale"},
                    {"X_Worker_Id": other, "X_Lease": lease}):
        resp = put_job(client, job_id, {"status": "succeeded"}, **headers)
        assert resp.status_code == 409 and resp.json()["error"] == "lease_lost"
    assert job(client, job_id)["status"] == "running"


def test_illegal_transitions_are_409_and_name_the_allowed_ones(client: httpx.Client) -> None:
    job_id = submit(client, "sh")
    resp = put_job(client, job_id, {"status": "succeeded"})
    assert resp.status_code == 409
    body = resp.json()
    assert body["error"] == "illegal_transition"
    assert body["allowed"] == ["pending", "scheduled", "cancelled"]
    assert "cancelled" in body["detail"]
    worker = register(client, "sh")
    contract(client, worker)
    resp = put_job(client, job_id, {"status": "pending"})
    assert resp.status_code == 409 and resp.json()["allowed"] == ["cancelled"]
    resp = put_job(client, job_id, {"status": "cancelled"}, X_Worker_Id=worker)
    assert resp.status_code == 409
    assert resp.json()["allowed"] == ["running", "succeeded", "failed", "pending"]
    bogus = put_job(client, job_id, {"status": "done"})
    assert bogus.status_code == 400 and bogus.json()["error"] == "invalid_status"


def test_cancelling_a_pending_job_takes_it_off_its_queue(client: httpx.Client,
                                                         r: redis.Redis) -> None:
    job_id = submit(client, "sh")
    assert put_job(client, job_id, {"status": "cancelled"}).status_code == 204
    assert job(client, job_id)["status"] == "cancelled"
    assert r.zcard("broker:queue:sh") == 0
    worker = register(client, "sh")
    assert contract(client, worker).status_code == 204


def test_a_cancelled_running_job_tells_its_worker(client: httpx.Client) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    lease = contract(client, worker).json()["lease"]
    assert put_job(client, job_id, {"status": "cancelled"}).status_code == 204
    resp = put_job(client, job_id, {"status": "succeeded"}, X_Worker_Id=worker, X_Lease=lease)
    assert resp.status_code == 409 and resp.json()["error"] == "cancelled"
    assert job(client, job_id)["status"] == "cancelled"


def test_changing_the_runtime_of_a_pending_job_moves_it_keeping_its_place(
        client: httpx.Client, r: redis.Redis) -> None:
    older = submit(client, "node")
    moved = submit(client, "python3")
    newer = submit(client, "node")
    assert put_job(client, moved, {"runtime": "node"}).status_code == 204
    assert r.zcard("broker:queue:python3") == 0
    assert r.zrange("broker:queue:node", 0, -1) == [older, moved, newer]
    assert job(client, moved)["runtime"] == "node"


def test_a_requester_edits_a_pending_job_but_not_a_running_one(client: httpx.Client) -> None:
    data = upload(client)
    job_id = submit(client, "sh")
    assert put_job(client, job_id, {"data1_id": data, "function_id": "g"}).status_code == 204
    assert job(client, job_id)["data1_id"] == data
    unknown = put_job(client, job_id, {"data2_id": "zzzzzzzz"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "data2_id"
    worker = register(client, "sh")
    contract(client, worker)
    locked = put_job(client, job_id, {"function_id": "h"})
    assert locked.status_code == 409 and locked.json()["field"] == "function_id"
    echoed = put_job(client, job_id, {"function_id": "g", "status": "cancelled"})
    assert echoed.status_code == 204


def test_a_worker_may_set_the_output_only_where_none_is_set(client: httpx.Client) -> None:
    mine, theirs = upload(client), upload(client)
    worker = register(client, "sh")
    preset = submit(client, "sh", data2_id=theirs)
    contract(client, worker)
    resp = put_job(client, preset, {"data2_id": mine, "status": "succeeded"}, X_Worker_Id=worker)
    assert resp.status_code == 409 and resp.json()["field"] == "data2_id"
    resp = put_job(client, preset, {"data2_id": theirs, "status": "succeeded"},
                   X_Worker_Id=worker)
    assert resp.status_code == 204


def test_a_worker_gives_a_job_back_to_the_head_of_its_queue(client: httpx.Client,
                                                           r: redis.Redis) -> None:
    worker = register(client, "sh")
    first, second = submit(client, "sh"), submit(client, "sh")
    assert contract(client, worker).json()["job_id"] == first
    assert put_job(client, first, {"status": "pending"}, X_Worker_Id=worker).status_code == 204
    assert r.zrange("broker:queue:sh", 0, -1) == [first, second]
    again = contract(client, worker).json()
    assert again["job_id"] == first and again["attempts"] == 2


def test_delete_job_in_each_state(client: httpx.Client, r: redis.Redis) -> None:
    pending = submit(client, "sh")
    assert client.delete("/job", headers={"X-Job-Id": pending}).status_code == 204
    assert client.get("/job", headers={"X-Job-Id": pending}).status_code == 404
    assert r.zcard("broker:queue:sh") == 0

    worker = register(client, "sh")
    running = submit(client, "sh")
    contract(client, worker)
    assert client.delete("/job", headers={"X-Job-Id": running}).status_code == 204
    tombstone = job(client, running)
    assert tombstone["status"] == "cancelled"
    assert r.zscore("broker:tombstones", running) is not None
    assert r.zrange("broker:index:cancelled", 0, -1) == [running]
    resp = put_job(client, running, {"status": "succeeded"}, X_Worker_Id=worker)
    assert resp.json()["error"] == "cancelled"
    assert client.delete("/job", headers={"X-Job-Id": running}).status_code == 204
    assert client.get("/job", headers={"X-Job-Id": running}).status_code == 404
    assert client.delete("/job", headers={"X-Job-Id": running}).status_code == 404


def test_a_job_given_back_past_the_limit_fails_and_says_why(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_MAX_GIVEBACKS="3")
    worker = register(c, "sh")
    job_id = submit(c, "sh")
    answers = []
    for _ in range(4):
        given = contract(c, worker).json()
        assert given["job_id"] == job_id
        back = put_job(c, job_id, {"status": "pending"}, X_Worker_Id=worker,
                       X_Lease=given["lease"])
        assert back.status_code == 204
        answers.append(job(c, job_id)["status"])
    assert answers == ["pending", "pending", "pending", "failed"]
    failed = job(c, job_id)
    assert failed["error"].startswith("given_back: its workers gave it back 4 times")
    assert contract(c, worker).status_code == 204
    assert put_job(c, job_id, {"status": "pending"}).status_code == 204  # a rerun
    given = contract(c, worker).json()
    assert given["attempts"] == 1
    assert put_job(c, job_id, {"status": "pending"}, X_Worker_Id=worker,
                   X_Lease=given["lease"]).status_code == 204
    assert job(c, job_id)["status"] == "pending"  # the rerun counts afresh


def test_a_data_id_is_the_output_of_one_job_at_most(client: httpx.Client) -> None:
    out = client.post("/data/reg").text
    first = submit(client, "sh", data2_id=out)
    second = client.post("/job", json={"function_id": "f", "runtime": "sh", "data2_id": out})
    assert second.status_code == 409 and second.json()["error"] == "output_taken"
    assert second.json()["field"] == "data2_id" and first in second.json()["detail"]
    batch = client.post("/jobs", json={"jobs": [
        {"function_id": "f", "runtime": "sh", "data2_id": out}]}).json()["results"]
    assert batch[0]["error"] == "output_taken"
    other = submit(client, "sh")
    edit = put_job(client, other, {"data2_id": out})
    assert edit.status_code == 409 and edit.json()["error"] == "output_taken"
    worker = register(client, "sh")
    given = contract(client, worker).json()
    assert given["job_id"] == first
    given = contract(client, worker).json()
    assert given["job_id"] == other  # its worker may not claim the first job's output either
    claimed = put_job(client, other, {"status": "running", "data2_id": out},
                      X_Worker_Id=worker, X_Lease=given["lease"])
    assert claimed.status_code == 409 and claimed.json()["error"] == "output_taken"
    # Once the first job is gone (DELETE cancels a running job, a second DELETE removes it),
    # the output is free.
    assert client.delete("/job", headers={"X-Job-Id": first}).status_code == 204
    assert client.delete("/job", headers={"X-Job-Id": first}).status_code == 204
    taken = put_job(client, other, {"status": "running", "data2_id": out},
                    X_Worker_Id=worker, X_Lease=given["lease"])
    assert taken.status_code == 204, taken.text


def test_a_pending_job_that_takes_another_output_lets_go_of_the_first(
        client: httpx.Client) -> None:
    out, elsewhere = client.post("/data/reg").text, client.post("/data/reg").text
    job_id = submit(client, "nobody", data2_id=out)
    assert put_job(client, job_id, {"data2_id": elsewhere}).status_code == 204
    assert submit(client, "nobody", data2_id=out)


def test_a_lease_longer_than_128_characters_is_refused_wherever_it_is_sent(
        client: httpx.Client) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    contract(client, worker)
    long = "x" * 129
    single = put_job(client, job_id, {"status": "running"}, X_Worker_Id=worker, X_Lease=long)
    batch = client.put("/jobs", headers={"X-Worker-Id": worker}, json={"reports": [
        {"job_id": job_id, "status": "running", "lease": long}]}).json()["results"][0]
    data = client.put("/data", files={"file": ("f", b"x")},
                      headers={"X-Data-Id": upload(client), "X-Worker-Id": worker,
                               "X-Lease": long})
    assert (single.status_code, data.status_code) == (400, 400)
    assert {single.json()["error"], batch["error"], data.json()["error"]} == {"wrong_type"}
