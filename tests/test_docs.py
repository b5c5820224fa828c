"""The README and docs/ stay true: their tables are held to the code, and every link between
them resolves."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from broker import config
from broker.http.operation import ERROR_CODES
from broker.store.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def section(path: Path, heading: str) -> str:
    """The text under `## heading`, to the next heading of that level."""
    text = path.read_text()
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def documented_keys() -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", (DOCS / "redis-keys.md").read_text(), re.M))


def schema_keys() -> set[str]:
    """Every key Keys spells, with each argument shown as {name}."""
    keys = Keys()
    found = set()
    for name, member in inspect.getmembers(Keys):
        if name.startswith(("_", "context")) or name == "prefixes" or name.endswith(
                ("_prefix", "_suffix", "_pattern")):
            continue
        if isinstance(member, property):
            found.add(getattr(keys, name))
        elif callable(member):
            params = list(inspect.signature(member).parameters)[1:]
            found.add(getattr(keys, name)(*(f"{{{p}}}" for p in params)))
    return {k for k in found if isinstance(k, str) and k.startswith("broker:")}


def test_the_key_table_matches_the_key_schema() -> None:
    assert documented_keys() == schema_keys()


def test_the_settings_table_names_every_setting_and_nothing_else() -> None:
    table = section(DOCS / "deployment.md", "Settings")
    rows = set(re.findall(r"^\| `([A-Z_]+)`", table, re.M))
    names = {f.env for f in config.FIELDS} | {env for _, env, _ in config.TOKENS}
    assert rows == names


def test_the_error_table_lists_every_code_the_broker_answers() -> None:
    table = section(DOCS / "api.md", "Errors")
    documented = {int(status): set(re.findall(r"`(\w+)`", codes))
                  for status, codes in re.findall(r"^\| (\d{3}) \| (.*) \|$", table, re.M)}
    for status, codes in ERROR_CODES.items():
        if status == 503:
            codes = tuple(c for c in codes if c != "not_ready")  # /readyz's, in operations.md
        assert set(codes) <= documented.get(status, set()), status


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address: not ours to check offline
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in _anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_every_page_of_docs_is_in_the_readme_table_of_contents() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in DOCS.glob("*.md") if f"](docs/{p.name})" not in readme] == []


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert lines[0].startswith("# ")
