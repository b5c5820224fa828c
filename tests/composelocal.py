"""docker-compose.yml read as Compose reads it, and its services run as local processes.

No Docker engine is needed: each service's command, environment and healthcheck, after
Compose's `${VAR}` interpolation, run here with the services' host names mapped to 127.0.0.1
and free ports, their named volumes mapped to directories, the console scripts taken from this
virtualenv and redis-server from PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.config import Settings
from tests.brokerproc import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent

# The port a server listens on when its command names no --port.
DEFAULT_PORTS = {"redis-server": 6379, "broker": Settings().port}
# How each server is told, here, which address to bind.
BIND_FLAGS = {"redis-server": "--bind", "broker": "--host"}
# The official redis image keeps its files in its working directory, /data.
REDIS_IMAGE_DIR = "/data"

_VAR = re.compile(r"""\$(?:
    (?P<escaped>\$)
  | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}
  | (?P<named>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<invalid>)
)""", re.VERBOSE)
_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>.*)$")


class InterpolationError(ValueError):
    """Compose would refuse the file: a required variable is empty, or a `$` is malformed."""


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


def read_env_file(path: Path = ENV_EXAMPLE) -> tuple[dict[str, str], dict[str, str]]:
    """(the variables an env file sets, the ones it shows commented out with their default)."""
    set_vars: dict[str, str] = {}
    shown: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _ENV_LINE.match(line.strip())
        if m:
            value = m["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            (shown if m["comment"] else set_vars)[m["name"]] = value
    return set_vars, shown


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def variables(compose: Any) -> dict[str, set[str | None]]:
    """Every variable the file interpolates, with the defaults it is given there (None: no
    default, so it must be set)."""
    found: dict[str, set[str | None]] = {}
    for text in _strings(compose):
        for m in _VAR.finditer(text):
            name = m["braced"] or m["named"]
            if name:
                op = m["op"] or ""
                default = (m["arg"] or "") if op.endswith(("-", "+")) else None
                found.setdefault(name, set()).add(default)
    return found


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Substitute `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
    `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$VAR` and `$$` in every string, as Compose
    does to the parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, str):
        return _VAR.sub(lambda m: _substitute(m, env), value)
    return value


def _substitute(m: re.Match[str], env: Mapping[str, str]) -> str:
    if m["escaped"]:
        return "$"
    name = m["braced"] or m["named"]
    if not name:
        raise InterpolationError(f"invalid interpolation format in {m.string!r}")
    op, arg, current = m["op"] or "", m["arg"] or "", env.get(name)
    have = current is not None and not (op.startswith(":") and current == "")
    value = current or ""
    if op.endswith("-"):
        return value if have else arg
    if op.endswith("?"):
        if not have:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return value
    if op.endswith("+"):
        return arg if have else ""
    return value


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service["command"]
    words = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    for word in words:
        if not isinstance(word, str):  # e.g. an unquoted `yes` that YAML made a boolean
            raise TypeError(f"command word {word!r} is not a string")
    return words


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    for key, value in env.items():
        if not isinstance(value, str):
            raise TypeError(f"environment {key}={value!r} is not a string")
    return dict(env)


def healthcheck_argv(service: Mapping[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    assert kind in ("CMD", "CMD-SHELL"), test
    return ["sh", "-c", *rest] if kind == "CMD-SHELL" else list(rest)


def listen_port(argv: list[str]) -> int:
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    return DEFAULT_PORTS[Path(argv[0]).name]


def container_ports(service: Mapping[str, Any]) -> list[int]:
    """The container side of each published port ("[address:]host:container[/proto]")."""
    return [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Named volumes and bind mounts of a service: source -> path in the container."""
    found: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[source] = target
    return found


def localize(text: str, table: Mapping[str, str]) -> str:
    """Replace each key of table found in text (longest first, never in a longer name)."""
    if not table:
        return text
    keys = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])(?:{keys})", lambda m: table[m[0]], text)


def local_program(word: str) -> str:
    """Console scripts and python come from this virtualenv; anything else from PATH."""
    mine = VENV_BIN / word
    if mine.exists():
        return str(mine)
    found = shutil.which(word)
    assert found, f"{word} is on neither {VENV_BIN} nor PATH"
    return found


