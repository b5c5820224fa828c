"""Fill a queue fast: the broker's own submit script, with the broker's own arguments, sent
over a pipelined Redis connection (no HTTP), a few thousand calls per round trip.

The arguments come from broker.jobs.Jobs.submit itself, run against a recorder in place of the
script, so they stay right when the script's header changes.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from broker import ids
from broker.config import Settings
from broker.store import scripts
from broker.store.jobs import Jobs, NewJob
from broker.store.keys import Keys

RUNTIME = "bench"
CHUNK = 2000

Filler = Callable[[int], int]  # makes that many more pending jobs


class _Recorder:
    """Stands in for broker.scripts.Scripts: records the submit call and answers "ok"."""

    def __init__(self) -> None:
        self.call: tuple[list[str], list[Any]] | None = None

    async def submit(self, keys: list[str], args: list[Any]) -> list[str]:
        self.call = (keys, args)
        return ["ok", str(args[0])]


@contextlib.contextmanager
def _fast_ids() -> Iterator[None]:
    """Draw ids as a random 3-character stem and a 5-character counter: well-formed, unique
    within a fill, and far cheaper than eight `secrets.choice` calls (a clash with an earlier
    fill is answered `id_taken` by the script and simply drawn again)."""
    stem = "".join(secrets.choice(ids.ALPHABET) for _ in range(3))
    counter = itertools.count(secrets.randbelow(36**4))

    def new_id() -> str:
        n, digits = next(counter), []
        for _ in range(5):
            n, d = divmod(n, 36)
            digits.append(ids.ALPHABET[d])
        return stem + "".join(digits)

    saved = ids.new_id
    ids.new_id = new_id
    try:
        yield
    finally:
        ids.new_id = saved


def submit_call(jobs: Jobs, recorder: _Recorder, job: NewJob) -> tuple[list[str], list[Any]]:
    coro = jobs.submit(job)
    try:
        coro.send(None)  # the recorder never suspends: the coroutine runs to its end here
    except StopIteration:
        pass
    else:
        coro.close()
        raise RuntimeError("Jobs.submit suspended: the recorder no longer fits it")
    assert recorder.call is not None
    return recorder.call


def _fill_part(client: redis.Redis, sha: str, count: int, runtime: str, prefix: str,
               priorities: tuple[int, ...]) -> int:
    recorder = _Recorder()
    jobs = Jobs(None, recorder, Keys(prefix), Settings())  # type: ignore[arg-type]
    kinds = itertools.cycle([NewJob(function_id="noop", runtime=runtime, priority=p)
                             for p in priorities])
    made = 0
    while made < count:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(CHUNK, count - made)):
            keys, args = submit_call(jobs, recorder, next(kinds))
            pipe.evalsha(sha, len(keys), *keys, *args)
        for result in pipe.execute():
            if result[0] == "ok":
                made += 1
            elif result[0] != "id_taken":
                raise RuntimeError(f"submit script answered {result!r}")
    return made


def fill(client: redis.Redis, count: int, runtime: str = RUNTIME, prefix: str = "broker:",
         priorities: tuple[int, ...] = (0,)) -> int:
    """Make `count` pending jobs on `runtime` (a no-op function id), their priorities taking
    turns among `priorities`; answer how many. Two connections take turns, so one builds its
    commands while Redis runs the other's."""
    sha = client.script_load(scripts.source("submit"))
    half = count // 2
    with _fast_ids(), ThreadPoolExecutor(2) as pool:
        parts = [pool.submit(_fill_part, redis.Redis(connection_pool=client.connection_pool),
                             sha, n, runtime, prefix, priorities)
                 for n in (half, count - half)]
        return sum(p.result() for p in parts)
