"""Every endpoint the broker serves, each declared beside its handler."""

from __future__ import annotations

from broker.http.endpoint import Endpoint
from broker.http.routes import batch, data, events, job, operations, worker

ENDPOINTS: list[Endpoint] = [*worker.ENDPOINTS, *job.ENDPOINTS, *batch.ENDPOINTS,
                             *data.ENDPOINTS, *events.ENDPOINTS, *operations.ENDPOINTS]
