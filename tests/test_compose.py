"""The docker compose stack, proved without a Docker engine: docker-compose.yml, the Dockerfile
and .env.example checked for structure, and every service's command run as a local process."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker import config
from tests.composelocal import (
    ENV_EXAMPLE,
    ROOT,
    InterpolationError,
    LocalStack,
    command,
    container_ports,
    environment,
    healthcheck_argv,
    interpolate,
    listen_port,
    load_compose,
    local_program,
    mounts,
    read_env_file,
    variables,
)
from worker_agent.runner import Limits

SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def example_env() -> dict[str, str]:
    """.env.example's values, with each required secret it leaves empty generated as its
    comment says."""
    set_vars, _ = read_env_file()
    required = {name for name, defaults in variables(load_compose()).items() if None in defaults}
    return {k: v or (secrets.token_hex(32) if k in required else v) for k, v in set_vars.items()}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services as Compose sees them with .env.example (secrets generated)."""
    compose: dict[str, Any] = interpolate(load_compose(), example_env())
    found: dict[str, Any] = compose["services"]
    return found


def flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} not in {argv}"
    return argv[argv.index(name) + 1]


def flags(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == name]


# -- structure ----------------------------------------------------------------------------------


def test_the_stack_is_redis_a_broker_a_notifier_and_workers(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "broker", "notifier", "worker"}
    assert services["redis"]["image"].startswith("redis:")
    assert services["broker"]["build"] == services["worker"]["build"] == "."
    assert services["notifier"]["build"] == "."


def test_the_notifier_delivers_for_the_broker_which_runs_none_itself(
        services: dict[str, Any]) -> None:
    notifier, broker = services["notifier"], services["broker"]
    assert command(notifier) == ["broker", "notifier"]
    assert environment(notifier)["REDIS_URL"] == environment(broker)["REDIS_URL"]
    for name in ("BROKER_PREFIX", "BROKER_WEBHOOK_SECRET", "BROKER_WEBHOOK_TIMEOUT",
                 "BROKER_WEBHOOK_RETRIES", "BROKER_WEBHOOK_DENY"):
        assert environment(notifier)[name] == environment(broker)[name], name
    assert environment(broker)["BROKER_NOTIFIER"] == "off"
    assert healthcheck_argv(notifier) == ["broker", "notifier", "--check"]


def test_every_command_names_a_console_script_that_exists(services: dict[str, Any]) -> None:
    raw = load_compose()["services"]
    for name, service in raw.items():
        words = command(service)  # raises on a word YAML did not keep a string
        expected = {"redis-server"} if name == "redis" else SCRIPTS
        assert words[0] in expected, f"{name} runs {words[0]!r}"
    assert command(services["broker"])[:2] == ["broker", "serve"]
    assert flag(command(services["broker"]), "--host") == "0.0.0.0"
    assert command(services["worker"])[0] == "worker-agent"


def test_redis_keeps_every_write_never_evicts_and_wants_a_password(
        services: dict[str, Any]) -> None:
    redis = services["redis"]
    argv = command(redis)
    assert flag(argv, "--appendonly") == "yes"
    assert flag(argv, "--appendfsync") == "everysec"
    assert flag(argv, "--maxmemory-policy") == "noeviction"
    password = flag(argv, "--requirepass")
    assert len(password) >= 32
    assert "ports" not in redis, "Redis must not be published to the host"
    assert mounts(redis) == {"redis-data": "/data"}


def test_the_redis_healthcheck_takes_its_password_from_the_environment(
        services: dict[str, Any]) -> None:
    redis = services["redis"]
    password = flag(command(redis), "--requirepass")
    check = " ".join(healthcheck_argv(redis))
    assert "redis-cli" in check and "PONG" in check  # redis-cli exits 0 even on NOAUTH
    assert password not in check and " -a " not in check
    assert environment(redis)["REDISCLI_AUTH"] == password


def test_the_broker_reaches_redis_with_the_password_and_keeps_data_on_a_volume(
        services: dict[str, Any]) -> None:
    broker, redis = services["broker"], services["redis"]
    env = environment(broker)
    password = flag(command(redis), "--requirepass")
    assert env["REDIS_URL"] == f"redis://:{password}@redis:{listen_port(command(redis))}/0"
    data_dir = env["BROKER_DATA_DIR"]
    assert data_dir in mounts(broker).values()
    assert container_ports(broker) == [listen_port(command(broker))]
    check = " ".join(healthcheck_argv(broker))
    assert f"http://127.0.0.1:{listen_port(command(broker))}/readyz" in check


def test_the_brokers_settings_are_known_and_default_to_the_brokers_own(
        services: dict[str, Any]) -> None:
    env = environment(services["broker"])
    assert config.unknown_variables(env) == []
    loaded = config.load({}, env)  # a malformed default would raise SettingsError
    defaults = config.Settings()
    # The stack's own: its Redis, its volume, and the notifier as a service of its own.
    own = ("REDIS_URL", "BROKER_DATA_DIR", "BROKER_NOTIFIER")
    for field in config.FIELDS:
        if field.env in env and field.env not in own:
            assert getattr(loaded, field.name) == getattr(defaults, field.name), field.env


