"""Handing work out over HTTP, for GET /worker/contract and a report that takes the next
(PUT /job?next=N): the count and wait a request asks for, waiting for a job to arrive, and the
answer a claim makes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broker.errors import BadRequest
from broker.http import inputs, observe
from broker.http.responses import JSONResponse
from broker.http.services import Services, services_of
from broker.store.workers import Claim


def _wait_seconds(request: Request, cap: float) -> float:
    raw = inputs.query(request, "wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        raise BadRequest(f"wait must be a number of seconds, zero or more, got {raw!r:.40}",
                         code="invalid_wait", field="wait")
    return min(wait, cap)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def count_query(request: Request, name: str) -> int | None:
    """A count of jobs to take (`max` on the contract, `next` on a report), 1 to 100."""
    raw = inputs.query(request, name)
    if raw is None:
        return None
    count = inputs.digits(raw)
    if count is None or not 1 <= count <= inputs.MAX_BATCH:
        raise BadRequest(f"{name} must be an integer from 1 to {inputs.MAX_BATCH}",
                         code="invalid_query", field=name)
    return count


def wait_query(request: Request) -> float:
    return _wait_seconds(request, services_of(request).settings.contract_wait_max)


async def take(request: Request, worker_id: str, lease: str, wait: float, count: int,
               first: Callable[[], Awaitable[Claim]]) -> Claim:
    """The claim `first` makes, and when it takes nothing and the worker asked to wait, what
    a wait brings (claiming again with `lease` as jobs turn up)."""
    services = services_of(request)
    deadline = time.monotonic() + wait
    runtimes = services.workers.runtimes_known(worker_id)
    if wait > 0 and runtimes is not None and not services.wakeups.closing:
        return await _wait_for_job(request, services, worker_id, lease, runtimes, deadline,
                                   count, first)
    claim = await first()
    services.workers.learn_runtimes(worker_id, claim.runtimes)
    if claim.contracts or not claim.runtimes or deadline <= time.monotonic() \
            or services.wakeups.closing:
        return claim
    return await _wait_for_job(request, services, worker_id, lease, claim.runtimes, deadline,
                               count)


def claimed(request: Request, claim: Claim, many: bool,
            headers: dict[str, str] | None = None) -> Response:
    """A claim's answer: 204 when it took nothing; the seed's one contract; or, when `many`,
    {"contracts": [...]}."""
    if not claim.contracts:
        return Response(status_code=204, headers=headers)
    contracts = handed(request, claim)
    if not many:
        return JSONResponse(contracts[0], headers=headers)
    return JSONResponse({"contracts": contracts}, headers=headers)


def handed(request: Request, claim: Claim) -> list[dict[str, Any]]:
    """A claim's contracts as JSON, counted (how long each job waited) and logged; when jobs
    are left behind, the next waiter on their runtimes is woken."""
    services = services_of(request)
    for waited in claim.waited:
        services.metrics.wait.observe(waited)
    if claim.contracts:
        observe.note(request.scope, job_id=claim.contracts[0].job_id)
    if claim.more:
        for runtime in claim.runtimes:
            services.wakeups.wake(runtime)
    return [c.to_json() for c in claim.contracts]


async def _wait_for_job(request: Request, services: Services, worker_id: str, lease: str,
                        runtimes: tuple[str, ...], deadline: float, count: int,
                        first: Callable[[], Awaitable[Claim]] | None = None) -> Claim:
    """Claim (the first time with `first`, when given) and claim again each time a job for
    one of `runtimes` turns up, until the deadline, the client hangs up or the server stops.
    The waiter is registered before the first claim, so no wake-up is lost; the watch for a
    hang-up starts only once there is something to wait for."""

    def claim_again() -> Awaitable[Claim]:
        return services.workers.claim(worker_id, lease, max(deadline - time.monotonic(), 0),
                                      count)

    with services.wakeups.waiter(runtimes) as waiter:
        claim = await (first or claim_again)()
        if claim.contracts:
            return claim
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            while not gone.done() and not services.wakeups.closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return claim
                woken = asyncio.ensure_future(waiter.wait(remaining))
                await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not woken.done():
                    woken.cancel()
                elif not woken.result():
                    return claim
                else:
                    claim = await claim_again()
                    if claim.contracts:
                        return claim
            return Claim((), runtimes)
        finally:
            gone.cancel()
