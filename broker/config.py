"""One frozen Settings per process, read from flags and BROKER_* environment variables.

Every field has a flag (`--max-data-size`) and an environment variable (`BROKER_MAX_DATA_SIZE`;
`REDIS_URL` for the Redis address). A malformed value is an error at start, never a silent
default.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the broker cannot use."""


# Where a callback_url may not lead by default (BROKER_WEBHOOK_DENY): link-local addresses,
# which include the cloud metadata services (169.254.169.254, AWS's fd00:ec2::254), and Alibaba's
# metadata address. Loopback and private networks are allowed: a webhook receiver is often one.
DENIED_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_timeout: float = 5.0
    data_dir: Path = Path("broker-data")
    host: str = "127.0.0.1"
    port: int = 8000
    max_data_size: int = 10 * 1024**3
    contract_wait_max: float = 30.0
    prefix: str = "broker:"
    tombstone_ttl: int = 3600
    worker_timeout: float = 30.0
    lease_timeout: float = 30.0
    job_timeout: float = 3600.0
    max_attempts: int = 3
    max_givebacks: int = 10
    max_runtimes: int = 1000
    retry_base: float = 1.0
    retry_max: float = 300.0
    idempotency_ttl: int = 86400
    job_ttl: int = 7 * 86400
    data_ttl: int = 0
    sweep_interval: float = 1.0
    data_sweep_interval: float = 600.0
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    access_log: str = "plain"
    log_level: str = "info"
    events_max: int = 1_000_000
    log_max: int = 1024**2
    webhook_url: str = ""
    webhook_timeout: float = 10.0
    webhook_retries: tuple[int, ...] = (10, 60, 300, 1800, 7200)
    webhook_deny: tuple[str, ...] = DENIED_NETWORKS
    notifier: str = "auto"
    # Secrets: never shown by repr, so never in a log line.
    requester_token: str = field(default="", repr=False)
    worker_token: str = field(default="", repr=False)
    metrics_token: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be an integer, zero or more")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number, 0 to 65535")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be a number of seconds, zero or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def _prefix(raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ValueError("must be a non-empty string without spaces")
    return raw


def _access_log(raw: str) -> str:
    if raw not in ("plain", "json", "off"):
        raise ValueError("must be plain, json or off")
    return raw


def _retry_intervals(raw: str) -> tuple[int, ...]:
    if raw.strip() == "":
        return ()
    values = tuple(int(part) for part in raw.split(","))
    if any(v < 0 for v in values):
        raise ValueError("must be whole seconds, zero or more, separated by commas")
    return values


def _networks(raw: str) -> tuple[str, ...]:
    found = tuple(part.strip() for part in raw.split(",") if part.strip())
    for network in found:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
    return found


def _webhook_url(raw: str) -> str:
    if raw and not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw


def _notifier(raw: str) -> str:
    if raw not in ("auto", "off"):
        raise ValueError("must be auto or off")
    return raw


def _log_level(raw: str) -> str:
    if raw not in ("critical", "error", "warning", "info", "debug"):
        raise ValueError("must be one of critical, error, warning, info, debug")
    return raw


@dataclass(frozen=True)
class _Field:
    name: str
    env: str
    parse: Callable[[str], Any]
    help: str


FIELDS: tuple[_Field, ...] = (
    _Field("redis_url", "REDIS_URL", str,
           "Redis URL (redis://, rediss://, unix://); unset: an embedded private redis-server, "
           "or in-memory fakeredis when redis-server is not on PATH; memory:// forces the latter"),
    _Field("redis_timeout", "BROKER_REDIS_TIMEOUT", _positive_float,
           "seconds the broker waits for Redis to answer a command before it answers 503"),
    _Field("data_dir", "BROKER_DATA_DIR", Path, "directory holding the data files"),
    _Field("host", "BROKER_HOST", str, "address to bind"),
    _Field("port", "BROKER_PORT", _port, "TCP port to bind"),
    _Field("max_data_size", "BROKER_MAX_DATA_SIZE", _positive_int,
           "largest accepted upload, in bytes"),
    _Field("contract_wait_max", "BROKER_CONTRACT_WAIT_MAX", _non_negative_float,
           "cap on GET /worker/contract?wait=N, in seconds"),
    _Field("prefix", "BROKER_PREFIX", _prefix, "prefix of every Redis key"),
    _Field("tombstone_ttl", "BROKER_TOMBSTONE_TTL", _positive_int,
           "seconds a deleted running job stays readable as cancelled, so its worker learns"),
    _Field("worker_timeout", "BROKER_WORKER_TIMEOUT", _positive_float,
           "seconds a worker may go unheard before it is declared dead"),
    _Field("lease_timeout", "BROKER_LEASE_TIMEOUT", _positive_float,
           "seconds a running job may go without a heartbeat from its worker before it is "
           "given back (a contract whose answer was lost is back in its queue this soon)"),
    _Field("job_timeout", "BROKER_JOB_TIMEOUT", _positive_float,
           "default time limit of a running job, in seconds (POST /job may set its own)"),
    _Field("max_attempts", "BROKER_MAX_ATTEMPTS", _positive_int,
           "default number of runs a job may start (POST /job may set its own)"),
    _Field("max_givebacks", "BROKER_MAX_GIVEBACKS", _positive_int,
           "times a job may be given back by its workers; the next give-back fails it"),
    _Field("max_runtimes", "BROKER_MAX_RUNTIMES", _positive_int,
           "how many runtimes the broker knows at once (named by a job or a worker); a job or "
           "worker naming one more is refused"),
    _Field("retry_base", "BROKER_RETRY_BASE", _positive_float,
           "first backoff of a failed job run again, in seconds (doubles per attempt)"),
    _Field("retry_max", "BROKER_RETRY_MAX", _positive_float, "longest retry backoff, seconds"),
    _Field("idempotency_ttl", "BROKER_IDEMPOTENCY_TTL", _positive_int,
           "seconds an Idempotency-Key is remembered"),
    _Field("job_ttl", "BROKER_JOB_TTL", _non_negative_int,
           "seconds a finished job (succeeded, failed, cancelled) is kept before the sweeps "
           "remove it; 0 keeps jobs for ever (POST /job may set its own ttl)"),
    _Field("data_ttl", "BROKER_DATA_TTL", _non_negative_int,
           "seconds after its last write that the data sweep deletes a data file no job that "
           "still exists names; 0 (the default) never deletes data"),
    _Field("sweep_interval", "BROKER_SWEEP_INTERVAL", _positive_float,
           "seconds between sweeps for dead workers, overdue jobs and due retries"),
    _Field("data_sweep_interval", "BROKER_DATA_SWEEP_INTERVAL", _positive_float,
           "seconds between sweeps for data files without metadata and metadata without files"),
    _Field("max_header_bytes", "BROKER_MAX_HEADER_BYTES", _positive_int,
           "largest request line and headers, bytes; more is 431"),
    _Field("header_timeout", "BROKER_HEADER_TIMEOUT", _positive_float,
           "seconds a request's line and headers may take to arrive; longer is 408"),
    _Field("access_log", "BROKER_ACCESS_LOG", _access_log,
           "one line per request: plain, json, or off"),
    _Field("log_level", "BROKER_LOG_LEVEL", _log_level, "log level"),
    _Field("events_max", "BROKER_EVENTS_MAXLEN", _positive_int,
           "about how many job events the events stream keeps (trimmed with MAXLEN ~); a job's "
           "own history is kept as long as the job"),
    _Field("log_max", "BROKER_LOG_MAX", _positive_int,
           "bytes of each job's live log the broker keeps (the last ones)"),
    _Field("webhook_url", "BROKER_WEBHOOK_URL", _webhook_url,
           "URL that receives every job's final event (besides each job's callback_url)"),
    _Field("webhook_timeout", "BROKER_WEBHOOK_TIMEOUT", _positive_float,
           "seconds a webhook delivery may take before it counts as failed"),
    _Field("webhook_retries", "BROKER_WEBHOOK_RETRIES", _retry_intervals,
           "seconds to wait before each retry of a failed webhook delivery, comma-separated "
           "(their number is the number of retries; empty: none)"),
    _Field("webhook_deny", "BROKER_WEBHOOK_DENY", _networks,
           "networks (CIDR, comma-separated) a webhook may not be delivered to; empty allows "
           "every address"),
    _Field("notifier", "BROKER_NOTIFIER", _notifier,
           "auto: `broker serve` runs the rq worker that delivers webhooks as a child process; "
           "off: run `broker notifier` yourself"),
)

# Tokens: each from its flag or variable, or from a file named by --NAME-file / NAME_FILE.
TOKENS = (
    ("requester_token", "BROKER_REQUESTER_TOKEN", "token requesters send (jobs, data, listings)"),
    ("worker_token", "BROKER_WORKER_TOKEN", "token workers send (worker endpoints, their data "
     "and jobs)"),
    ("metrics_token", "BROKER_METRICS_TOKEN", "token for GET /metrics (unset: open)"),
    ("webhook_secret", "BROKER_WEBHOOK_SECRET", "key webhook bodies are signed with "
     "(HMAC-SHA256, header X-Broker-Signature; unset: unsigned)"),
)

# Variables under the BROKER_ prefix that belong to the client side, not to the server.
CLIENT_VARIABLES = frozenset({"BROKER_URL"})


def _flag(field: _Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; each defaults to None so that the environment can fill in."""
    for f in FIELDS:
        default = getattr(Settings(), f.name)
        parser.add_argument(
            _flag(f), dest=f.name, default=None,
            help=f"{f.help} (env {f.env}, default {default})",
        )
    for name, env, text in TOKENS:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None, help=f"{text} (env {env})")
        parser.add_argument(flag + "-file", dest=name + "_file", default=None,
                            help=f"file holding the {name.replace('_', ' ')} (env {env}_FILE)")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    known = ({f.env for f in FIELDS} | CLIENT_VARIABLES | {env for _, env, _ in TOKENS}
             | {env + "_FILE" for _, env, _ in TOKENS})
    return sorted(k for k in environ if k.startswith("BROKER_") and k not in known)


def _token(name: str, env: str, flags: Mapping[str, str | None],
           environ: Mapping[str, str]) -> str:
    """A token from its flag, its file flag, its variable or its file variable, in that order;
    a token and a file for the same role at the same level is an error."""
    flag = "--" + name.replace("_", "-")
    for value, path, source, file_source in (
            (flags.get(name), flags.get(name + "_file"), flag, flag + "-file"),
            (environ.get(env), environ.get(env + "_FILE"), env, env + "_FILE")):
        if value and path:
            raise SettingsError(f"{source} and {file_source}: give the token or a file "
                                "holding it, not both")
        if path:
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{file_source}: cannot read {path}: {exc}") from None
            if not value:
                raise SettingsError(f"{file_source}: {path} is empty")
        if value:
            return value
    return ""


def load(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build Settings: a flag beats the environment, which beats the default."""
    values: dict[str, Any] = {}
    for f in FIELDS:
        raw = flags.get(f.name)
        source = _flag(f)
        if raw is None:
            raw, source = environ.get(f.env), f.env
        if raw is None or (f.name == "redis_url" and raw == ""):
            continue
        try:
            values[f.name] = f.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}={raw!r}: {exc}") from None
    for name, env, _ in TOKENS:
        values[name] = _token(name, env, flags, environ)
    return dataclasses.replace(Settings(), **values)


def heartbeat_interval(settings: Settings) -> float:
    """How often workers are told to heartbeat: three times within the shorter of the worker
    timeout and the lease timeout."""
    return round(min(settings.worker_timeout, settings.lease_timeout) / 3, 3)


def outage_threshold_ms(settings: Settings) -> int:
    """The longest gap between two settles of what time decides that is not an outage: two
    sweep intervals and a second (settle.lua: absorb_outage)."""
    return int((2 * settings.sweep_interval + 1) * 1000)


def from_environ() -> Settings:
    return load({}, os.environ)