def test_the_stack_passes_every_broker_setting_that_env_example_documents(
        services: dict[str, Any]) -> None:
    passed = {name for name in environment(services["broker"])
              if name.startswith("BROKER_") or name == "REDIS_URL"}
    # Host and port are the command's flags; the data directory is the volume's mount point.
    fixed = {"REDIS_URL", "BROKER_DATA_DIR", "BROKER_HOST", "BROKER_PORT", "BROKER_NOTIFIER"}
    settings = {f.env for f in config.FIELDS} | {env for _, env, _ in config.TOKENS}
    assert passed | {"BROKER_HOST", "BROKER_PORT"} == settings
    set_vars, shown = read_env_file()
    documented = {n for n in {*set_vars, *shown} if n.startswith("BROKER_")}
    published = {"BROKER_PUBLISH_ADDRESS", "BROKER_PUBLISH_PORT"}  # compose's, not the broker's
    assert documented - published == settings - fixed


def test_workers_scale_and_reach_the_broker_with_python3_and_sh(
        services: dict[str, Any]) -> None:
    worker, broker = services["worker"], services["broker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}
    argv = command(worker)
    assert flag(argv, "--broker") == f"http://broker:{listen_port(command(broker))}"
    assert set(flags(argv, "--runtime")) == {"python3", "sh"}
    limits = {"--time-limit": Limits.time, "--cpu-limit": Limits.cpu,
              "--memory-limit": Limits.memory, "--files-limit": Limits.files,
              "--output-limit": Limits.output}
    for name, default in limits.items():
        assert float(flag(argv, name)) == default, name
    assert int(flag(argv, "--concurrency")) >= 1
    stop_grace = int(str(worker["stop_grace_period"]).removesuffix("s"))
    assert float(flag(argv, "--grace")) < stop_grace


def test_each_service_starts_once_what_it_needs_is_healthy(services: dict[str, Any]) -> None:
    assert services["broker"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert services["worker"]["depends_on"] == {"broker": {"condition": "service_healthy"}}
    assert services["notifier"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    for name in ("redis", "broker", "notifier"):
        check = services[name]["healthcheck"]
        assert not check.get("disable") and healthcheck_argv(services[name])
        assert {"interval", "timeout", "retries"} <= set(check)


def test_named_volumes_are_declared_and_used() -> None:
    compose = load_compose()
    used = {source for s in compose["services"].values() for source in mounts(s)}
    assert used == set(compose["volumes"]) == {"redis-data", "broker-data"}


def test_env_example_documents_every_variable_with_the_compose_default() -> None:
    used = variables(load_compose())
    set_vars, shown = read_env_file()
    assert set(used) == set(set_vars) | set(shown), "documented but unused, or undocumented"
    for name, defaults in used.items():
        if None in defaults:
            assert name in set_vars, f"{name} has no default: .env.example must set it"
        else:
            assert len(defaults) == 1 and shown.get(name) in defaults, name


def test_the_stack_refuses_to_start_with_the_example_password_left_empty() -> None:
    set_vars, _ = read_env_file()
    assert set_vars["REDIS_PASSWORD"] == ""
    assert "openssl rand -hex 32" in ENV_EXAMPLE.read_text()
    with pytest.raises(InterpolationError, match="REDIS_PASSWORD"):
        interpolate(load_compose(), set_vars)


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def dockerfile_healthcheck() -> list[str]:
    [health] = [i for i in dockerfile() if i.startswith("HEALTHCHECK")]
    argv: list[str] = json.loads(health.split(" CMD ", 1)[1])
    return argv


def test_the_dockerfile_installs_without_test_extras_and_runs_as_a_user() -> None:
    instructions = dockerfile()
    assert instructions[0] == "FROM python:3.11-slim"
    installs = [i for i in instructions if i.startswith("RUN pip install")]
    assert installs and not any("[" in i or "test" in i for i in installs)
    assert not any(i.startswith("COPY tests") for i in instructions)
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert instructions.index(installs[-1]) < instructions.index(f"USER {users[-1]}")
    assert "/healthz" in " ".join(dockerfile_healthcheck())
    cmd = next(i for i in instructions if i.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == ["broker", "serve", "--host", "0.0.0.0"]


def test_the_dockerignore_keeps_the_venv_git_secrets_and_data_out() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", ".env", "broker-data"} <= patterns
    assert not patterns & {"pyproject.toml", "README.md", "broker", "worker_agent", "*"}


# -- the services as local processes ----------------------------------------------------------


@pytest.fixture
def stack(services: dict[str, Any], tmp_path: Path) -> Iterator[LocalStack]:
    local = LocalStack(services, tmp_path)
    try:
        yield local
    finally:
        local.stop()


TOKEN: dict[str, str] = {}


def requester_env(url: str) -> dict[str, str]:
    """The requester on the host reaches the broker through its published port, with the
    requester token from .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return {**env, "BROKER_URL": url, "BROKER_REQUESTER_TOKEN": TOKEN.get("requester", "")}


def cli(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([local_program("broker"), *args], cwd=cwd, env=requester_env(url),
                          capture_output=True, text=True, timeout=60)


def submit(url: str, cwd: Path, runtime: str, function: str,
           text: str) -> subprocess.Popen[str]:
    (cwd / f"f.{runtime}").write_text(function)
    (cwd / f"in.{runtime}").write_text(text)
    return subprocess.Popen(
        [local_program("broker"), "submit", "--runtime", runtime, "--function",
         f"f.{runtime}", "--input", f"in.{runtime}", "--wait", "--output", f"out.{runtime}"],
        cwd=cwd, env=requester_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def test_the_services_commands_run_jobs_submitted_with_the_cli(stack: LocalStack,
                                                               tmp_path: Path) -> None:
    stack.up(replicas={"worker": 2})
    stack.wait_healthy("notifier", 20)  # its healthcheck, as compose runs it
    for label in ("worker-1", "worker-2"):
        stack.wait_for_log(label, "registered as worker")
    ids = {re.findall(r"registered as worker (\w+)", stack.log(label))[0]
           for label in ("worker-1", "worker-2")}
    assert len(ids) == 2

    url, work = stack.url("broker"), tmp_path / "requester"
    work.mkdir()
    TOKEN.clear()
    anonymous = cli(url, work, "job", "abcdefgh")  # the stack demands the requester token
    assert anonymous.returncode == 1 and "unauthorized" in anonymous.stderr
    TOKEN["requester"] = environment(stack.services["broker"])["BROKER_REQUESTER_TOKEN"]
    jobs = [submit(url, work, "python3",
                   "import sys\nsys.stdout.write(sys.stdin.read().upper())\n", "hello compose"),
            submit(url, work, "sh", "tr a-z A-Z; echo from sh\n", "hello shell\n")]
    try:
        for proc in jobs:
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, f"{err}\n{stack.logs()}"
            job = json.loads(cli(url, work, "job", out.strip()).stdout)
            assert job["status"] == "succeeded" and job["worker_id"] in ids
    finally:
        for proc in jobs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert (work / "out.python3").read_text() == "HELLO COMPOSE"
    assert (work / "out.sh").read_text() == "HELLO SHELL\nfrom sh\n"
    assert any(p.name != "redis.sock" for p in stack.volume("broker-data").iterdir())
    assert (stack.volume("redis-data") / "appendonlydir").is_dir()
    # The image's own healthcheck (the one compose replaces with /readyz) works as well.
    image_check = dockerfile_healthcheck()
    env = {**os.environ, "BROKER_PORT": str(stack.ports["broker"])}
    assert subprocess.run([local_program(image_check[0]), *image_check[1:]], env=env,
                          timeout=10).returncode == 0


def test_the_local_redis_refuses_a_client_without_the_password(stack: LocalStack) -> None:
    stack.start("redis")
    stack.wait_healthy("redis", timeout=10)
    env = {k: v for k, v in stack.env("redis").items() if k != "REDISCLI_AUTH"}
    check = subprocess.run(stack.healthcheck("redis"), env=env, timeout=10)
    assert check.returncode != 0


# -- docker compose itself, where it exists ---------------------------------------------------


def _docker_compose_missing() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    for probe, what in ((["docker", "compose", "version"], "the compose plugin is missing"),
                        (["docker", "info"], "no Docker engine answers")):
        try:
            done = subprocess.run(probe, capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return what
        if done.returncode != 0:
            return what
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    missing = _docker_compose_missing()
    if missing:
        pytest.skip(f"docker compose config not run: {missing}")
    base = ["docker", "compose", "--project-directory", str(ROOT), "-f",
            str(ROOT / "docker-compose.yml"), "--env-file", str(ENV_EXAMPLE), "config"]
    secret_names = ("REDIS_PASSWORD", "BROKER_REQUESTER_TOKEN", "BROKER_WORKER_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in secret_names}
    # With the example's secrets left empty, compose refuses, naming one of them (which one
    # first is compose's business).
    refused = subprocess.run([*base, "--quiet"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0
    assert any(name in refused.stderr for name in secret_names), refused.stderr
    secrets_set = {name: secrets.token_hex(32) for name in secret_names}
    done = subprocess.run([*base, "--format", "json"], env={**env, **secrets_set},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)["services"]
    assert set(resolved) == {"redis", "broker", "notifier", "worker"}
    assert secrets_set["REDIS_PASSWORD"] in resolved["redis"]["command"]
    broker_env = resolved["broker"]["environment"]
    assert broker_env["BROKER_WORKER_TOKEN"] == secrets_set["BROKER_WORKER_TOKEN"]


def test_the_docs_show_how_to_run_the_stack() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Run the stack", 1)[1].split("\n## ", 1)[0]
    for text in ("docker compose up", "--scale worker=2", "broker submit",
                 "openssl rand -hex 32", "BROKER_REQUESTER_TOKEN", "BROKER_WORKER_TOKEN"):
        assert text in quick, text
    reference = (ROOT / "docs" / "deployment.md").read_text()
    for text in ("docker compose up", "--scale worker=4", "broker job",
                 "docker compose exec redis redis-cli", "docker compose down -v"):
        assert text in reference, text
