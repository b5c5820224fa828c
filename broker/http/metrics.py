"""Prometheus metrics. Process-level ones (HTTP traffic, waits, run times) live in a registry
per app; the ones that live in Redis (jobs by status, queues, workers, counters) are read at
scrape time, so every broker process reports the same truth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIMES = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("broker_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("broker_http_request_duration_seconds",
                                 "Time to answer an HTTP request", ["method", "route"],
                                 registry=self.registry)
        self.wait = Histogram("broker_job_wait_seconds",
                              "Time from a job's submission to its contract", buckets=TIMES,
                              registry=self.registry)
        self.run = Histogram("broker_job_run_seconds",
                             "Time from a job's contract to its final report", buckets=TIMES,
                             registry=self.registry)

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def count(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request. The labelled children are looked up once per combination:
        prometheus_client's labels() is a noticeable cost on every request otherwise."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self, gauges: dict[str, Any]) -> bytes:
        scraped = CollectorRegistry()
        scraped.register(_RedisCollector(gauges))
        return generate_latest(scraped) + generate_latest(self.registry)


class _RedisCollector(Collector):
    def __init__(self, gauges: dict[str, Any]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        g = self.gauges
        jobs = GaugeMetricFamily("broker_jobs", "Jobs by status", labels=["status"])
        for status, count in g["jobs"].items():
            jobs.add_metric([status], count)
        yield jobs
        families = {
            "pending": GaugeMetricFamily("broker_queue_pending",
                                         "Jobs waiting on a runtime's queue", labels=["runtime"]),
            "running": GaugeMetricFamily("broker_jobs_running", "Jobs running, per runtime",
                                         labels=["runtime"]),
            "scheduled": GaugeMetricFamily("broker_jobs_scheduled",
                                           "Jobs scheduled to run later, per runtime",
                                           labels=["runtime"]),
            "waiting": GaugeMetricFamily("broker_jobs_waiting",
                                         "Jobs waiting for their inputs or other jobs, per "
                                         "runtime", labels=["runtime"]),
            "paused": GaugeMetricFamily("broker_runtime_paused",
                                        "1 while a runtime is paused", labels=["runtime"]),
            "workers": GaugeMetricFamily("broker_workers_live",
                                         "Registered workers not yet declared dead, per runtime",
                                         labels=["runtime"]),
        }
        for row in g["runtimes"]:
            for field, family in families.items():
                family.add_metric([row["runtime"]], int(row[field]))
        yield from families.values()
        stats = g["stats"]
        handed = CounterMetricFamily("broker_jobs_handed_out", "Contracts made")
        handed.add_metric([], stats.get("handed_out", 0))
        yield handed
        finished = CounterMetricFamily("broker_jobs_finished", "Jobs that reached a final status",
                                       labels=["status"])
        for status in ("succeeded", "failed", "cancelled"):
            finished.add_metric([status], stats.get(status, 0))
        yield finished