def override(argv: list[str], flags: Mapping[str, str]) -> list[str]:
    """argv with each flag's value replaced, or the flag appended where argv lacks it."""
    out = list(argv)
    for flag, value in flags.items():
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Services after everything they depend on."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle through {name}"
        for dep in services[name].get("depends_on") or {}:
            visit(dep, (*path, name))
        if name not in order:
            order.append(name)

    for name in services:
        visit(name, ())
    return order


@dataclass
class LocalStack:
    """The compose services (already interpolated) as local processes under root."""

    services: dict[str, Any]
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, service in self.services.items():
            argv = command(service)
            program = Path(argv[0]).name
            if program == "redis-server" or (program == "broker" and "serve" in argv):
                self.ports[name] = free_port()  # `broker notifier` serves no port

    def url(self, name: str) -> str:
        """What the host reaches through the service's published port."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def table(self, own: str) -> dict[str, str]:
        """Addresses and paths as seen inside `own`'s container -> where they are here."""
        table: dict[str, str] = {}
        for name, port in self.ports.items():
            inner = listen_port(command(self.services[name]))
            table[f"{name}:{inner}"] = f"127.0.0.1:{port}"
            if name == own:
                table[f"127.0.0.1:{inner}"] = table[f"localhost:{inner}"] = f"127.0.0.1:{port}"
        for source, target in mounts(self.services[own]).items():
            table[target] = str(self.volume(source))
        return table

    def argv(self, name: str) -> list[str]:
        words = command(self.services[name])
        table = self.table(name)
        argv = [local_program(words[0]), *(localize(w, table) for w in words[1:])]
        program = Path(words[0]).name
        if name not in self.ports:
            return argv
        flags = {"--port": str(self.ports[name]), BIND_FLAGS[program]: "127.0.0.1"}
        if program == "redis-server":
            flags["--dir"] = str(self.volume(self._source_of(name, REDIS_IMAGE_DIR)))
        return override(argv, flags)

    def _source_of(self, name: str, target: str) -> str:
        sources = [s for s, t in mounts(self.services[name]).items() if t == target]
        assert sources, f"{name} mounts no volume at {target}"
        return sources[0]

    def env(self, name: str) -> dict[str, str]:
        """This process's environment without broker or Redis settings, plus the service's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "REDIS"))}
        table = self.table(name)
        return {**base, **{k: localize(v, table) for k, v in
                           environment(self.services[name]).items()}}

    def healthcheck(self, name: str) -> list[str]:
        words = healthcheck_argv(self.services[name])
        table = self.table(name)
        if Path(command(self.services[name])[0]).name == "redis-server":
            # redis-cli inside the container talks to the default port; here, to ours.
            table["redis-cli"] = f"redis-cli -p {self.ports[name]}"
        return [local_program(words[0]), *(localize(w, table) for w in words[1:])]

    def start(self, name: str, replicas: int = 1) -> None:
        for i in range(replicas):
            label = f"{name}-{i + 1}"
            with (self.root / f"{label}.log").open("ab") as log:
                proc = subprocess.Popen(self.argv(name), env=self.env(name), cwd=self.root,
                                        stdout=log, stderr=subprocess.STDOUT)
            self.procs.append((label, proc))

    def up(self, replicas: Mapping[str, int], timeout: float = 20.0) -> None:
        """Start every service in dependency order, each once its dependencies are healthy."""
        for name in start_order(self.services):
            for dep, spec in (self.services[name].get("depends_on") or {}).items():
                if spec.get("condition") == "service_healthy":
                    self.wait_healthy(dep, timeout)
            self.start(name, replicas.get(name, 1))

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for label, proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"{label} exited with {proc.returncode}:\n"
                                         f"{self.logs()}")
            check = subprocess.run(self.healthcheck(name), env=self.env(name), timeout=10,
                                   capture_output=True)
            if check.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy within {timeout}s: "
                                     f"{check.stderr!r}\n{self.logs()}")
            time.sleep(0.1)

    def log(self, label: str) -> str:
        return (self.root / f"{label}.log").read_text(errors="replace")

    def wait_for_log(self, label: str, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(label):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {label}'s log:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(f"--- {label}\n{self.log(label)}" for label, _ in self.procs)

    def stop(self) -> None:
        """Stop every process, last started first; kill what does not stop in time."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
