"""The job lifecycle: statuses, who may move a job where, and the 409 that names the way out.

The Lua scripts enforce these moves; this table is what the README shows and what a refused
PUT /job names as allowed.
"""

from __future__ import annotations

from typing import Literal

from broker.errors import Conflict

Role = Literal["requester", "worker"]

FINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("waiting", "scheduled", "pending", "running", *FINAL)

# (role, current status) -> statuses that role may set. Setting the current status again is a
# no-op for the holder's repeated final report and for a requester's echo of a pending job.
# A requester's "scheduled" needs a run_at (or delay) in the future; "pending" on a scheduled job
# runs it now. The broker itself moves a scheduled job to pending when it is due, and a waiting
# one when what it waits on is done (or to failed when that failed).
TRANSITIONS: dict[tuple[Role, str], tuple[str, ...]] = {
    ("requester", "waiting"): ("waiting", "cancelled"),
    ("requester", "scheduled"): ("scheduled", "pending", "cancelled"),
    ("requester", "pending"): ("pending", "scheduled", "cancelled"),
    ("requester", "running"): ("cancelled",),
    ("requester", "succeeded"): ("pending", "scheduled"),
    ("requester", "failed"): ("pending", "scheduled"),
    ("requester", "cancelled"): ("pending", "scheduled"),
    ("worker", "running"): ("running", "succeeded", "failed", "pending"),
}


def allowed(role: Role, status: str) -> tuple[str, ...]:
    return TRANSITIONS.get((role, status), ())


def illegal(job_id: str, role: Role, status: str, target: str) -> Conflict:
    options = allowed(role, status)
    way = ", ".join(options) if options else "nothing"
    return Conflict(
        f"job {job_id} is {status}: a {role} cannot set it to {target}; allowed: {way}",
        code="illegal_transition", status_now=status, allowed=list(options))
