"""Runtimes: a name and an argv template with {function}, {input} and {output} placeholders."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys

PLACEHOLDERS = ("function", "input", "output")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def builtin() -> dict[str, list[str]]:
    found = {"python3": [sys.executable, "{function}"]}
    for name in ("sh", "bash", "node"):
        path = shutil.which(name)
        if path:
            found[name] = [path, "{function}"]
    return found


def parse(spec: str, known: dict[str, list[str]] | None = None) -> tuple[str, list[str]]:
    """`name` (a built-in) or `name=template`, the template split like a shell command."""
    name, sep, template = spec.partition("=")
    name = name.strip()
    if not NAME.fullmatch(name):
        raise ValueError(f"runtime name {name!r} must be 1-64 characters of [A-Za-z0-9._+-]")
    if not sep:
        table = builtin() if known is None else known
        if name not in table:
            raise ValueError(f"no built-in runtime {name!r} here; give name=template "
                             f"(built-ins: {', '.join(sorted(table))})")
        return name, table[name]
    argv = shlex.split(template)
    if not argv:
        raise ValueError(f"runtime {name!r} has an empty template")
    for word in argv:
        for field in re.findall(r"\{(\w*)\}", word):
            if field not in PLACEHOLDERS:
                raise ValueError(f"runtime {name!r}: unknown placeholder {{{field}}}")
    return name, argv


def check_program(name: str, argv: list[str]) -> None:
    """Refuse, at start, a runtime whose program does not exist or cannot run here (a program
    named by a placeholder, such as `{function}` itself, is only known per job)."""
    program = argv[0]
    if "{" in program:
        return
    found = shutil.which(program) if os.sep not in program else (
        program if os.access(program, os.X_OK) and os.path.isfile(program) else None)
    if found is None:
        where = "on PATH" if os.sep not in program else "or is not an executable file"
        raise ValueError(f"runtime {name!r}: program {program!r} not found {where}")


def command(template: list[str], function: str, input: str, output: str) -> list[str]:
    return [w.format(function=function, input=input, output=output) for w in template]
