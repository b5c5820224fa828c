"""The worker agent's live log: the shipper's rules (chunks, what is skipped, when it stops)
with a recording `send`, and a real agent streaming a real function's stderr to a real
broker while the function runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from broker.client.api import BrokerError, Unreachable
from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import finished, job, run_job, until
from tests.test_agent import agents_on
from worker_agent.livelog import Shipper, skipped_line


class Recorder:
    """A `send` that keeps what it was given, or raises what it is told to."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail: Exception | None = None

    async def __call__(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(data)


def shipper(tmp_path: Path, chunk: int = 1000) -> tuple[Shipper, Recorder, Path]:
    path = tmp_path / "stderr"
    record = Recorder()
    return Shipper(path, record, interval=0.01, chunk=chunk), record, path


def test_each_flush_sends_what_the_file_gained_and_nothing_when_nothing(
        tmp_path: Path) -> None:
    ship, record, path = shipper(tmp_path)
    asyncio.run(ship.flush())  # no file yet: nothing to send
    path.write_bytes(b"one\n")
    asyncio.run(ship.flush())
    asyncio.run(ship.flush())  # nothing new
    with path.open("ab") as f:
        f.write(b"two\n")
    asyncio.run(ship.flush())
    assert record.sent == [b"one\n", b"two\n"]


def test_more_than_a_chunk_keeps_the_newest_bytes_and_says_how_many_were_skipped(
        tmp_path: Path) -> None:
    ship, record, path = shipper(tmp_path, chunk=1000)
    data = bytes(range(256)) * 20  # 5120 bytes
    path.write_bytes(data)
    asyncio.run(ship.flush())
    assert len(record.sent) == 1
    sent = record.sent[0]
    assert len(sent) <= 1000
    assert sent.startswith(b"[worker-agent: ") and sent.endswith(data[-800:])
    line = sent.split(b"\n", 1)[0] + b"\n"
    kept = sent[len(line):]
    assert line == skipped_line(len(data) - len(kept))  # every byte is sent or counted
    assert data.endswith(kept)


def test_a_broker_that_cannot_be_reached_gets_the_bytes_at_the_next_try(
        tmp_path: Path) -> None:
    ship, record, path = shipper(tmp_path)
    path.write_bytes(b"first\n")
    record.fail = Unreachable("http://broker: connection refused")
    asyncio.run(ship.flush())
    record.fail = BrokerError(503, "redis_unavailable", "retry shortly", {})
    with path.open("ab") as f:
        f.write(b"second\n")
    asyncio.run(ship.flush())
    record.fail = None
    asyncio.run(ship.flush())
    assert record.sent == [b"first\nsecond\n"]


def test_what_waits_for_an_unreachable_broker_stays_within_a_chunk(tmp_path: Path) -> None:
    ship, record, path = shipper(tmp_path, chunk=1000)
    record.fail = Unreachable("http://broker: connection refused")
    for i in range(10):  # 10 tries, 400 bytes more each time
        with path.open("ab") as f:
            f.write(bytes([65 + i]) * 400)
        asyncio.run(ship.flush())
    record.fail = None
    asyncio.run(ship.flush())
    [sent] = record.sent
    assert len(sent) <= 1000
    assert sent.startswith(skipped_line(4000 - 900)) and sent.endswith(b"J" * 400)


@pytest.mark.parametrize(("status", "code"), [
    (409, "lease_lost"), (409, "cancelled"), (409, "illegal_transition"), (404, "unknown_job"),
    (403, "forbidden"), (400, "invalid_id")])
def test_a_broker_that_refuses_the_log_stops_the_shipping_and_nothing_else(
        tmp_path: Path, status: int, code: str) -> None:
    ship, record, path = shipper(tmp_path)
    path.write_bytes(b"x\n")
    record.fail = BrokerError(status, code, "no", {})
    asyncio.run(ship.flush())
    assert ship.stopped
    record.fail = None
    with path.open("ab") as f:
        f.write(b"y\n")
    asyncio.run(ship.flush())
    assert record.sent == []


# -- a real agent, a real function, a real broker ---------------------------------------------

# Writes a line to stderr every 0.25 s for 5 s, then its output.
TALKER = (b"import sys, time\n"
          b"for i in range(20):\n"
          b"    print(f'line {i}', file=sys.stderr, flush=True)\n"
          b"    time.sleep(0.25)\n"
          b"print('done')\n")


@pytest.fixture
def agents(broker_proc: BrokerProcess, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    with agents_on(broker_proc.url, tmp_path) as start:
        yield start


def log_of(client: httpx.Client, job_id: str) -> bytes:
    resp = client.get("/job/log", headers={"X-Job-Id": job_id})
    assert resp.status_code == 200, resp.text
    return resp.content


def test_a_functions_stderr_is_readable_while_it_runs_and_whole_once_it_ends(
        served: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3")
    job_id = run_job(served, "python3", TALKER)
    until(lambda: b"line 2" in log_of(served, job_id), timeout=20)
    assert job(served, job_id)["status"] == "running"  # seen while it runs
    assert b"line 19" not in log_of(served, job_id)
    assert finished(served, job_id)["status"] == "succeeded"
    assert log_of(served, job_id) == b"".join(f"line {i}\n".encode() for i in range(20))


def test_an_agent_started_with_no_live_log_sends_none(
        served: httpx.Client, agents: Callable[..., AgentProcess]) -> None:
    agents("--runtime", "python3", "--no-live-log")
    job_id = run_job(served, "python3", b"import sys\nprint('x', file=sys.stderr)\n")
    assert finished(served, job_id)["status"] == "succeeded"
    assert log_of(served, job_id) == b""
