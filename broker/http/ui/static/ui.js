// The dashboard's behaviour (docs/dashboard.md): the requester token, the live feed that tells
// htmx when to fetch a page's fragments again, the chart, the live log, and the actions, each
// a call of the JSON API as curl would make it. No inline script: the pages' CSP allows none.
"use strict";

const TOKEN_KEY = "broker.requester-token";
const FINAL = ["succeeded", "failed", "cancelled"];
const REFRESH_GAP_MS = 1000;  // fragments are fetched again at most once a second
const CHART_GAP_MS = 10000;   // the chart at most every ten seconds, and every minute
const TICK_MS = 15000;        // what has no events of its own (workers' last seen)
const MAX_LOG_CHARS = 2000000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const $ = (id) => document.getElementById(id);

// -- the token: in this tab's sessionStorage, sent only as a header -------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function withAuth(headers) {
  const out = Object.assign({}, headers || {});
  const t = token();
  if (t) out.Authorization = "Bearer " + t;
  return out;
}

let tokenWaiters = [];

function askToken(message) {
  const dialog = $("token-dialog");
  const error = $("token-error");
  error.textContent = message || "";
  error.hidden = !message;
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

// Resolves once a token is saved.
function tokenGiven() {
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function tokenChanged() {
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
  feed.restart();
  refreshNow();
}

function setUpToken() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();  // never a form submission: the token must not reach a URL
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-dialog").close();
    tokenChanged();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-input").value = "";
    $("token-dialog").close();
    tokenChanged();
  });
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-button").addEventListener("click", () => askToken(""));
}

// -- calls of the API ------------------------------------------------------------------------

async function api(method, path, options) {
  const opts = options || {};
  const headers = withAuth(opts.headers);
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method, headers, body, cache: "no-store" });
  if (res.status === 401) askToken("The broker asks for the requester token.");
  return res;
}

async function detailOf(res) {
  try {
    const answer = await res.json();
    return answer.detail || answer.error || String(res.status);
  } catch (_) {
    return "HTTP " + res.status;
  }
}

function notice(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
}

// -- refreshing fragments, at most once a second, never missing the last change ---------------

let refreshTimer = null;
let lastRefresh = 0;

function refreshNow() {
  lastRefresh = Date.now();
  htmx.trigger(document.body, "broker:refresh");
  chartSoon();
}

function refreshSoon() {
  if (refreshTimer) return;
  const wait = Math.max(100, REFRESH_GAP_MS - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshNow();
  }, wait);
}

function setUpHtmx() {
  htmx.on("htmx:configRequest", (event) => {
    Object.assign(event.detail.headers, withAuth({}));
  });
  htmx.on("htmx:responseError", async (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status === 401) {
      askToken("The broker asks for the requester token.");
    } else if (xhr.status === 403) {
      notice("This token may not read the dashboard: it needs the requester token.");
    } else {
      let detail = "HTTP " + xhr.status;
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (_) { /* not JSON */ }
      notice(detail);
    }
  });
  htmx.on("htmx:sendError", () => notice("The broker does not answer; this page catches up when it is back."));
  htmx.on("htmx:afterSwap", () => {
    notice("");
    updateTimes();
  });
}

// -- the live feed: GET /events?every=1 read with fetch, so the token travels as a header -----
// At most one `changed` message a second, however busy the broker: the page only needs to know
// that it should fetch its fragments again.

async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line[0] === ":") continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text[0] === " ") text = text.slice(1);
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
        else if (field === "id") id = text;
      }
      if (data.length) handle(name, data.join("\n"), id);
    }
  }
}

function setLive(state, text) {
  const el = $("live");
  el.dataset.state = state;
  el.textContent = text;
}

const feed = {
  last: "",
  controller: null,
  restart() {
    if (this.controller) this.controller.abort();
  },
  onEvent(name, data, id) {
    if (id) this.last = id;
    if (name === "ready") {
      setLive("live", "live");
      refreshSoon();  // what changed while it was away (or before it connected)
    } else if (name === "changed") {
      refreshSoon();
    }
  },
  async run(path) {
    let backoff = 1000;
    for (;;) {
      try {
        this.controller = new AbortController();
        const headers = withAuth(this.last ? { "Last-Event-ID": this.last } : {});
        const res = await fetch(path, { headers, signal: this.controller.signal, cache: "no-store" });
        if (res.status === 401) {
          setLive("down", "needs a token");
          await tokenGiven();
          continue;
        }
        if (res.ok) {
          backoff = 1000;
          await readEvents(res.body, (n, d, i) => this.onEvent(n, d, i));
        }
      } catch (_) {
        // the broker went away, or the token changed: connect again
      }
      setLive("down", "reconnecting…");
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 8000);
    }
  },
};

// -- the chart: GET /throughput, drawn by uPlot ----------------------------------------------

let chart = null;
let chartAt = 0;
let chartTimer = null;

function chartSoon() {
  if (!$("chart") || chartTimer) return;
  const wait = Math.max(0, CHART_GAP_MS - (Date.now() - chartAt));
  chartTimer = setTimeout(() => {
    chartTimer = null;
    drawChart();
  }, wait);
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

async function drawChart() {
  const el = $("chart");
  if (!el || typeof uPlot === "undefined") return;
  chartAt = Date.now();
  let answer;
  try {
    const res = await api("GET", el.dataset.src);
    if (!res.ok) return;
    answer = await res.json();
  } catch (_) {
    return;
  }
  const minutes = answer.minutes;
  const data = [
    minutes.map((m) => Date.parse(m.minute) / 1000),
    minutes.map((m) => m.handed_out),
    minutes.map((m) => m.succeeded),
    minutes.map((m) => m.failed),
  ];
  const sum = (i) => data[i].reduce((a, b) => a + b, 0);
  $("chart-summary").textContent = `The last hour: ${sum(1)} handed out, ${sum(2)} succeeded, ${sum(3)} failed.`;
  if (chart) {
    chart.setData(data);
    return;
  }
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") }, ticks: { stroke: cssVar("--line") } };
  chart = new uPlot({
    width: el.clientWidth || 600,
    height: 220,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "handed out", stroke: cssVar("--chart-handed"), width: 2 },
      { label: "succeeded", stroke: cssVar("--chart-succeeded"), width: 2 },
      { label: "failed", stroke: cssVar("--chart-failed"), width: 2 },
    ],
    axes: [axis, Object.assign({}, axis, { size: 50 })],
  }, data, el);
  window.addEventListener("resize", () => chart.setSize({ width: el.clientWidth, height: 220 }));
}

