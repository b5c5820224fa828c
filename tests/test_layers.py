"""The packages form layers, and the imports between modules keep to them: a lower layer never
imports a higher one, the client side never imports the server, and no import cycle exists
(imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each layer, and the layers its modules may import.
BASE = {"broker", "broker.config", "broker.errors", "broker.ids", "broker.clock",
        "broker.lifecycle", "broker.wire"}
LAYERS = {
    "base": {"base"},
    "store": {"base", "store"},
    "files": {"base", "store", "files"},
    "events": {"base", "store", "events"},
    "http": {"base", "store", "files", "events", "http"},
    "process": {"base", "store", "files", "events", "http", "process", "cli"},
    "client": {"base", "client"},
    "cli": {"base", "client", "cli"},
    "agent": {"base", "client", "agent"},
}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module in ("broker.serve", "broker.__main__"):
        return "process"
    if module.startswith("worker_agent"):
        return "agent"
    return module.split(".")[1]


def modules() -> dict[str, Path]:
    found = {}
    for package in ("broker", "worker_agent"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project's modules that `path` imports (a `from package import name` counts the
    submodule when there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    every = modules()
    names = set(every)
    return {name: imports(path, names) - {name} for name, path in every.items()}


def test_every_module_belongs_to_a_layer() -> None:
    assert {name: layer(name) for name in graph() if layer(name) not in LAYERS} == {}


def test_no_layer_imports_a_higher_one() -> None:
    wrong = [(name, used) for name, uses in graph().items() for used in uses
             if layer(used) not in LAYERS[layer(name)]]
    assert wrong == []


def test_the_imports_form_no_cycle() -> None:
    edges = graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for used in sorted(edges[name]):
            if state.get(used) == "open":
                cycles.append([*path[path.index(used):], used] if used in path else [used])
            elif used not in state:
                visit(used, [*path, used])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []
