from __future__ import annotations

import inspect
import re
from pathlib import Path

from broker.store.keys import Keys

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_keys() -> set[str]:
    text = README.read_text()
    table = text[text.index("## Redis keys"):]
    return set(re.findall(r"^\| `([^`]+)` \|", table, re.M))


def schema_keys() -> set[str]:
    """Every key Keys spells, with each argument shown as {name}."""
    keys = Keys()
    found = set()
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "prefixes" or name.endswith(
                ("_prefix", "_suffix", "_pattern")):
            continue
        if isinstance(member, property):
            found.add(getattr(keys, name))
        elif callable(member):
            params = list(inspect.signature(member).parameters)[1:]
            found.add(getattr(keys, name)(*(f"{{{p}}}" for p in params)))
    return {k for k in found if isinstance(k, str) and k.startswith("broker:")}


def test_the_readme_key_table_matches_the_key_schema() -> None:
    assert documented_keys() == schema_keys()


def test_every_key_sits_under_the_configured_prefix() -> None:
    keys = Keys("tenant1:")
    assert keys.job("abcdefgh") == "tenant1:job:abcdefgh"
    assert keys.queue("python3").startswith("tenant1:")
    assert keys.worker_jobs("abcdefgh") == keys.worker("abcdefgh") + ":jobs"
    assert keys.wake("sh").startswith(keys.wake_prefix)
