"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against real broker
processes, a real Redis and real worker agents. Every page is also saved as a screenshot under
build/screenshots/ (UI_SCREENSHOTS to choose another folder), named in the README."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.agentproc import AgentProcess
from tests.brokerproc import BrokerProcess
from tests.helpers import contract, job, put_job, register, run_job, submit, until
from tests.test_agent import agents_on

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("UI_SCREENSHOTS") or ROOT / "build" / "screenshots")
# As the machine's notes advise for a closed network: no background connections to make.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (./scripts/test installs it)")


class Tabs:
    """Browser pages on their own contexts; what each logged as an error is kept."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.problems: dict[int, list[str]] = {}

    def open(self, url: str, width: int = 1280, height: int = 800,
             scheme: str = "light") -> Page:
        context = self.browser.new_context(viewport={"width": width, "height": height},
                                           color_scheme=scheme)  # type: ignore[arg-type]
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        problems = self.problems.setdefault(id(page), [])
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url)
        return page

    def clean(self, page: Page, allow: str = "^$") -> None:
        """Nothing refused by the CSP, no script error (`allow`: expected refusals)."""
        assert [p for p in self.problems[id(page)] if not re.search(allow, p)] == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def tabs(browser: Browser) -> Iterator[Tabs]:
    t = Tabs(browser)
    yield t
    for context in t.contexts:
        context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def cell(page: Page, runtime: str, column: str) -> Any:
    return page.locator(f'#runtimes tr[data-runtime="{runtime}"] [data-col="{column}"]')


def test_the_overview_shows_the_counts_and_follows_them_without_a_reload(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs) -> None:
    worker = register(served, "python3")
    for _ in range(3):
        submit(served, "python3")
    for _ in range(2):
        submit(served, "node")
    assert contract(served, worker).status_code == 200
    page = tabs.open(broker_proc.url + "/ui")
    expect(cell(page, "python3", "pending")).to_have_text("2")
    expect(cell(page, "python3", "running")).to_have_text("1")
    expect(cell(page, "python3", "workers")).to_have_text("1")
    expect(cell(page, "node", "pending")).to_have_text("2")
    expect(cell(page, "node", "workers")).to_have_text("0")
    expect(page.locator('[data-count="pending"]')).to_have_text("4")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__same_page = true")
    submit(served, "python3")
    submit(served, "python3")
    expect(cell(page, "python3", "pending")).to_have_text("4")
    expect(page.locator('[data-count="pending"]')).to_have_text("6")
    assert page.evaluate("window.__same_page") is True  # followed, not reloaded
    expect(page.locator("#chart canvas")).to_have_count(1)
    expect(page.locator("#chart-summary")).to_contain_text("1 handed out")
    shot(page, "overview")
    tabs.clean(page)


TALKER = b"""import sys, time
for i in range(1, 7):
    print(f"step {i} of 6", file=sys.stderr, flush=True)
    time.sleep(0.7)
