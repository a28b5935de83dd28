// remotelab dashboard: the pages beside the lab view, each at a linkable address —
// #/experiments/{id} (an experiment: parameters, edits, decisions, states, questions, runs, and
// its buttons by role), #/runs/{uid} (a run: metadata, provenance, plot, downloads),
// #/submit and #/edit/{id} (forms.js), #/audit (the audit log, filtered) — and the router.
"use strict";

const page = { timer: null, id: null };
const AUDIT_ACTIONS = ["experiment.submit", "experiment.edit", "experiment.cancel",
  "experiment.move", "experiment.prioritise", "experiment.approve", "experiment.reject",
  "experiment.answer", "lab.hold", "lab.release", "lab.pause", "lab.resume", "lab.stop",
  "lab.abort"];

function route() {
  if (!state.me) return;
  clearInterval(page.timer);
  page.timer = null;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [where, arg] = parts;
  if (where === "experiments" && arg) openExperiment(arg);
  else if (where === "runs" && arg) openRun(arg);
  else if (where === "submit") openForm(null);
  else if (where === "edit" && arg) openForm(arg);
  else if (where === "audit") openAudit();
  else showView("lab-view");
}

const kv = (rows) => rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
  .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);

function kvRows(table, obj) {
  table.tBodies[0].replaceChildren(...Object.entries(obj || {}).map(([k, v]) =>
    el("tr", { "data-key": k }, el("th", {}, k), el("td", {}, fmt(v)))));
}

const stamp = (t) => (t ? new Date(typeof t === "number" ? t * 1000 : t).toLocaleString() : "");

// -- an experiment ---------------------------------------------------------------------------
function openExperiment(id) {
  showView("experiment-view");
  if (page.id !== id) {
    for (const key of Object.keys(shown)) if (key.startsWith("exp-")) delete shown[key];
    $("exp-facts").replaceChildren();
    $("exp-actions").replaceChildren();
  }
  page.id = id;
  loadExperiment(id);
  page.timer = setInterval(() => loadExperiment(id), POLL_MS);
}

async function loadExperiment(id) {
  const base = `/labs/${enc(state.lab)}/experiments/${enc(id)}`;
  try {
    const [exp, history, runs, book] = await Promise.all([
      api("GET", base), api("GET", `${base}/history`), api("GET", `${base}/runs`),
      optional(`/labs/${enc(state.lab)}/reservations`),
    ]);
    if (page.id !== id || $("experiment-view").hidden) return;
    const running = ((book && book.running) || []).find((r) => r.id === id);
    renderExperiment(exp, history, runs, running && running.question);
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  }
}

function renderExperiment(exp, history, runs, question) {
  $("exp-id").textContent = exp.id;
  $("exp-id").title = exp.id;
  $("exp-state").replaceChildren(badge(exp.state === "waiting_for_approval"
    ? "awaiting approval" : exp.state, exp.state));
  $("experiment-view").dataset.state = exp.state;
  if (changed("exp-facts", exp)) {
    $("exp-facts").replaceChildren(...kv([
      ["plan", exp.plan], ["submitter", exp.submitter], ["priority", exp.priority],
      ["devices", (exp.devices || []).join(", ")], ["submitted", stamp(exp.created)],
      ["started", stamp(exp.started)], ["ended", stamp(exp.ended)], ["worker", exp.worker],
      ["waiting for", exp.waiting_for], ["exit", exp.exit_status], ["message", exp.message],
    ]));
    kvRows($("exp-params"), exp.params);
    $("exp-edits").replaceChildren(...(exp.edits || []).map((e) => el("li", {},
      `${stamp(e.at)} by ${e.by}${e.role ? ` (${e.role})` : ""}: was ${paramsText(e.previous)}`)));
    if (!(exp.edits || []).length) $("exp-edits").replaceChildren(el("li", { class: "muted" }, "none"));
  }
  if (changed("exp-actions", [exp.state, exp.priority, exp.submitter])) renderExpActions(exp);
  if (changed("exp-question", question || null)) renderQuestion(exp, question);
  if (changed("exp-history", history)) {
    $("exp-requests").tBodies[0].replaceChildren(...history.actions.map((a) => el("tr",
      { "data-action": a.action },
      el("td", {}, stamp(a.time)), el("td", {}, `${a.actor} (${a.role})`),
      el("td", {}, a.action.replace(/^experiment\./, "")), el("td", {}, String(a.status)),
      el("td", { class: "note" }, paramsText(a.detail)))));
    $("exp-states").tBodies[0].replaceChildren(...history.states.map((s) => el("tr",
      { "data-state": s.state },
      el("td", {}, stamp(s.at)), el("td", {}, badge(s.state)), el("td", {}, s.name),
      el("td", { class: "note" }, s.message))));
  }
  if (changed("exp-runs", runs)) {
    $("exp-runs").tBodies[0].replaceChildren(...runs.map((r) => el("tr", { "data-run": r.uid },
      el("td", {}, el("a", { href: `#/runs/${enc(r.uid)}`, class: "run-link" },
        el("code", { title: r.uid }, short(r.uid)))),
      el("td", {}, stamp(r.time)), el("td", {}, r.exit_status || "running"),
      el("td", {}, String(r.num_events)))));
  }
}

