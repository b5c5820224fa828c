from __future__ import annotations

import re

import pytest

from broker.store import scripts


def test_every_script_has_a_header_naming_its_keys_and_args() -> None:
    for name in scripts.names():
        text = scripts.source(name)
        assert re.match(r"#!lua( flags=allow-oom)?\n", text), name
        header = scripts.parse_header(text)
        body = text[text.index("]]"):]
        used_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
        used_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
        assert used_keys <= set(range(1, header.keys + 1)), name
        assert used_args <= set(range(1, header.args + 1)), name
        assert "TIME" not in re.findall(r"'([A-Z]+)'", body), f"{name} reads the clock"


def test_a_header_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError):
        scripts.parse_header("--[[ x\nKEYS[2] a\n]]")
    h = scripts.parse_header("--[[ x\nKEYS[1] a\nARGV[1] b\nARGV[2..] pairs\n]]")
    assert (h.keys, h.args, h.variadic) == (1, 1, True)


def test_includes_expand_recursively_once_each_and_refuse_a_cycle() -> None:
    files = {"main.lua": "-- @include a\n-- @include b\nreturn f()\n",
             "lib/a.lua": "-- @include c\nlocal function a() end\n",
             "lib/b.lua": "-- @include c\n-- @include a\nlocal function f() end\n",
             "lib/c.lua": "local function c() end\n"}
    text = scripts.source("main", files.__getitem__)
    assert [line for line in text.splitlines() if line.startswith("local")] == [
        "local function c() end", "local function a() end", "local function f() end"]
    files["lib/c.lua"] = "-- @include b\n"
    with pytest.raises(ValueError, match="include cycle: main -> a -> c -> b -> c"):
        scripts.source("main", files.__getitem__)


def test_every_script_defines_each_function_once() -> None:
    for name in scripts.names():
        defined = re.findall(r"^local function (\w+)", scripts.source(name), re.M)
        assert len(defined) == len(set(defined)), name
