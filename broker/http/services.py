"""What every endpoint reaches through `services_of(request)`: built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from rq import Queue
from starlette.requests import Request

from broker.config import Settings
from broker.events import targets
from broker.events.feed import Feed
from broker.files.datastore import DataStore
from broker.http.auth import Credentials
from broker.http.metrics import Metrics
from broker.store.jobs import Jobs
from broker.store.keys import Keys
from broker.store.listings import Listings
from broker.store.logs import Logs
from broker.store.schedule import Schedule
from broker.store.scripts import Scripts
from broker.store.wakeups import Wakeups
from broker.store.workers import Workers


@dataclass(frozen=True)
class Services:
    settings: Settings
    keys: Keys
    redis: Redis
    scripts: Scripts
    jobs: Jobs
    workers: Workers
    data: DataStore
    wakeups: Wakeups
    schedule: Schedule
    listings: Listings
    metrics: Metrics
    credentials: Credentials | None  # each worker's own token; None when no token is set
    feed: Feed
    logs: Logs
    webhook_deny: list[targets.Network]  # where a callback_url may not lead
    webhook_queue: Queue | None  # rq's, where deliveries go; None on the in-process store


def services_of(request: Request) -> Services:
    """The process's services, as the lifespan handed them to every request (read from the
    scope directly: `request.state` builds a State object per request)."""
    services: Services = request.scope["state"]["services"]
    return services
