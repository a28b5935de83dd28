// remotelab dashboard: the lab's front desk, through the gateway's /api/v1 routes. This file:
// helpers, signing in, the lab view (status, running cards, queue, devices, live feed).
// plots.js draws live plots, forms.js the submit/edit form, pages.js the other pages and the
// router. The API token lives in sessionStorage (this tab only) and goes out as a bearer
// token; the gateway decides what the token may do, the page only hides what its role may
// not use. Every text from the gateway is set as text (never as HTML).
"use strict";

const API = "/api/v1";
const RANK = { observer: 0, researcher: 1, manager: 2, admin: 3 };
const FINISHED = ["completed", "failed", "cancelled", "crashed"];
const POLL_MS = 2000;
const LIVE_LINES = 80;
const TOKEN_KEY = "remotelab.token";
const LAB_KEY = "remotelab.lab";
const HISTORY = 60; // live items the feed starts with
// actions that cannot be undone ask first
const CONFIRM = {
  cancel: "Cancel experiment {id}? A running one is aborted.",
  reject: "Reject experiment {id}?",
  stop: "Stop the running plan? It ends now and counts as completed.",
  abort: "Abort the running plan? The lab's devices go to their safe state.",
  "run-stop": "Stop experiment {id}? Its plan ends now and counts as completed.",
  "run-abort": "Abort experiment {id}? Its devices go to their safe state.",
};
const ACTIVE = ["running", "paused"];

const state = { token: null, me: null, lab: null, timer: null, live: null, busy: false,
  again: false, soon: null, worker: null, status: null, queue: [], book: null, seen: {} };
const $ = (id) => document.getElementById(id);
// what each table shows now: a table is rebuilt only when its data changed, so a button is
// not replaced under the pointer while someone clicks it
const shown = {};

function changed(table, data) {
  const key = JSON.stringify(data);
  if (shown[table] === key) return false;
  shown[table] = key;
  return true;
}

// -- helpers --------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key === "title") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const short = (id) => (id ? String(id).slice(0, 8) : "");
const expLink = (id) => el("a", { href: `#/experiments/${enc(id)}`, class: "exp-link" },
  el("code", { title: id }, short(id)));
const fmt = (v) => (typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(5)))
  : typeof v === "string" ? v : JSON.stringify(v));
const paramsText = (params) => Object.entries(params || {}).map(([k, v]) => `${k}=${fmt(v)}`)
  .join(", ");
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const badge = (text, kind) => el("span", { class: `badge ${kind || text}` }, text);

function when(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  const today = t.toDateString() === new Date().toDateString();
  return today ? t.toLocaleTimeString() : t.toLocaleString();
}

function atLeast(role) {
  return state.me !== null && RANK[state.me.role] >= RANK[role];
}

class ApiError extends Error {
  constructor(status, message, errors) {
    super(message);
    this.status = status;
    this.errors = errors || [];
    this.detail = message;
  }
}

// What an error answer says: the gateway's {detail, type, errors} body, else the status.
async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let errors = [];
  try {
    const body = await response.json();
    if (body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
    if (Array.isArray(body.errors) && body.errors.length) {
      errors = body.errors;
      message += " — " + body.errors.map((e) => (e.param ? `${e.param}: ` : "") + e.message)
        .join("; ");
    }
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, message, errors);
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, `the gateway did not answer: ${e.message}`);
  }
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

// -- signing in and out ---------------------------------------------------------------------
async function login(token) {
  state.token = token;
  $("login-error").hidden = true;
  try {
    state.me = await api("GET", "/whoami");
    const labs = await api("GET", "/labs");
    if (!labs.length) throw new ApiError(403, `user ${state.me.user} may use no lab here`);
    sessionStorage.setItem(TOKEN_KEY, token);
    const picker = $("lab");
    picker.replaceChildren(...labs.map((l) => el("option", { value: l.name }, l.name)));
    const saved = sessionStorage.getItem(LAB_KEY);
    picker.value = labs.some((l) => l.name === saved) ? saved : labs[0].name;
    $("lab-picker").hidden = labs.length < 2;
  } catch (e) {
    signOut(e.message);
    return;
  }
  $("who").textContent = `${state.me.user} · ${state.me.role}`;
  $("logout").hidden = false;
  $("login-view").hidden = true;
  $("nav").hidden = false;
  for (const node of document.querySelectorAll(".manager")) node.hidden = !atLeast("manager");
  for (const node of document.querySelectorAll(".researcher")) {
    node.hidden = !atLeast("researcher");
  }
  selectLab($("lab").value);
  route();
}

