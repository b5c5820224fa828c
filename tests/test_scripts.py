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
