from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import contract, put_job, register, submit, until

RUNTIMES = (("a",), ("b",), ("a", "b"))


@pytest.mark.slow
def test_two_brokers_and_fifty_workers_run_every_job_exactly_once(
        start_broker: Callable[..., BrokerProcess], r: redis.Redis, tmp_path: Path) -> None:
    brokers = [start_broker() for _ in range(2)]
    clients = [httpx.Client(base_url=b.url, timeout=30) for b in brokers]
    ran = tmp_path / "ran"  # each job's "function" appends its job id here
    total = 5000
    submitted: list[str] = []
    handed: list[tuple[str, str, str]] = []  # (job_id, job runtime, worker runtimes)
    lock = threading.Lock()
    done = threading.Event()

    def produce() -> None:
        for i in range(total):
            job_id = submit(clients[i % 2], ("a", "b")[i % 2])
            with lock:
                submitted.append(job_id)

    def work(n: int) -> None:
        runtimes = RUNTIMES[n % 3]
        c = clients[n % 2]
        worker = register(c, *runtimes)
        while not done.is_set():
            resp = contract(random.choice(clients), worker, wait=0.5)
            if resp.status_code == 204:
                continue
            assert resp.status_code == 200, resp.text
            given = resp.json()
            with ran.open("a") as f:
                f.write(given["job_id"] + "\n")
            with lock:
                handed.append((given["job_id"], given["runtime"], "+".join(runtimes)))
                if len(handed) >= total:
                    done.set()
            reported = put_job(c, given["job_id"], {"status": "succeeded"},
                               X_Worker_Id=worker, X_Lease=given["lease"])
            assert reported.status_code == 204, reported.text

    workers = [threading.Thread(target=work, args=(n,)) for n in range(50)]
    for t in workers:
        t.start()
    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(240)
    done.wait(240)
    done.set()
    for t in workers:
        t.join(30)
    for c in clients:
        c.close()

    runs = ran.read_text().split()
    assert len(runs) == len(set(runs)) == total, "a job ran twice, or not at all"
    ids = [h[0] for h in handed]
    assert len(ids) == len(set(ids)), "a job was handed out twice"
    assert set(ids) == set(submitted) and len(submitted) == total
    assert all(rt in wrt.split("+") for _, rt, wrt in handed)
    until(lambda: {r.hget(f"broker:job:{j}", "status") for j in submitted} == {"succeeded"})
    assert r.zcard("broker:queue:a") == 0 and r.zcard("broker:queue:b") == 0