// Show one page of the dashboard (the others hidden).
const VIEWS = ["lab-view", "submit-view", "experiment-view", "run-view", "audit-view"];
function showView(id) {
  for (const v of VIEWS) $(v).hidden = v !== id;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", `${a.dataset.nav}-view` === id);
  }
}

function signOut(message) {
  stopLab();
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, me: null, lab: null });
  $("who").textContent = "";
  $("logout").hidden = true;
  $("lab-picker").hidden = true;
  $("nav").hidden = true;
  for (const v of VIEWS) $(v).hidden = true;
  $("login-view").hidden = false;
  $("token").value = "";
  clearError();
  if (message) {
    $("login-error").textContent = message;
    $("login-error").hidden = false;
  }
}

function selectLab(name) {
  stopLab();
  state.lab = name;
  for (const table of Object.keys(shown)) delete shown[table];
  sessionStorage.setItem(LAB_KEY, name);
  $("lab-name").textContent = name;
  $("live").replaceChildren();
  state.worker = null;
  Object.assign(state, { status: null, queue: [], book: null });
  $("running").replaceChildren();
  state.seen = {};
  dropPlots();
  state.timer = setInterval(refresh, POLL_MS);
  follow(name);
  refresh();
}

function stopLab() {
  clearInterval(state.timer);
  clearTimeout(state.soon);
  if (state.live) state.live.abort();
  state.timer = state.live = state.soon = null;
}

// -- reading the lab ------------------------------------------------------------------------
async function refresh() {
  if (state.busy) {
    state.again = true;
    return;
  }
  const lab = state.lab;
  if (!lab) return;
  state.busy = true;
  const base = `/labs/${enc(lab)}`;
  const finished = FINISHED.map((s) => `state=${s}`).join("&");
  try {
    const [summary, queue, done, devices, book, samples] = await Promise.all([
      api("GET", base),
      api("GET", `${base}/experiments?limit=200`),
      api("GET", `${base}/experiments?${finished}&limit=10`),
      api("GET", `${base}/devices`),
      optional(`${base}/reservations`),
      optional(`${base}/samples`),
    ]);
    if (lab !== state.lab) return;
    state.status = summary.status || state.status;
    state.queue = summary.current ? [summary.current, ...queue.items] : queue.items;
    state.book = book;
    renderStatus(summary);
    renderRunning();
    renderQueue(queue);
    renderFinished(done.items);
    renderDevices(devices);
    renderSamples(samples);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      refresh();
    }
  }
}

