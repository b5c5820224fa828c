"""A simulated worker process for the lifecycle scenario: `loops` workers, each registered on
its own, taking no-op jobs and reporting them succeeded over HTTP until SIGTERM.

    python -m bench.simworker URL single|next|batch LOOPS BATCH

`next`: one job per request, each success report taking the next job (PUT /job?next=1).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import uvloop

from bench import api, load


async def _loop(s: aiohttp.ClientSession, url: str, batch: int, take_next: bool) -> None:
    worker_id = await api.register(s, url)
    while True:
        try:
            if batch:
                answer = await api.contract(s, url, worker_id, wait=5, most=batch)
                if answer is not None:
                    await api.succeed_many(s, url, worker_id, answer["contracts"])
            elif take_next:  # each report takes the next job: one request a job
                answer = await api.contract(s, url, worker_id, wait=5)
                while answer is not None:
                    answer = await api.succeed_next(s, url, worker_id, answer["job_id"],
                                                    answer["lease"], wait=5)
            else:
                answer = await api.contract(s, url, worker_id, wait=5)
                if answer is not None:
                    await api.succeed(s, url, worker_id, answer["job_id"], answer["lease"])
        except (api.Refused, aiohttp.ClientError) as exc:
            print(f"simworker: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.1)


async def main(url: str, mode: str, loops: int, batch: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with load.session(loops) as s:
        tasks = [asyncio.create_task(_loop(s, url, batch if mode == "batch" else 0,
                                           mode == "next"))
                 for _ in range(loops)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    url, mode, loops, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    uvloop.run(main(url, mode, loops, batch))
