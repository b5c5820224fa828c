"""The dashboard's server side, without a browser (tests/test_ui_browser.py drives one): who may
read what, the headers every answer carries, escaping, and the vendored files."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import httpx

from broker.http.ui import pages
from tests.helpers import contract, put_job, register, submit
from tests.inprocess import InProcess

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "broker" / "http" / "ui"
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
SHELLS = ("/ui", "/ui/jobs", "/ui/job?id=abcdefgh", "/ui/workers")
PARTS = ("/ui/part/overview", "/ui/part/jobs", "/ui/part/job?id=abcdefgh", "/ui/part/workers")


def test_every_page_fragment_and_file_carries_a_strict_csp(client: httpx.Client) -> None:
    for path in (*SHELLS, *PARTS, "/ui/static/ui.js", "/ui/static/ui.css",
                 "/ui/static/vendor/htmx-2.0.11.min.js"):
        answer = client.get(path)
        assert answer.status_code in (200, 404), path
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp, path
        assert "unsafe" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_pages_hold_no_inline_script_or_style(client: httpx.Client) -> None:
    for path in SHELLS:
        html = client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path
        assert "<style" not in html and " style=" not in html, path
        assert re.findall(r"\son[a-z]+=", html) == [], path  # no inline handler


def test_with_a_token_the_shells_are_open_and_the_data_is_not(
        app_with: Callable[..., InProcess]) -> None:
    app = app_with(BROKER_REQUESTER_TOKEN="requester-secret", BROKER_WORKER_TOKEN="worker-s")
    for path in SHELLS:
        assert app.get(path).status_code == 200, path
        assert "requester-secret" not in app.get(path).text
    for path in PARTS:
        assert app.get(path).status_code == 401, path
        worker = app.get(path, headers={"Authorization": "Bearer worker-s"})
        assert worker.status_code == 403, path
        answer = app.get(path, headers={"Authorization": "Bearer requester-secret"})
        assert answer.status_code in (200, 404), path
        assert answer.headers["content-type"].startswith("text/html")


def test_what_a_job_or_worker_supplies_is_escaped(client: httpx.Client) -> None:
    worker = register(client, "python3")
    job_id = submit(client, "python3", max_attempts=1)  # type: ignore[arg-type]
    lease = contract(client, worker).json()["lease"]
    assert put_job(client, job_id, {"status": "failed", "error": HOSTILE},
                   X_Worker_Id=worker, X_Lease=lease).status_code == 204
    for path in ("/ui/part/overview", f"/ui/part/job?id={job_id}"):
        html = client.get(path).text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;" in html, path
        assert "<img" not in html and "<script" not in html, path


def test_a_missing_job_is_a_page_that_says_so_and_a_bad_filter_a_400(
        client: httpx.Client) -> None:
    gone = client.get("/ui/part/job?id=abcdefgh")
    assert gone.status_code == 404 and "There is no job" in gone.text
    assert client.get("/ui/job?id=NOT-AN-ID").status_code == 400
    page = client.get("/ui/jobs?status=lost")  # a page says what is wrong, in the page
    assert page.status_code == 400 and 'id="problem"' in page.text
    assert "status must be one of" in page.text
    bad = client.get("/ui/part/jobs?status=lost")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_query"
    assert client.get("/ui/part/jobs?runtime=<b>").json()["error"] == "invalid_runtime"
    assert client.get("/ui/part/jobs?cursor=x").json()["field"] == "cursor"


def test_the_jobs_fragment_pages_with_the_listings_cursor(client: httpx.Client) -> None:
    ids = [submit(client, "python3") for _ in range(pages.PAGE_SIZE + 5)]
    first = client.get("/ui/part/jobs").text
    shown = re.findall(r'<tr data-job="([0-9a-z]{8})"', first)
    assert shown == ids[::-1][:pages.PAGE_SIZE]  # newest first
    cursor = re.search(r'cursor=([0-9]+)" rel="next"', first)
    assert cursor is not None
    rest = client.get(f"/ui/part/jobs?cursor={cursor.group(1)}").text
    assert re.findall(r'<tr data-job="([0-9a-z]{8})"', rest) == ids[::-1][pages.PAGE_SIZE:]


def test_the_openapi_document_leaves_the_dashboard_out(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_the_vendored_files_are_the_packages_own_and_are_packaged() -> None:
    vendor = UI / "static" / "vendor"
    table = (vendor / "README.md").read_text()
    digests = dict(re.findall(r"^\| (\S+) \|.*\| ([0-9a-f]{64}) \|$", table, re.M))
    files = {p.name for p in vendor.iterdir() if p.name != "README.md"}
    assert set(digests) == files
    for name, digest in digests.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["broker.http.ui"]
    shipped = [p.relative_to(UI).as_posix() for p in UI.rglob("*")
               if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]
    assert [f for f in shipped if not any(fnmatch(f, g) for g in globs)] == []