// A read the gateway may not offer (reservations, samples): null where it has no such route.
async function optional(path) {
  try {
    return await api("GET", path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
}

// A refresh soon, once however many live events ask for it.
function refreshSoon() {
  if (state.soon === null) {
    state.soon = setTimeout(() => {
      state.soon = null;
      refresh();
    }, 150);
  }
}

function renderStatus(lab) {
  // a lab whose file says visibility: own shows a researcher their own experiments only
  const own = lab.visibility === "own" && !atLeast("manager");
  $("lab-held").replaceChildren(
    lab.held ? badge("held", "held") : badge("open", "ok"),
    lab.held ? " no further experiment starts" : ` ${lab.queued} waiting`,
    own ? el("span", { class: "note own" }, " (in the lab; you see your own experiments only)") : "",
  );
  const worker = lab.status;
  const live = lab.workers ? `${lab.workers} live` : "none live: nothing will run";
  const lost = (lab.lost || []).map((r) => {
    const b = badge(`${r.id} lost`, "crashed");
    b.title = `no heartbeat for ${Math.round(r.silent_for)} s; marked at ${r.at} by ${r.by}; ` +
      `crashed: ${(r.experiments || []).join(", ") || "none"}`;
    return b;
  });
  $("lab-workers").replaceChildren(
    badge(live, lab.workers ? "ok" : "failed"),
    worker ? " " : "",
    worker ? badge(worker.state, worker.state) : "",
    ...lost.flatMap((b) => [" ", b]),
  );
  const current = lab.current;
  if (!current) {
    $("lab-current").textContent = "nothing";
  } else {
    const progress = worker && worker.experiment_id === current.id && worker.progress;
    const count = progress && progress.total ? ` · ${progress.done}/${progress.total} points` : "";
    $("lab-current").replaceChildren(
      badge(current.state), ` ${current.plan} by ${current.submitter} `,
      el("code", { title: current.id }, short(current.id)), count,
    );
  }
  $("lab-alerts").replaceChildren(
    ...(lab.alerts || []).map((a) =>
      el("li", { class: "alert", "data-kind": a.kind }, badge(a.kind, "failed"), ` ${a.message}`),
    ),
  );
  $("lab-alerts").hidden = !(lab.alerts || []).length;
  // a control that cannot apply now is disabled: no Resume when nothing is paused
  const runs = lab.running || [];
  const button = (name) => $("lab-controls").querySelector(`[data-control="${name}"]`);
  button("hold").disabled = lab.held;
  button("release").disabled = !lab.held;
  button("pause").disabled = !runs.some((e) => e.state === "running");
  button("resume").disabled = !runs.some((e) => e.state === "paused");
  button("stop").disabled = !runs.length;
  button("abort").disabled = !runs.length;
}

// -- the running experiments: one card each ------------------------------------------------
// Every experiment running now: from the reservations' "running", the queue's running and
// paused ones, and the live status's "running" map (whichever the gateway has), in that order.
function runningExperiments() {
  const live = (state.status && state.status.running) || {};
  const byId = new Map();
  const add = (id, fields) => {
    const known = byId.get(id) || { id, devices: [] };
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined && v !== null && (known[k] === undefined || known[k] === null ||
        (Array.isArray(known[k]) && !known[k].length))) known[k] = v;
    }
    byId.set(id, known);
  };
  for (const r of (state.book && state.book.running) || []) {
    add(r.id, { plan: r.plan, submitter: r.submitter, devices: r.devices, question: r.question,
      state: r.re_state === "paused" ? "paused" : undefined, started: r.started });
  }
  for (const exp of state.queue) {
    if (ACTIVE.includes(exp.state)) {
      add(exp.id, { plan: exp.plan, submitter: exp.submitter, devices: exp.devices,
        state: exp.state, started: exp.started });
    }
  }
  for (const [id, run] of Object.entries(live)) add(id, { plan: run.plan_name });
  for (const [id, run] of Object.entries(live)) byId.get(id).run_uid = run.run_uid;
  return [...byId.values()].map((exp) => {
    const run = live[exp.id];
    let progress = run && run.progress;
    if (!progress && state.status && state.status.experiment_id === exp.id) {
      progress = state.status.progress;
    }
    const paused = (run && run.state === "paused") || (!run && exp.state === "paused");
    return { ...exp, progress, state: paused ? "paused" : "running" };
  });
}

function runCard(id) {
  const control = (action, label, danger) => el("button", { type: "button",
    "data-run-control": action, class: danger ? "danger" : "" }, label);
  const controls = el("div", { class: "run-controls manager" },
    control("pause", "Pause"), control("resume", "Resume"), control("stop", "Stop"),
    control("abort", "Abort", true));
  controls.hidden = !atLeast("manager");
  return el("div", { class: "run-card", "data-id": id },
    el("div", { class: "run-head" }, el("span", { class: "run-state" }),
      el("span", { class: "run-plan" }), el("span", { class: "run-by" }), expLink(id)),
    el("progress", { max: 1, value: 0 }),
    el("div", { class: "run-progress" }, el("span", { class: "run-count" }),
      el("span", { class: "run-eta" })),
    el("div", { class: "run-devices" }), el("div", { class: "run-question" }),
    el("div", { class: "run-plot plot" }), controls);
}

