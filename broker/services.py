"""What every endpoint reaches through `services_of(request)`: built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.requests import Request

from broker.auth import Credentials
from broker.config import Settings
from broker.data import DataStore
from broker.jobs import Jobs
from broker.keys import Keys
from broker.listings import Listings
from broker.metrics import Metrics
from broker.scripts import Scripts
from broker.wakeups import Wakeups
from broker.workers import Workers


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
    listings: Listings
    metrics: Metrics
    credentials: Credentials | None  # each worker's own token; None when no token is set


def services_of(request: Request) -> Services:
    """The process's services, as the lifespan handed them to every request (read from the
    scope directly: `request.state` builds a State object per request)."""
    services: Services = request.scope["state"]["services"]
    return services
