"""`python -m bench.dashboard`: what one open dashboard costs the broker (docs/performance.md).

Starts a private redis-server and a broker, fills it (runtimes, jobs, failures, workers), then
measures
  * each fragment the pages fetch: the broker's time to answer it, and the Redis commands and
    Redis time (INFO commandstats) one answer costs;
  * one overview page open in Debian's chromium while a steady load runs (jobs submitted, taken
    and finished): the requests the page makes, and the broker's CPU against the same load
    with no page open.

    python -m bench.dashboard [--seconds 30] [--rate 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Procs, RedisServer, Server, Usage, broker_env, free_port

PARTS = ("/ui/part/overview", "/ui/part/jobs", "/ui/part/job?id={job}", "/ui/part/workers",
         "/throughput")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fill(api: httpx.Client) -> str:
    """8 runtimes, 2,000 jobs of which 100 failed, 8 workers; a job id to show."""
    for i in range(8):
        api.post("/worker", json={"Runtime": [f"rt{i}"]})
    ids = []
    for _ in range(4):  # a body is at most 64 KiB
        body = {"jobs": [{"function_id": "fn", "runtime": f"rt{i % 8}", "max_attempts": 1}
                         for i in range(500)]}
        ids += [r["job_id"] for r in api.post("/jobs", json=body).json()["results"]]
    worker = api.post("/worker", json={"Runtime": ["rt0"]}).json()["worker_id"]
    for _ in range(100):
        given = api.get("/worker/contract", headers={"X-Worker-Id": worker}).json()
        api.put("/job", json={"status": "failed", "error": "boom\nTraceback ..."},
                headers={"X-Job-Id": given["job_id"], "X-Worker-Id": worker,
                         "X-Lease": given["lease"]})
    return str(ids[-1])


def redis_totals(server: RedisServer) -> tuple[int, int]:
    """Calls and µs of every command since the last reset."""
    stats = server.client(0).info("commandstats")
    return (sum(int(s["calls"]) for s in stats.values()),
            sum(int(s["usec"]) for s in stats.values()))


def fragments(api: httpx.Client, server: RedisServer, job: str, n: int) -> list[dict[str, Any]]:
    rows = []
    for template in PARTS:
        path = template.format(job=job)
        api.get(path).raise_for_status()  # warm
        server.reset_stats()
        started = time.perf_counter()
        for _ in range(n):
            api.get(path)
        ms = (time.perf_counter() - started) * 1000 / n
        calls, usec = redis_totals(server)
        rows.append({"path": path, "ms": round(ms, 2), "redis_commands": round(calls / n, 1),
                     "redis_us": round(usec / n, 1)})
    return rows


class Load(threading.Thread):
    """A simulated worker at about `rate` jobs a second: submit, take, finish."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.done = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url) as api:
            worker = api.post("/worker", json={"Runtime": ["load"]}).json()["worker_id"]
            started = time.monotonic()
            while not self.halt.is_set():
                api.post("/job", json={"function_id": "fn", "runtime": "load"})
                given = api.get("/worker/contract", headers={"X-Worker-Id": worker}).json()
                api.put("/job", json={"status": "succeeded"},
                        headers={"X-Job-Id": given["job_id"], "X-Worker-Id": worker,
                                 "X-Lease": given["lease"]})
                self.done += 1
                time.sleep(max(0.0, started + self.done / self.rate - time.monotonic()))


def under_load(broker: Server, seconds: float, rate: float,
               page_url: str | None) -> dict[str, Any]:
    load = Load(broker.url, rate)
    requests: Counter[str] = Counter()
    browser = playwright = None
    if page_url:
        from playwright.sync_api import sync_playwright
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=ARGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.update([r.url.split("?")[0].split(":", 2)[2]
                                                      .split("/", 1)[1]]))
        page.goto(page_url)
        page.wait_for_timeout(2000)
        requests.clear()
    load.start()
    with Usage(broker.pid) as usage:
        time.sleep(seconds)
    load.halt.set()
    load.join()
    if browser is not None and playwright is not None:
        browser.close()
        playwright.stop()
    return {"jobs_per_s": round(load.done / seconds, 1),
            "broker_cpu_share": round(usage.shares[0], 4),
            "page_requests": dict(requests), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=200, help="per fragment")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    procs = Procs(workdir)
    try:
        server = RedisServer(procs, workdir / "redis")
        port = free_port()
        env = {**broker_env(server.url(0), port, workdir / "data"), "BROKER_NOTIFIER": "off"}
        broker = Server(procs, "broker", [sys.executable, "-m", "broker", "serve"], env, port,
                        "/healthz")
        with httpx.Client(base_url=broker.url, timeout=30) as api:
            job = fill(api)
            result = {"fragments": fragments(api, server, job, options.requests)}
        result["no_page"] = under_load(broker, options.seconds, options.rate, None)
        result["overview_open"] = under_load(broker, options.seconds, options.rate,
                                             broker.url + "/ui")
        print(json.dumps(result, indent=2))
        if options.json:
            options.json.write_text(json.dumps(result, indent=2))
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