// Cards are updated in place (a card's buttons stay under the pointer while progress moves).
function renderRunning() {
  const box = $("running");
  const runs = runningExperiments();
  const ids = new Set(runs.map((r) => r.id));
  for (const card of [...box.children]) if (!ids.has(card.dataset.id)) card.remove();
  for (const run of runs) {
    let card = box.querySelector(`.run-card[data-id="${CSS.escape(run.id)}"]`);
    if (!card) {
      card = runCard(run.id);
      box.append(card);
    }
    card.dataset.state = run.state;
    const q = (cls) => card.querySelector(cls);
    if (q(".run-state").textContent !== run.state) q(".run-state").replaceChildren(badge(run.state));
    q(".run-plan").textContent = run.plan || "?";
    q(".run-by").textContent = run.submitter ? `by ${run.submitter}` : "";
    const p = run.progress || {};
    const bar = q("progress");
    if (p.total) {
      bar.max = p.total;
      bar.value = Math.min(p.done || 0, p.total);
    } else {
      bar.removeAttribute("value"); // indeterminate: no num_points
    }
    q(".run-count").textContent = p.total ? `${p.done || 0}/${p.total} points`
      : `${p.done || 0} events`;
    const eta = timeLeft(run.id, p);
    q(".run-eta").textContent = eta === null ? "" : ` · about ${duration(eta)} left`;
    if (eta !== null) card.dataset.eta = String(Math.round(eta));
    if (run.run_uid) plotRun(q(".run-plot"), run.run_uid);
    q(".run-devices").textContent = run.devices && run.devices.length
      ? `devices: ${run.devices.join(", ")}` : "";
    const question = run.question && (run.question.prompt || run.question);
    q(".run-question").textContent = question ? `asks: ${fmt(question)}` : "";
    const paused = run.state === "paused";
    q('[data-run-control="pause"]').disabled = paused;
    q('[data-run-control="resume"]').disabled = !paused;
  }
  box.hidden = !runs.length;
}