// The buttons that apply to this experiment now, for this caller (the gateway checks again).
function renderExpActions(exp) {
  const manager = atLeast("manager");
  const own = manager || (atLeast("researcher") && exp.submitter === state.me.user);
  const waiting = ["queued", "waiting_for_approval"].includes(exp.state);
  const finished = FINISHED.includes(exp.state);
  const button = (action, label, cls) => el("button", { type: "button", "data-exp-action": action,
    class: cls || "" }, label);
  const items = [];
  if (exp.state === "waiting_for_approval" && manager) {
    items.push(button("approve", "Approve"),
      el("input", { id: "exp-reason", placeholder: "reason (for a rejection)", maxLength: 500 }),
      button("reject", "Reject", "danger"));
  }
  if (waiting && own) {
    items.push(el("a", { href: `#/edit/${enc(exp.id)}`, class: "button", "data-exp-action": "edit" },
      "Edit"));
  }
  if (exp.state === "queued" && manager) items.push(button("front", "Move to front"));
  if (exp.state === "queued" && own) items.push(button("back", "Move to back"));
  if (exp.state === "queued" && manager) {
    items.push(el("select", { id: "exp-priority" }, ...["urgent", "normal", "low"]
      .map((p) => option(p, p, p === exp.priority))), button("priority", "Set priority"));
  }
  if (!finished && own) items.push(button("cancel", "Cancel", "danger"));
  $("exp-actions").replaceChildren(...items);
}

function renderQuestion(exp, question) {
  const box = $("exp-question");
  box.hidden = !question;
  if (!question) return box.replaceChildren();
  const may = atLeast("manager") || exp.submitter === state.me.user;
  const answer = (value, label) => el("button", { type: "button", "data-answer": String(value) },
    label);
  const controls = !may ? [] : question.kind === "value"
    ? [el("input", { id: "answer-value", placeholder: "the value" }), answer("value", "Answer")]
    : [answer(true, "Yes"), answer(false, "No")];
  box.replaceChildren(el("strong", {}, "The plan asks the operator: "),
    el("span", { class: "prompt" }, question.prompt || ""), " ", ...controls);
}

function onExpAction(event) {
  const button = event.target.closest("button[data-exp-action]");
  if (!button) return;
  const path = `/labs/${enc(state.lab)}/experiments/${enc(page.id)}`;
  const action = button.dataset.expAction;
  const reason = $("exp-reason") ? $("exp-reason").value.trim() : "";
  const after = () => loadExperiment(page.id);
  if (action === "front" || action === "back") act(button, "POST", `${path}/move`, { to: action });
  else if (action === "priority") {
    act(button, "POST", `${path}/priority`, { priority: $("exp-priority").value });
  } else if (action === "reject") {
    act(button, "POST", `${path}/reject`, { reason }, CONFIRM.reject.replace("{id}", short(page.id)));
  } else if (action === "cancel") {
    act(button, "POST", `${path}/cancel`, {}, CONFIRM.cancel.replace("{id}", short(page.id)));
  } else act(button, "POST", `${path}/${action}`);
  setTimeout(after, 300);
}

function onAnswer(event) {
  const button = event.target.closest("button[data-answer]");
  if (!button) return;
  let value = button.dataset.answer === "true" ? true : button.dataset.answer === "false" ? false
    : $("answer-value").value;
  if (typeof value === "string" && value.trim() !== "" && !Number.isNaN(Number(value))) {
    value = Number(value);
  }
  act(button, "POST", `/labs/${enc(state.lab)}/experiments/${enc(page.id)}/answer`, { value });
  setTimeout(() => loadExperiment(page.id), 300);
}

// -- a run -----------------------------------------------------------------------------------
let runPlot = null;