// -- a job's live log: GET /job/log?follow=1, resumed from its byte offset --------------------

async function jobStatus(jobId) {
  try {
    const res = await api("GET", "/job", { headers: { "X-Job-Id": jobId } });
    if (res.status === 404) return null;
    return res.ok ? (await res.json()).status : "unknown";
  } catch (_) {
    return "unknown";
  }
}

function appendLog(pre, text) {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(document.createTextNode(text));  // text, never markup
  while (pre.textContent.length > MAX_LOG_CHARS && pre.firstChild) pre.firstChild.remove();
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

async function followLog(pre) {
  const jobId = pre.dataset.job;
  const state = $("log-state");
  let offset = 0;
  let backoff = 1000;
  for (;;) {
    try {
      const res = await api("GET", `/job/log?follow=1&offset=${offset}`, { headers: { "X-Job-Id": jobId } });
      if (res.status === 404) {
        state.textContent = "No log: there is no such job.";
        return;
      }
      if (res.status === 401) {
        await tokenGiven();
        continue;
      }
      if (res.ok) {
        const start = Number(res.headers.get("X-Log-Start") || 0);
        if (start > offset) appendLog(pre, `[${start - offset} earlier bytes are no longer kept]\n`);
        offset = Math.max(offset, start);
        state.textContent = "Following the log as the worker sends it.";
        const decoder = new TextDecoder();
        const reader = res.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          offset += value.byteLength;
          appendLog(pre, decoder.decode(value, { stream: true }));
        }
        backoff = 1000;
      }
    } catch (_) {
      // the broker went away: ask again from the offset reached
    }
    const status = await jobStatus(jobId);
    if (status === null || FINAL.includes(status)) {
      state.textContent = status ? `The job ended: ${status}. ${offset ? "This is the log it kept." : "It wrote no log."}` : "The job is gone.";
      return;
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 8000);
  }
}

// -- actions: each one call of the API, the same checks as curl -------------------------------

const ACTIONS = {
  pause: (b) => ["PUT", "/runtimes", { json: { runtime: b.dataset.runtime, paused: true } }],
  resume: (b) => ["PUT", "/runtimes", { json: { runtime: b.dataset.runtime, paused: false } }],
  cancel: (b) => ["PUT", "/job", { headers: { "X-Job-Id": b.dataset.job }, json: { status: "cancelled" } }],
  rerun: (b) => ["PUT", "/job", { headers: { "X-Job-Id": b.dataset.job }, json: { status: "pending" } }],
  delete: (b) => ["DELETE", "/job", { headers: { "X-Job-Id": b.dataset.job } }],
};
const CONFIRM = {
  cancel: (id) => `Cancel job ${id}? A running job's worker is told to stop.`,
  rerun: (id) => `Run job ${id} again?`,
  delete: (id) => `Delete job ${id}? Its record and history go; this cannot be undone.`,
};

async function act(button) {
  const name = button.dataset.action;
  if (CONFIRM[name] && !window.confirm(CONFIRM[name](button.dataset.job))) return;
  const [method, path, opts] = ACTIONS[name](button);
  button.disabled = true;
  try {
    const res = await api(method, path, opts);
    if (!res.ok) {
      notice(`${button.textContent.trim()} failed: ${await detailOf(res)}`);
      return;
    }
    notice("");
    if (name === "delete") {
      window.location.assign("/ui/jobs");
      return;
    }
    refreshNow();
  } catch (_) {
    notice("The broker does not answer; nothing was changed that it confirmed.");
  } finally {
    button.disabled = false;
  }
}

async function download(button) {
  const dataId = button.dataset.download;
  const res = await api("GET", "/data", { headers: { "X-Data-Id": dataId, Accept: "application/octet-stream" } });
  if (!res.ok) {
    notice(`The ${button.dataset.label} could not be read: ${await detailOf(res)}`);
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = dataId;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function setUpActions() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action], button[data-download]");
    if (!button) return;
    if (button.dataset.action) act(button);
    else download(button).catch(() => notice("The broker does not answer."));
  });
}

// -- relative times, kept true without asking the broker ---------------------------------------

function ago(iso) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
  }
  return `${seconds} s ago`;
}

function updateTimes() {
  document.querySelectorAll("time[data-ago]").forEach((el) => {
    const iso = el.getAttribute("datetime");
    if (iso) {
      el.textContent = ago(iso);
      el.title = iso;
    }
  });
}

// -- start ----------------------------------------------------------------------------------

setUpToken();
setUpHtmx();
setUpActions();
document.addEventListener("DOMContentLoaded", () => {
  const path = document.body.dataset.feed;
  if (path) feed.run(path);
  else setLive("idle", "");
  if ($("chart")) {
    drawChart();
    setInterval(chartSoon, 60000);
  }
  const pre = $("log");
  if (pre) followLog(pre);
  setInterval(updateTimes, 5000);
  setInterval(() => htmx.trigger(document.body, "broker:tick"), TICK_MS);
});