// An estimate of the seconds left: the rate seen in this page since it first saw the run.
function timeLeft(id, progress) {
  const done = progress.done || 0;
  if (!progress.total || !done) return null;
  const now = Date.now() / 1000;
  const first = state.seen[id] || (state.seen[id] = { t: now, done });
  if (done <= first.done || now <= first.t) return null;
  const rate = (done - first.done) / (now - first.t);
  return Math.max(0, (progress.total - done) / rate);
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function onRunControl(event) {
  const button = event.target.closest("button[data-run-control]");
  if (!button) return;
  const id = button.closest(".run-card").dataset.id;
  const action = button.dataset.runControl;
  const ask = CONFIRM[`run-${action}`];
  act(button, "POST", `/labs/${enc(state.lab)}/experiments/${enc(id)}/${action}`, undefined,
    ask && ask.replace("{id}", short(id)));
}

// Why a queued experiment waits: its own waiting_for, else the reservations' "waiting" map.
function waitingFor(exp) {
  if (exp.waiting_for) return exp.waiting_for;
  const waiting = state.book && state.book.waiting;
  return (waiting && waiting[exp.id]) || "";
}

function rowActions(exp) {
  const mine = state.me && exp.submitter === state.me.user;
  const manager = atLeast("manager");
  const own = manager || (mine && atLeast("researcher"));
  const actions = [];
  if (exp.state === "waiting_for_approval" && manager) actions.push("approve", "reject");
  if (exp.state === "queued") {
    if (manager) actions.push("front");
    if (own) actions.push("back");
  }
  if (own) actions.push("cancel");
  return el("td", { class: "actions" }, ...actions.map((a) =>
    el("button", { type: "button", "data-action": a, class: a === "cancel" ? "danger" : "" }, a)));
}

function renderQueue(page) {
  $("queue-count").textContent = page.total ? `(${page.total})` : "(empty)";
  if (!changed("queue", [page.items, state.book && state.book.waiting])) return;
  const rows = page.items.map((exp) => el("tr", { "data-id": exp.id, "data-state": exp.state },
    el("td", {}, badge(exp.state === "waiting_for_approval" ? "awaiting approval" : exp.state,
      exp.state),
      exp.waiting_for ? el("div", { class: "note waiting" }, exp.waiting_for) : null),
    el("td", {}, exp.priority),
    el("td", { title: JSON.stringify(exp.params) }, exp.plan,
      (exp.devices || []).length
        ? el("div", { class: "note devices" }, exp.devices.join(", ")) : null,
      exp.state === "waiting_for_approval" // what a manager approves, in plain sight
        ? el("div", { class: "note params" }, paramsText(exp.params)) : null),
    el("td", {}, exp.submitter),
    el("td", {}, expLink(exp.id)),
    el("td", {}, when(exp.created)),
    el("td", { class: "waiting" }, waitingFor(exp)),
    rowActions(exp)));
  $("queue").tBodies[0].replaceChildren(...rows);
}

function renderFinished(items) {
  if (!changed("finished", items)) return;
  const rows = items.map((exp) => el("tr", { "data-id": exp.id, "data-state": exp.state },
    el("td", {}, badge(exp.state)),
    el("td", { title: JSON.stringify(exp.params) }, exp.plan),
    el("td", {}, exp.submitter),
    el("td", {}, expLink(exp.id)),
    el("td", {}, when(exp.ended)),
    el("td", { class: "note", title: exp.message || "" }, exp.error ||
      (exp.state === "cancelled" && exp.message) ||
      (exp.exit_status ? `exit ${exp.exit_status}` : ""))));
  $("finished").tBodies[0].replaceChildren(...rows);
}

// Who holds a device (and who waits for it), from the reservations; else the running one.
function holderOf(device) {
  const book = state.book && state.book.reservations && state.book.reservations[device.name];
  if (!book) {
    return device.busy && device.experiment ? el("code", { title: device.experiment },
      short(device.experiment)) : "";
  }
  const parts = [];
  if (book.holder) {
    parts.push(el("code", { title: book.holder }, short(book.holder)));
    if (book.since) parts.push(` since ${when(book.since)}`);
    if (book.block) parts.push(" (block)");
  }
  const waiters = book.waiters || [];
  if (waiters.length) {
    parts.push(el("div", { class: "waiters" }, "waiting: " + waiters
      .map((w) => `${short(w.experiment)}${w.since ? ` since ${when(w.since)}` : ""}`)
      .join(", ")));
  }
  return el("span", {}, ...parts);
}

function renderDevices(devices) {
  if (!changed("devices", [devices, state.book && state.book.reservations])) return;
  const rows = devices.map((d) => {
    const kind = d.state || (!d.online ? "offline" : d.busy ? "busy" : "idle");
    let status = badge(kind, { offline: "failed", fault: "failed", busy: "running" }[kind] || "ok");
    if (kind === "busy" && d.experiment) status = el("span", {}, status, " ", expLink(d.experiment));
    if (kind === "fault") status.title = d.fault || "";
    return el("tr", { "data-device": d.name, "data-state": kind },
      el("td", {}, d.name), el("td", { title: d.role }, d.class),
      el("td", { class: "holder" }, holderOf(d)), el("td", { class: "reading" }, readingOf(d)),
      el("td", { class: "status" }, status));
  });
  $("devices").tBodies[0].replaceChildren(...rows);
}

// A device's latest values on the live stream, and how old they are.
function readingOf(device) {
  const r = device.reading;
  if (!r) return "";
  const values = Object.entries(r.values).slice(0, 3).map(([k, v]) => {
    const name = k.startsWith(`${device.name}_`) ? k.slice(device.name.length + 1) : k;
    return name === device.name ? fmt(v) : `${name} ${fmt(v)}`;
  });
  const when = new Date(r.time * 1000).toLocaleString();
  return el("span", { class: r.stored ? "stored" : "", title: r.stored
    ? `read at ${when}, the last time a stored run read it` : `read at ${when}` },
  values.join(", "));
}

// Where each sample is, and whether it was used up (GET /labs/{lab}/samples, if served).
function renderSamples(samples) {
  const items = samples && (Array.isArray(samples) ? samples : samples.samples || samples.items);
  $("samples-panel").hidden = !items || !items.length;
  if (!items || !changed("samples", items)) return;
  const rows = items.map((s) => {
    let status = badge("available", "ok");
    if (s.consumed) {
      status = el("span", { title: s.why_consumed || "" }, badge("consumed", "cancelled"),
        s.consumed_by ? " by " : "", s.consumed_by ? expLink(s.consumed_by) : "");
    } else if (s.lost) status = badge("lost", "failed");
    else if (s.held_by) status = el("span", {}, badge("in use", "running"), " ", expLink(s.held_by));
    return el("tr", { "data-sample": s.id, "data-consumed": String(!!s.consumed) },
      el("td", {}, s.id), el("td", {}, s.location + (s.live ? "" : " (lab file)")),
      el("td", {}, status), el("td", { class: "note" }, s.description || ""));
  });
  $("samples").tBodies[0].replaceChildren(...rows);
}

// -- acting ---------------------------------------------------------------------------------
async function act(button, method, path, body, question) {
  if (question && !window.confirm(question)) return;
  button.disabled = true;
  try {
    await api(method, path, body);
    clearError();
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  } finally {
    button.disabled = false;
    refresh();
  }
}

function onControl(event) {
  const button = event.target.closest("button[data-control]");
  if (!button) return;
  const action = button.dataset.control;
  act(button, "POST", `/labs/${enc(state.lab)}/${action}`, undefined, CONFIRM[action]);
}

function onRowAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("tr").dataset.id;
  const action = button.dataset.action;
  const path = `/labs/${enc(state.lab)}/experiments/${enc(id)}`;
  const question = CONFIRM[action] && CONFIRM[action].replace("{id}", short(id));
  if (action === "front" || action === "back") {
    act(button, "POST", `${path}/move`, { to: action });
  } else {
    act(button, "POST", `${path}/${action}`, undefined, question);
  }
}

