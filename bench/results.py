"""Rows of the results table, how they print, and the JSON file with the machine's facts."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    scenario: str
    metric: str
    value: float | None  # None: not measured (see `note`)
    unit: str = ""
    reference: str = ""  # what the value is held against: the floor or a peer, with its value
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.value is not None and not math.isnan(self.value)


def ratio_row(scenario: str, metric: str, value: float | None, unit: str, ref_name: str,
              ref_value: float | None, target: float | None = None, higher: bool = True,
              note: str = "") -> Row:
    """A row holding `value` against `ref_value` as value/ref; `target` bounds that ratio
    from below (`higher`) or from above."""
    ratio = None
    if value is not None and ref_value:
        ratio = value / ref_value
    met = None
    text = ""
    if target is not None:
        text = f"{'>=' if higher else '<='} {target:g}"
        if ratio is not None:
            met = ratio >= target if higher else ratio <= target
    ref = f"{ref_name} {fmt(ref_value)}" if ref_name else ""
    return Row(scenario, metric, value, unit, ref, ratio, text, met, note)


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    head = ("scenario", "metric", "value", "floor/peer", "ratio", "target", "met?")
    lines = [head]
    for r in rows:
        value = f"{fmt(r.value)} {r.unit}".strip() if r.measured else f"n/a ({r.note})"
        met = "" if r.met is None else ("yes" if r.met else "NO")
        lines.append((r.scenario, r.metric, value, r.reference,
                      "" if r.ratio is None else f"{r.ratio:.2f}", r.target, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    out = ["| scenario | metric | value | floor/peer | ratio | target | met? |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        value = f"{fmt(r.value)} {r.unit}".strip() if r.measured else f"n/a ({r.note})"
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        out.append(f"| {r.scenario} | {r.metric} | {value} | {r.reference} | {ratio} "
                   f"| {r.target} | {met} |")
    return "\n".join(out)


def section(facts: dict[str, Any], command: str, rows: list[Row]) -> str:
    """The README's performance section: the command, the machine, the table."""
    load = ", ".join(f"{x:.2f}" for x in facts["load_average"])
    return "\n".join([
        "## Performance", "",
        f"Measured with `{command}` on {facts['cpu']} ({facts['cores']} cores, "
        f"{facts['memory']}), Linux {facts['kernel']}, Python {facts['python']}, Redis "
        f"{facts['redis']}, on {facts['date']} (load average at the end: {load}).", "",
        markdown(rows), ""])


def machine(redis_version: str) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem = f"{int(first.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": model or platform.processor(), "cores": os.cpu_count(), "memory": mem,
        "kernel": platform.release(), "python": sys.version.split()[0],
        "redis": redis_version, "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_json(path: Path, facts: dict[str, Any], options: dict[str, Any],
               rows: list[Row], notes: list[str]) -> None:
    def clean(row: Row) -> dict[str, Any]:
        d = asdict(row)
        for k in ("value", "ratio"):
            if isinstance(d[k], float) and math.isnan(d[k]):
                d[k] = None
        return d

    path.write_text(json.dumps({"machine": facts, "options": options,
                                "rows": [clean(r) for r in rows], "notes": notes}, indent=2)
                    + "\n")
