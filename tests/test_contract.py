from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import httpx
import redis

from tests.brokerproc import BrokerProcess
from tests.helpers import contract, job, register, requests_served, submit, until
from tests.inprocess import InProcess

CONTRACT_FIELDS = {"worker_id", "job_id", "data1_id", "data2_id", "function_id", "runtime"}


def test_a_contract_carries_the_seed_fields_and_a_lease(client: httpx.Client) -> None:
    worker = register(client, "python3")
    job_id = submit(client, "python3")
    resp = contract(client, worker)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) >= CONTRACT_FIELDS
    assert body["worker_id"] == worker and body["job_id"] == job_id
    assert body["runtime"] == "python3" and body["function_id"] == "fn"
    assert len(body["lease"]) >= 16 and body["attempts"] == 1


def test_no_job_is_204_and_an_unknown_worker_is_404(client: httpx.Client) -> None:
    worker = register(client, "python3")
    submit(client, "node")
    empty = contract(client, worker)
    assert empty.status_code == 204 and empty.content == b""
    unknown = contract(client, "zzzzzzzz")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_worker"


def test_each_runtime_is_fifo_and_a_worker_gets_the_oldest_among_its_runtimes(
        client: httpx.Client) -> None:
    order = [submit(client, rt) for rt in ("node", "python3", "sh", "node", "python3")]
    both = register(client, "python3", "node")
    got = [contract(client, both).json()["job_id"] for _ in range(4)]
    assert got == [order[0], order[1], order[3], order[4]]
    assert contract(client, both).status_code == 204
    assert job(client, order[2])["status"] == "pending"


def test_a_waiting_worker_is_handed_a_job_as_soon_as_it_arrives(client: httpx.Client,
                                                               r: redis.Redis) -> None:
    worker = register(client, "sh")
    result: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: result.update(resp=contract(client, worker, wait=20)))
    started = time.monotonic()
    t.start()
    until(lambda: r.exists("broker:waiting:sh") == 1)  # its claim found nothing: it waits
    job_id = submit(client, "sh")
    t.join(25)
    elapsed = time.monotonic() - started
    assert result["resp"].status_code == 200
    assert result["resp"].json()["job_id"] == job_id
    assert elapsed < 10, "the waiter was not woken: it ran to its deadline"


def test_wait_runs_out_with_204_and_is_capped_by_config(
        app_with: Callable[..., InProcess]) -> None:
    c = app_with(BROKER_CONTRACT_WAIT_MAX="0.5")
    worker = register(c, "sh")
    started = time.monotonic()
    assert contract(c, worker, wait=1000).status_code == 204
    assert time.monotonic() - started < 10
    assert contract(c, worker, wait="soon").status_code == 400
    assert contract(c, worker, wait=-1).status_code == 400


def test_the_wake_up_crosses_broker_processes(start_broker: Callable[..., BrokerProcess],
                                              r: redis.Redis) -> None:
    a = start_broker()
    b = start_broker()
    with httpx.Client(base_url=a.url, timeout=30) as ca, \
            httpx.Client(base_url=b.url, timeout=30) as cb:
        worker = register(ca, "sh")
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: result.update(resp=contract(ca, worker, wait=20)))
        t.start()
        until(lambda: r.exists("broker:waiting:sh") == 1)
        job_id = submit(cb, "sh")
        t.join(25)
        assert result["resp"].status_code == 200
        assert result["resp"].json()["job_id"] == job_id


def wake_messages(pubsub: redis.client.PubSub, seconds: float) -> list[str]:
    """The wake-ups published within `seconds`."""
    found, end = [], time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message and message["type"] == "pmessage":
            found.append(message["data"])
    return found


def test_a_job_is_published_only_while_a_worker_waits_on_its_runtime(
        client: httpx.Client, r: redis.Redis) -> None:
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("broker:wake:*")
    try:
        wake_messages(pubsub, 0.1)  # the subscription is confirmed
        backlog = submit(client, "sh")  # nobody waits on sh: nothing is published
        assert wake_messages(pubsub, 0.3) == []
        assert not r.exists("broker:waiting:sh")

        patient, hasty = register(client, "sh", "py"), register(client, "sh")
        assert contract(client, hasty).json()["job_id"] == backlog  # no wait: no mark
        assert not r.exists("broker:waiting:sh")
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: result.update(resp=contract(client, patient,
                                                                        wait=20)))
        t.start()
        until(lambda: r.pttl("broker:waiting:sh") > 15_000 and r.exists("broker:waiting:py"))
        # A shorter wait on the same runtime does not cut the longer one's mark short.
        assert contract(client, hasty, wait=0.1).status_code == 204
        assert r.pttl("broker:waiting:sh") > 15_000

        job_id = submit(client, "sh")
        t.join(25)
        assert result["resp"].status_code == 200 and result["resp"].json()["job_id"] == job_id
        assert job_id in wake_messages(pubsub, 0.5)
    finally:
        pubsub.close()