sys.stdout.write(sys.stdin.read().upper())
"""


def test_a_job_appears_runs_and_succeeds_while_its_log_streams(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs, tmp_path: Path) -> None:
    jobs = tabs.open(broker_proc.url + "/ui/jobs")
    expect(jobs.locator("#jobs .empty")).to_be_visible()
    jobs.evaluate("window.__same_page = true")
    with agents_on(broker_proc.url, tmp_path) as agents:
        agents("--runtime", "python3")
        job_id = run_job(served, "python3", TALKER, b"hello")
        badge = jobs.locator(f'tr[data-job="{job_id}"] [data-col="status"]')
        expect(badge).to_have_text("running")
        detail = tabs.open(f"{broker_proc.url}/ui/job?id={job_id}")
        expect(detail.locator("#log")).to_contain_text("step 1 of 6")
        assert job(served, job_id)["status"] == "running"  # the log came while it ran
        expect(detail.locator("#log")).to_contain_text("step 6 of 6")
        expect(badge).to_have_text("succeeded")
        expect(detail.locator("#job-status")).to_have_text("succeeded")
    assert jobs.evaluate("window.__same_page") is True
    expect(detail.locator("#log-state")).to_have_text(
        "The job ended: succeeded. This is the log it kept.")
    events = [li.get_attribute("data-event") for li in detail.locator("#timeline li").all()]
    assert events == ["created", "running", "succeeded"]
    expect(detail.locator('[data-download][data-label="output"]')).to_be_visible()
    with detail.expect_download() as download:
        detail.locator('[data-download][data-label="output"]').click()
    assert Path(download.value.path()).read_bytes() == b"HELLO"
    shot(jobs, "jobs")
    shot(detail, "job")
    tabs.clean(jobs)
    tabs.clean(detail)


def test_cancel_from_the_ui_asks_first_then_cancels(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs) -> None:
    job_id = submit(served, "nobody-runs-this")
    page = tabs.open(f"{broker_proc.url}/ui/job?id={job_id}")
    expect(page.locator("#why")).to_contain_text("no live worker serves runtime")
    page.once("dialog", lambda d: d.dismiss())
    page.locator('[data-action="cancel"]').click()
    page.wait_for_timeout(300)
    assert job(served, job_id)["status"] == "pending"  # dismissed: nothing done
    prompts: list[str] = []
    page.once("dialog", lambda d: (prompts.append(d.message), d.accept()))
    page.locator('[data-action="cancel"]').click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert job(served, job_id)["status"] == "cancelled"
    assert job_id in prompts[0]
    page.once("dialog", lambda d: d.accept())
    page.locator('[data-action="rerun"]').click()
    expect(page.locator("#job-status")).to_have_text("pending")
    page.once("dialog", lambda d: d.accept())
    page.locator('[data-action="delete"]').click()
    page.wait_for_url("**/ui/jobs")
    assert served.get("/job", headers={"X-Job-Id": job_id}).status_code == 404
    tabs.clean(page)


def test_pause_from_the_ui_stops_contracts_by_keyboard_too(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs) -> None:
    worker = register(served, "python3")
    submit(served, "python3")
    page = tabs.open(broker_proc.url + "/ui")
    expect(page.locator("#live")).to_have_text("live")
    pause = page.locator('#runtimes tr[data-runtime="python3"] [data-action="pause"]')
    expect(pause).to_be_visible()
    for _ in range(40):  # every control is reachable with Tab
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.action") == "pause":
            break
    else:
        pytest.fail("Tab never reached the Pause button")
    submit(served, "python3")  # the overview is fetched again: the focus stays
    expect(cell(page, "python3", "pending")).to_have_text("2")
    assert page.evaluate("document.activeElement.id") == "pause-python3"
    page.keyboard.press("Enter")
    until(lambda: served.get("/runtimes").json()["runtimes"][0]["paused"] is True, 10)
    assert contract(served, worker).status_code == 204  # paused: no contract
    resume = page.locator('#runtimes tr[data-runtime="python3"] [data-action="resume"]')
    resume.click()
    until(lambda: served.get("/runtimes").json()["runtimes"][0]["paused"] is False, 10)
    assert contract(served, worker).status_code == 200
    tabs.clean(page)


def test_the_token_prompt_works_and_the_token_stays_out_of_urls_and_logs(
        start_broker: Callable[..., BrokerProcess], tabs: Tabs,
        request: pytest.FixtureRequest) -> None:
    secret = "ui-requester-token-7f3a9c"
    broker = start_broker(BROKER_REQUESTER_TOKEN=secret, BROKER_LOG_LEVEL="info")
    api = httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {secret}"})
    request.addfinalizer(api.close)
    submit(api, "python3")
    page = tabs.open(broker.url + "/ui")
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization", ""))))
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "wrong-token")
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()  # refused again
    expect(page.locator("#token-error")).to_contain_text("requester token")
    page.fill("#token-input", secret)
    page.keyboard.press("Enter")
    expect(cell(page, "python3", "pending")).to_have_text("1")
    expect(page.locator("#live")).to_have_text("live")
    submit(api, "python3")  # the feed, with the token, follows it
    expect(cell(page, "python3", "pending")).to_have_text("2")
    page.goto(broker.url + "/ui/jobs")  # kept for the tab, not asked again
    expect(page.locator("#job-table tbody tr")).to_have_count(2)
    assert requests and all(secret not in url for url, _ in requests)
    assert any(auth == f"Bearer {secret}" for _, auth in requests)
    assert secret not in page.url
    log = broker.log()
    assert "GET /ui/part/overview 200" in log  # the access log was on
    assert secret not in log
    tabs.clean(page, allow="status of 401|Error Code 401")


def test_a_hostile_error_text_and_log_render_as_text(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs) -> None:
    worker = register(served, "python3")
    job_id = submit(served, "python3", max_attempts=1)  # type: ignore[arg-type]
    given = contract(served, worker).json()
    headers = {"X-Job-Id": job_id, "X-Worker-Id": worker, "X-Lease": given["lease"]}
    log = served.post("/job/log", content=HOSTILE.encode() + b"\n",
                      headers={**headers, "Content-Type": "application/octet-stream"})
    assert log.status_code == 204, log.text
    failed = put_job(served, job_id, {"status": "failed", "error": HOSTILE},
                     X_Worker_Id=worker, X_Lease=given["lease"])
    assert failed.status_code == 204, failed.text
    page = tabs.open(f"{broker_proc.url}/ui/job?id={job_id}")
    expect(page.locator("#job-error")).to_have_text(HOSTILE)
    expect(page.locator("#log")).to_contain_text(HOSTILE)
    overview = tabs.open(broker_proc.url + "/ui")
    expect(overview.locator("#failures")).to_contain_text(HOSTILE)
    for p in (page, overview):
        assert p.evaluate("window.__pwned") is None
        assert p.locator("main img, main script").count() == 0
    tabs.clean(page)
    tabs.clean(overview)


def test_the_pages_keep_following_after_the_broker_restarts(
        start_broker: Callable[..., BrokerProcess], tabs: Tabs,
        request: pytest.FixtureRequest) -> None:
    broker = start_broker()
    api = httpx.Client(base_url=broker.url)
    request.addfinalizer(api.close)
    page = tabs.open(broker.url + "/ui/jobs")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__same_page = true")
    broker.stop()
    expect(page.locator("#live")).to_have_text("reconnecting…")
    broker.start()
    job_id = submit(api, "python3")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    assert page.evaluate("window.__same_page") is True
    tabs.clean(page, allow="ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|status of 503|"
                           "htmx:sendError|htmx:afterRequest")


def test_every_page_fits_a_phone_and_reads_in_dark_mode(
        served: httpx.Client, broker_proc: BrokerProcess, tabs: Tabs,
        tmp_path: Path) -> None:
    worker = register(served, "python3", "node")
    job_id = submit(served, "python3")
    assert contract(served, worker).status_code == 200
    submit(served, "node")
    pages = {"overview": "/ui", "jobs": "/ui/jobs", "job": f"/ui/job?id={job_id}",
             "workers": "/ui/workers"}
    for scheme, width, height in (("dark", 1280, 800), ("light", 390, 844)):
        for name, path in pages.items():
            page = tabs.open(broker_proc.url + path, width=width, height=height, scheme=scheme)
            expect(page.locator("main .loading")).to_have_count(0)  # every part is in
            if name == "workers":
                expect(page.locator(f'#worker-table tr[data-worker="{worker}"]')).to_contain_text(
                    job_id)
            fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert fits, f"{name} is wider than {width}px"
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(15, 20, 25)") == (scheme == "dark")
            shot(page, f"{name}-{scheme}-{width}")
            tabs.clean(page)


def test_a_dead_worker_is_listed_with_what_it_gave_back(
        start_broker: Callable[..., BrokerProcess], tabs: Tabs, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    broker = start_broker(BROKER_WORKER_TIMEOUT="1", BROKER_SWEEP_INTERVAL="0.2")
    api = httpx.Client(base_url=broker.url)
    request.addfinalizer(api.close)
    with agents_on(broker.url, tmp_path) as agents:
        agent: AgentProcess = agents("--runtime", "python3")
        job_id = run_job(api, "python3", b"import time\ntime.sleep(10)\n")
        until(lambda: job(api, job_id)["status"] == "running")
        page = tabs.open(broker.url + "/ui/workers")
        expect(page.locator("#worker-table")).to_contain_text(job_id)
        agent.proc.kill()  # SIGKILL: no goodbye; the broker declares it dead
        expect(page.locator("#dead-table")).to_contain_text(job_id, timeout=20000)
        shot(page, "workers")
        tabs.clean(page)
