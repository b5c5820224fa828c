"""The benchmark harness stays alive: `python -m bench --quick` runs every scenario and each one
produces numbers. No timing threshold is asserted: CI machines are shared and noisy. Outside
the default suite (it needs the bench extra: Celery, RQ, Dramatiq, arq, aiohttp): run by
`./scripts/test --bench`, as CI's second step."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
BROKER_SCENARIOS = ("floor", "contract", "submit", "lifecycle", "dispatch", "data", "depth",
                    "processes")
PYTHON_PEERS = {"RQ": "rq", "Celery": "celery", "Dramatiq": "dramatiq", "arq": "arq"}


def _measured(row: dict[str, Any]) -> bool:
    return isinstance(row["value"], int | float) and row["value"] > 0


@pytest.mark.timeout(240)
def test_quick_benchmark_gives_numbers_for_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=230, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] and report["machine"]["redis"]
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        rows.setdefault(row["scenario"], []).append(row)
    for name in BROKER_SCENARIOS:
        assert rows.get(name), f"{name} gave no rows\n{done.stdout}"
        unmeasured = [r for r in rows[name] if not _measured(r)]
        assert not unmeasured, f"{name}: {unmeasured}\n{done.stdout}"
    for row in rows["peers"]:
        module = next((m for label, m in PYTHON_PEERS.items()
                       if row["metric"].startswith(label)), None)
        installed = module is not None and importlib.util.find_spec(module) is not None
        assert _measured(row) or (not installed and row["note"]), row


def test_bench_rejects_an_unknown_scenario() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--scenarios", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "unknown scenario 'nope'" in done.stderr