def test_a_waiting_mark_outlives_the_wait_by_about_a_second(
        client: httpx.Client, r: redis.Redis) -> None:
    worker = register(client, "sh")
    assert contract(client, worker, wait=0.2).status_code == 204
    assert 0 < r.pttl("broker:waiting:sh") <= 1200
    until(lambda: not r.exists("broker:waiting:sh"), timeout=5)


def test_a_poller_that_hung_up_is_not_handed_a_job(client: httpx.Client, r: redis.Redis,
                                                   broker_proc: BrokerProcess) -> None:
    worker = register(client, "sh")
    served = requests_served(broker_proc.url, "GET", "/worker/contract")
    with httpx.Client(base_url=broker_proc.url, timeout=0.3) as impatient, \
            contextlib.suppress(httpx.ReadTimeout):
        contract(impatient, worker, wait=20)
    # The broker ends the long poll when its client hangs up, long before its 20 s are up;
    # after that no request of that worker is waiting that could take a job.
    until(lambda: requests_served(broker_proc.url, "GET", "/worker/contract") > served,
          timeout=10)
    job_id = submit(client, "sh")
    assert job(client, job_id)["status"] == "pending"
    assert r.zrange("broker:queue:sh", 0, -1) == [job_id]


def each_waiter_gets_one_job(client: httpx.Client, r: redis.Redis, workers: list[str]) -> None:
    """The workers long-poll at once; as many jobs are submitted: each gets one."""
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def poll(worker: str) -> None:
        resp = contract(client, worker, wait=15)
        with lock:
            results.append(resp)

    threads = [threading.Thread(target=poll, args=(w,)) for w in workers]
    started = time.monotonic()
    for t in threads:
        t.start()
    until(lambda: r.exists("broker:waiting:sh") == 1)
    jobs = {submit(client, "sh") for _ in workers}
    for t in threads:
        t.join(20)
    assert [x.status_code for x in results] == [200] * len(workers)
    assert {x.json()["job_id"] for x in results} == jobs
    assert time.monotonic() - started < 12, "a waiter ran to its deadline"


def test_many_waiters_each_get_one_job(client: httpx.Client, r: redis.Redis) -> None:
    each_waiter_gets_one_job(client, r, [register(client, "sh") for _ in range(8)])


def test_workers_served_before_wait_from_their_first_claim_and_each_get_one_job(
        client: httpx.Client, r: redis.Redis) -> None:
    """A worker the process has claimed for is a waiter before its claim (its runtimes are
    remembered): waits that begin empty are still woken, one job each, none lost."""
    workers = [register(client, "sh") for _ in range(6)]
    for worker in workers:
        assert contract(client, worker).status_code == 204  # served once: runtimes known
    r.delete("broker:waiting:sh")
    each_waiter_gets_one_job(client, r, workers)


def test_a_wake_up_that_reaches_a_waiter_already_answered_goes_on_to_the_next() -> None:
    """The job a wake-up is for can arrive after a waiter's claim ran and its message before
    the claim's answer: the waiter leaves with another job, and the wake-up must not leave
    with it (this lost a job's wake-up about once in ten runs of the test above)."""
    from broker.store.wakeups import Wakeups

    wakeups = Wakeups(lambda: None, "broker:wake:*", "broker:wake:")  # type: ignore[arg-type,return-value]
    with wakeups.waiter(("sh",)) as second_in_line:
        with wakeups.waiter(("sh",)) as answered:
            assert list(wakeups._waiters["sh"]) == [second_in_line, answered]
            second_in_line.event.set()  # already woken by an earlier job
            wakeups.wake("sh")  # the late message: the only waiter not yet awake
            assert answered.event.is_set()
            second_in_line.event.clear()  # it took its job and waits again
        assert second_in_line.event.is_set()  # the wake-up went on