// -- the live feed (Server-Sent Events read with fetch: EventSource cannot send a token) ----
async function follow(lab) {
  const ctrl = new AbortController();
  state.live = ctrl;
  let delay = 1000;
  while (!ctrl.signal.aborted) {
    try {
      // the first connection starts with the lab's recent history; a reconnection does not
      const history = $("live").children.length ? 0 : HISTORY;
      const response = await fetch(`${API}/labs/${enc(lab)}/events?heartbeat=10&history=${history}`, {
        headers: { Authorization: `Bearer ${state.token}` },
        signal: ctrl.signal,
      });
      if (!response.ok) throw await errorOf(response);
      $("live-state").textContent = "(connected)";
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onMessage(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      if (e.status === 401) {
        signOut(e.message);
        return;
      }
      $("live-state").textContent = `(disconnected: ${e.message})`;
    }
    if (ctrl.signal.aborted) return;
    $("live-state").textContent = "(reconnecting …)";
    await sleep(delay);
    delay = Math.min(delay * 2, 15000);
  }
}

function onMessage(text) {
  let event = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return; // a keep-alive
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch (_) {
    return;
  }
  if (event === "status") onStatus(payload);
  else if (event === "document") onDocument(payload.name, payload.doc || {}, payload.at);
}

function logLine(kind, text, at) {
  const list = $("live");
  const t = at ? new Date(at * 1000) : new Date();
  list.prepend(el("li", { class: at ? `${kind} replay` : kind },
    el("time", {}, t.toLocaleTimeString()), " ", text));
  while (list.children.length > LIVE_LINES) list.lastChild.remove();
}

function onStatus(status) {
  if (status.replay) {
    const what = status.state !== "idle" ? ` ${status.plan_name || ""} ${short(status.experiment_id)}` : "";
    logLine("status", `worker ${status.state}${what}`, status.at);
    return;
  }
  state.status = status;
  renderRunning();
  const key = `${status.state}|${status.experiment_id || ""}`;
  if (key !== state.worker) {
    state.worker = key;
    const busy = status.state !== "idle";
    const what = busy ? ` ${status.plan_name || ""} ${short(status.experiment_id)}` : "";
    logLine("status", `worker ${status.state}${what}`);
    refreshSoon();
  }
}

function onDocument(name, doc, at) {
  livePlots(name, doc); // replayed descriptors too: they say which run a live event is of
  if (name === "start") {
    const plan = doc.plan_name || "?";
    logLine("start", `run started: ${plan} (experiment ${short(doc.experiment_id)})`, at);
    if (!at) refreshSoon();
  } else if (name === "stop") {
    const reason = doc.reason ? `: ${doc.reason}` : "";
    const events = Object.values(doc.num_events || {}).reduce((a, b) => a + b, 0);
    logLine("stop", `run ended: ${doc.exit_status}${reason} (${events} events)`, at);
    if (!at) refreshSoon();
  } else if (name === "event") {
    const values = Object.entries(doc.data || {})
      .filter(([, v]) => typeof v === "number")
      .slice(0, 3)
      .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : Number(v.toPrecision(5))}`);
    logLine("event", `event ${doc.seq_num}: ${values.join(" ")}`, at);
  } else if (name === "descriptor") {
    logLine("descriptor", `stream ${doc.name}`, at);
  }
}

// -- wiring ---------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", () => signOut());
  $("error-close").addEventListener("click", clearError);
  $("lab").addEventListener("change", (event) => selectLab(event.target.value));
  $("lab-controls").addEventListener("click", onControl);
  $("queue").addEventListener("click", onRowAction);
  $("running").addEventListener("click", onRunControl);
  wirePages();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
});