async function openRun(uid) {
  showView("run-view");
  if (runPlot) runPlot.destroy();
  runPlot = null;
  for (const id of ["run-facts", "run-downloads"]) $(id).replaceChildren();
  try {
    const run = await api("GET", `/runs/${enc(uid)}`);
    $("run-uid").textContent = run.uid;
    $("run-facts").replaceChildren(...kv([
      ["plan", run.plan_name],
      ["experiment", run.experiment_id ? expLink(run.experiment_id) : ""],
      ["submitter", run.submitter], ["lab", run.lab], ["scan id", run.scan_id],
      ["started", stamp(run.time)], ["ended", stamp(run.stop_time)],
      ["exit", run.exit_status], ["reason", run.reason], ["events", String(run.num_events)],
      ["samples", (run.sample_ids || []).join(", ")], ["complete", run.complete ? "yes" : "no"],
      ["content hash", run.content_hash ? el("code", {}, run.content_hash) : ""],
    ]));
    kvRows($("run-start"), run.start);
    kvRows($("run-stop"), run.stop);
    runPlot = new RunPlot($("run-plot"), run.uid);
    renderDownloads(run);
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  }
}

// Every stream in JSON and CSV, each array key of it in CSV, the whole run in HDF5.
async function renderDownloads(run) {
  const base = `/runs/${enc(run.uid)}/data`;
  const stem = `run-${run.uid.slice(0, 8)}`; // as the gateway names its exports
  const link = (label, query, file) => el("a", { href: "#", class: "download",
    "data-url": `${base}?${query}`, "data-file": file }, label);
  const items = [el("li", { "data-stream": "*" }, "whole run: ",
    link("HDF5", "format=hdf5", `${stem}.h5`))];
  for (const stream of run.streams.length ? run.streams : ["primary"]) {
    const q = `stream=${enc(stream)}`;
    const li = el("li", { "data-stream": stream }, `${stream}: `,
      link("CSV", `format=csv&${q}`, `${stem}.${stream}.csv`), " · ",
      link("JSON", `format=json&${q}`, `${stem}.${stream}.json`));
    items.push(li);
    optional(`${base}?format=json&${q}`).then((record) => {
      const keys = Object.entries((record && record.data_keys) || {})
        .filter(([, k]) => (k.shape || []).length).map(([name]) => name);
      for (const key of keys) {
        li.append(" · ", link(`${key} CSV`, `format=csv&${q}&key=${enc(key)}`,
          `${stem}.${stream}.${key}.csv`));
      }
    });
  }
  $("run-downloads").replaceChildren(...items);
}

// A download through fetch (the token goes in a header, which a plain link cannot send).
async function onDownload(event) {
  const a = event.target.closest("a.download");
  if (!a) return;
  event.preventDefault();
  try {
    const response = await fetch(API + a.dataset.url,
      { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) throw await errorOf(response);
    const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await response.blob());
    const save = el("a", { href: url, download: named ? named[1] : a.dataset.file });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(e.message);
  }
}

// -- the audit log ---------------------------------------------------------------------------
async function openAudit() {
  showView("audit-view");
  $("audit-actions").replaceChildren(...AUDIT_ACTIONS.map((a) => el("option", { value: a })));
  await loadAudit();
}

async function loadAudit() {
  const query = new URLSearchParams({ lab: state.lab, limit: "200" });
  for (const [key, id] of [["actor", "audit-actor"], ["action", "audit-action"],
    ["target", "audit-target"]]) {
    const v = $(id).value.trim();
    if (v) query.set(key, v);
  }
  const since = $("audit-since").value;
  if (since) query.set("since", String(new Date(since).getTime() / 1000));
  try {
    const entries = await api("GET", `/audit?${query}`);
    $("audit").tBodies[0].replaceChildren(...entries.map((e) => el("tr",
      { "data-seq": String(e.seq), "data-action": e.action, "data-status": String(e.status) },
      el("td", {}, stamp(e.time)), el("td", {}, e.actor), el("td", {}, e.role),
      el("td", {}, e.action),
      el("td", {}, e.action.startsWith("experiment.") && e.target ? expLink(e.target) : e.target),
      el("td", {}, e.status >= 400 ? badge(String(e.status), "failed") : String(e.status)),
      el("td", { class: "note", title: JSON.stringify(e.detail) }, paramsText(e.detail)))));
    $("audit-view").dataset.loaded = query.toString();
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  }
}

function wirePages() {
  wireForm();
  window.addEventListener("hashchange", route);
  $("exp-actions").addEventListener("click", onExpAction);
  $("exp-question").addEventListener("click", onAnswer);
  $("run-downloads").addEventListener("click", onDownload);
  $("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit();
  });
}
