"""Plain columns for the listing commands, as `docker ps` prints them."""

from __future__ import annotations

from typing import Any


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per job: id, runtime, status, attempts, last change, the error's first line."""
    return [[j["job_id"], j["runtime"], j["status"], j["attempts"], j["updated_at"],
             (j.get("error") or "").splitlines()[0][:60] if j.get("error") else ""]
            for j in jobs]
