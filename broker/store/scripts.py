"""Loads lua/*.lua once, and checks every call against the script's header.

Each script opens with a header naming every KEYS[i] and ARGV[i] it reads; `ARGV[i..]` marks a
variadic tail. A call with another number of keys or arguments is a programming error, caught
here before it reaches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from broker.store.autopipeline import AutoPipeline
from broker.store.resp import ScriptCall

_KEY = re.compile(r"^\s*KEYS\[(\d+)\]", re.M)
_ARG = re.compile(r"^\s*ARGV\[(\d+)(\.\.)?\]", re.M)


@dataclass(frozen=True)
class Header:
    keys: int
    args: int
    variadic: bool


def parse_header(source: str) -> Header:
    end = source.find("]]")
    head = source[: end if end >= 0 else 0]
    keys = [int(m.group(1)) for m in _KEY.finditer(head)]
    args = [(int(m.group(1)), bool(m.group(2))) for m in _ARG.finditer(head)]
    if keys != list(range(1, len(keys) + 1)) or [a for a, _ in args] != list(
        range(1, len(args) + 1)
    ):
        raise ValueError("header must list KEYS[1..n] and ARGV[1..m] in order")
    variadic = bool(args) and args[-1][1]
    return Header(len(keys), len(args) - 1 if variadic else len(args), variadic)


_INCLUDE = re.compile(r"^-- @include (\w+)$", re.M)


def _read(path: str) -> str:
    return resources.files("broker.store").joinpath("lua", path).read_text()


def source(name: str, read: Callable[[str], str] = _read) -> str:
    """The script's text, each `-- @include NAME` line replaced by lua/lib/NAME.lua, itself
    expanded the same way: a library names what it needs, comes before the code that uses it,
    and appears once in a script however many include it. A cycle is an error."""
    included: set[str] = set()

    def expand(text: str, chain: tuple[str, ...]) -> str:
        def include(match: re.Match[str]) -> str:
            lib = match.group(1)
            if lib in chain:
                raise ValueError(f"include cycle: {' -> '.join([*chain, lib])}")
            if lib in included:
                return ""
            included.add(lib)
            return expand(read(f"lib/{lib}.lua"), (*chain, lib))
        return _INCLUDE.sub(include, text)

    return expand(read(f"{name}.lua"), (name,))


def names() -> list[str]:
    return sorted(
        p.name[:-4] for p in resources.files("broker.store").joinpath("lua").iterdir()
        if p.name.endswith(".lua")
    )


class Script:
    def __init__(self, name: str, redis: Redis, pipeline: AutoPipeline,
                 shebang: bool = True) -> None:
        text = source(name)
        if not shebang:  # fakeredis knows no `#!lua` line: keep it as a comment
            text = "--" + text[2:]
        self.name = name
        self.header = parse_header(text)
        self._script: AsyncScript = redis.register_script(text)
        self._pipeline = pipeline
        self._call = ScriptCall(self._script.sha)

    def _check(self, keys: list[str], args: list[Any]) -> None:
        h = self.header
        if len(keys) != h.keys or len(args) < h.args or (not h.variadic and len(args) != h.args):
            raise TypeError(f"{self.name}.lua takes {h.keys} keys and {h.args} args, "
                            f"got {len(keys)} and {len(args)}")

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        self._check(keys, args)
        try:
            return await self._pipeline.execute_packed(self._call.pack(keys, args))
        except NoScriptError:  # Redis lost its scripts (a restart): load it, run it
            return await self._script(keys=keys, args=args)


class Scripts:
    """Every script under lua/, as attributes named like the files."""

    def __init__(self, redis: Redis, shebang: bool = True) -> None:
        pipeline = AutoPipeline(redis)
        self._all = {name: Script(name, redis, pipeline, shebang) for name in names()}

    def __getattr__(self, name: str) -> Script:
        try:
            return self._all[name]
        except KeyError:
            raise AttributeError(name) from None
