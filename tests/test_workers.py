from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from broker.store.scripts import source
from tests.helpers import register
from tests.inprocess import InProcess


def test_register_answers_a_fresh_id_and_the_runtimes(client: httpx.Client,
                                                     r: redis.Redis) -> None:
    resp = client.post("/worker", json={"Runtime": ["python3", "node", "python3"]})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"worker_id", "Runtime", "heartbeat_interval"}
    assert body["heartbeat_interval"] == 10.0  # a third of the default 30 s worker timeout
    assert len(body["worker_id"]) == 8 and body["worker_id"].isalnum()
    assert body["Runtime"] == ["python3", "node"]
    assert r.hget(f"broker:worker:{body['worker_id']}", "Runtime") == '["python3", "node"]'
    assert r.zscore("broker:workers", body["worker_id"]) is not None


def test_get_worker_by_header_or_by_body(client: httpx.Client) -> None:
    worker_id = register(client, "sh")
    by_header = client.get("/worker", headers={"X-Worker-Id": worker_id})
    assert by_header.status_code == 200
    assert by_header.json()["worker_id"] == worker_id
    assert by_header.json()["Runtime"] == ["sh"]
    by_body = client.request("GET", "/worker", json={"worker_id": worker_id})
    assert by_body.json()["Runtime"] == ["sh"]


def test_header_and_body_ids_that_differ_are_refused(client: httpx.Client) -> None:
    a, b = register(client, "sh"), register(client, "sh")
    resp = client.request("GET", "/worker", headers={"X-Worker-Id": a}, json={"worker_id": b})
    assert resp.status_code == 400
    assert resp.json()["error"] == "id_mismatch"


def test_delete_worker_removes_it(client: httpx.Client, r: redis.Redis) -> None:
    worker_id = register(client, "sh")
    resp = client.delete("/worker", headers={"X-Worker-Id": worker_id})
    assert resp.status_code == 204 and resp.content == b""
    assert client.get("/worker", headers={"X-Worker-Id": worker_id}).status_code == 404
    assert client.delete("/worker", headers={"X-Worker-Id": worker_id}).status_code == 404
    assert r.zscore("broker:workers", worker_id) is None


def test_deleting_a_worker_puts_its_running_jobs_back_first_in_line(
        client: httpx.Client) -> None:
    worker_id = register(client, "sh")
    first = client.post("/job", json={"function_id": "f", "runtime": "sh"}).json()["job_id"]
    client.post("/job", json={"function_id": "f", "runtime": "sh"})
    assert client.get("/worker/contract", headers={"X-Worker-Id": worker_id}).json()[
        "job_id"] == first
    client.delete("/worker", headers={"X-Worker-Id": worker_id})
    job = client.get("/job", headers={"X-Job-Id": first}).json()
    assert job["status"] == "pending" and job["worker_id"] is None and job["attempts"] == 1
    other = register(client, "sh")
    again = client.get("/worker/contract", headers={"X-Worker-Id": other}).json()
    assert again["job_id"] == first and again["attempts"] == 2


def test_register_refuses_bad_runtimes(client: httpx.Client) -> None:
    cases = [{}, {"Runtime": []}, {"Runtime": "python3"}, {"Runtime": ["ok", 3]},
             {"Runtime": ["has space"]}, {"Runtime": ["a*"]}, {"Runtime": ["x" * 65]},
             {"runtime": ["python3"]}, {"Runtime": [f"r{i}" for i in range(33)]}]
    for body in cases:
        resp = client.post("/worker", json=body)
        assert resp.status_code == 400, body
        assert set(resp.json()) >= {"error", "detail"}


def test_worker_ids_are_checked_before_anything_is_read(client: httpx.Client) -> None:
    for bad in ["short", "UPPERCAS", "abc/../x", "abcdefghi", "abcd efg", ""]:
        resp = client.get("/worker", headers={"X-Worker-Id": bad})
        assert resp.status_code == 400, bad
        assert resp.json()["error"] == "invalid_id"
    assert client.get("/worker").json()["error"] == "missing_id"


def test_unknown_worker_is_404(client: httpx.Client) -> None:
    resp = client.get("/worker", headers={"X-Worker-Id": "zzzzzzzz"})
    assert resp.status_code == 404
    assert resp.json()["error"] == "unknown_worker"


def test_an_id_that_exists_is_never_overwritten(r: redis.Redis) -> None:
    # A collision of random ids cannot be forced through HTTP; the script that creates the
    # worker answers id_taken for an existing key and leaves it alone, and the store draws again.
    r.hset("broker:worker:aaaaaaaa", mapping={"worker_id": "aaaaaaaa", "Runtime": '["x"]'})
    result = r.eval(source("register"), 2, "broker:worker:aaaaaaaa", "broker:workers",
                    "aaaaaaaa", '["y"]', 1, 30001)
    assert result == ["id_taken"]
    assert r.hget("broker:worker:aaaaaaaa", "Runtime") == '["x"]'


def test_runtimes_are_forgotten_when_nothing_names_them_and_capped(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_MAX_RUNTIMES="4")
    def known() -> list[str]:
        return sorted(r["runtime"] for r in c.get("/runtimes").json()["runtimes"])

    made = c.post("/jobs", json={"jobs": [{"function_id": "f", "runtime": r}
                                          for r in ("a", "b", "c", "c")]}).json()
    job_ids = [r["job_id"] for r in made["results"]]
    worker = register(c, "c", "d")
    assert known() == ["a", "b", "c", "d"]
    full = c.post("/job", json={"function_id": "f", "runtime": "e"})
    assert full.status_code == 409 and full.json()["error"] == "too_many_runtimes"
    assert full.json()["limit"] == 4
    assert c.post("/worker", json={"Runtime": ["e"]}).status_code == 409
    assert c.post("/job", json={"function_id": "f", "runtime": "a"}).status_code == 200
    moved = c.put("/job", headers={"X-Job-Id": job_ids[1]}, json={"runtime": "c"})
    assert moved.status_code == 204 and known() == ["a", "c", "d"]  # b: named by no one
    for job_id in c.get("/jobs", params={"runtime": "a"}).json()["jobs"]:
        c.delete("/job", headers={"X-Job-Id": job_id["job_id"]})
    assert known() == ["c", "d"]
    assert c.delete("/worker", headers={"X-Worker-Id": worker}).status_code == 204
    assert known() == ["c"]  # still named by its three jobs
    for job_id in job_ids[1:]:
        assert c.delete("/job", headers={"X-Job-Id": job_id}).status_code == 204
    assert known() == []
    assert c.post("/job", json={"function_id": "f", "runtime": "e"}).status_code == 200
