// remotelab dashboard: the submit form, made from a plan's JSON Schema (GET .../plans), and
// the same form to edit an experiment that has not started (PATCH .../experiments/{id}).
// Devices, samples and wells are choices from the lab (the plan's "choices"), enums are
// selects, units and limits are shown, defaults filled. The form does not judge the values:
// the gateway does, and its 422 messages are shown beside the field each names.
"use strict";

const form = { plans: [], devices: {}, plan: null, editing: null, fields: [] };

// A schema property without its "or null" (pydantic's Optional): the property and whether
// null is allowed.
function unwrap(raw) {
  if (!Array.isArray(raw.anyOf)) return { prop: raw, nullable: false };
  const real = raw.anyOf.filter((p) => p.type !== "null");
  const { anyOf, ...rest } = raw;
  return { prop: real.length === 1 ? { ...real[0], ...rest } : rest, nullable: real.length < raw.anyOf.length };
}

function limitsText(prop) {
  const items = prop.type === "array" && prop.items ? prop.items : prop;
  const parts = [];
  const lo = items.minimum ?? items.exclusiveMinimum;
  const hi = items.maximum ?? items.exclusiveMaximum;
  if (lo !== undefined && hi !== undefined) parts.push(`${lo} – ${hi}`);
  else if (items.exclusiveMinimum !== undefined) parts.push(`> ${items.exclusiveMinimum}`);
  else if (lo !== undefined) parts.push(`≥ ${lo}`);
  else if (hi !== undefined) parts.push(`≤ ${hi}`);
  if (prop.type === "array" && (prop.minItems > 1 || prop.maxItems)) {
    parts.push(`${prop.minItems || 0}–${prop.maxItems || "…"} items`);
  }
  return parts.join("; ");
}

function deviceLimits(name) {
  const d = form.devices[name];
  if (!d || !d.limits || !Object.keys(d.limits).length) return "";
  return "limits of " + name + ": " + Object.entries(d.limits)
    .map(([k, [lo, hi]]) => `${k} ${lo} – ${hi}`).join(", ");
}

function option(value, label, selected) {
  return el("option", { value, selected }, label);
}

// One field of the form: its node, and how to read its value (undefined: not given).
function makeField(plan, name, raw, required) {
  const { prop, nullable } = unwrap(raw);
  const choices = (plan.choices || {})[name];
  const initial = form.editing && name in form.editing.params ? form.editing.params[name]
    : raw.default;
  const optional = !required;
  const unit = raw.unit || prop.unit;
  const hint = el("span", { class: "hint" });
  let input;
  let read;
  if (choices && prop.type === "array") {
    const chosen = new Set(Array.isArray(initial) ? initial : []);
    const boxes = choices.map((c) => el("label", { class: "choice" },
      el("input", { type: "checkbox", value: c, checked: chosen.has(c), name }), ` ${c}`));
    input = el("span", { class: "choices" }, ...boxes);
    read = () => {
      const picked = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
      return picked.length ? picked : undefined;
    };
    if (nullable) hint.textContent = "none ticked: the plan's default";
  } else if (choices || prop.enum) {
    const values = choices || prop.enum;
    input = el("select", { name },
      optional ? option("", initial == null ? "— default —" : "— none —", initial == null) : null,
      !optional && initial == null ? option("", "— choose —", true) : null,
      ...values.map((v) => option(String(v), String(v), v === initial)));
    read = () => (input.value === "" ? undefined : values.find((v) => String(v) === input.value));
    const show = () => { hint.textContent = choices ? deviceLimits(input.value) : ""; };
    input.addEventListener("change", show);
    show();
  } else if (prop.type === "boolean") {
    input = el("input", { type: "checkbox", name, checked: initial === true });
    read = () => input.checked;
  } else if (prop.type === "integer" || prop.type === "number") {
    input = el("input", { type: "number", name, step: prop.type === "integer" ? "1" : "any",
      value: initial == null ? "" : String(initial) });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (prop.type === "array" && prop.items && prop.items.type !== "object") {
    const numbers = ["number", "integer"].includes(prop.items.type);
    input = el("input", { type: "text", name, placeholder: "a, b, c",
      value: Array.isArray(initial) ? initial.join(", ") : "" });
    read = () => {
      const items = input.value.split(",").map((v) => v.trim()).filter((v) => v !== "");
      if (!items.length) return undefined;
      return items.map((v) => (numbers && v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v));
    };
  } else if (prop.type === "string") {
    input = el("input", { type: "text", name, value: initial == null ? "" : String(initial) });
    read = () => (input.value === "" ? undefined : input.value);
  } else {
    input = el("textarea", { name, rows: 2,
      value: initial === undefined ? "" : JSON.stringify(initial) });
    read = () => {
      if (input.value.trim() === "") return undefined;
      try { return JSON.parse(input.value); } catch (_) { return input.value; }
    };
  }
  const limits = limitsText(prop);
  const node = el("div", { class: "field", "data-param": name },
    el("label", { class: "field-name" }, raw.title || name, required ? " *" : "",
      unit ? el("span", { class: "unit" }, ` [${unit}]`) : null),
    input,
    limits ? el("span", { class: "limits" }, `limits: ${limits}${unit ? " " + unit : ""}`) : null,
    hint,
    raw.description ? el("div", { class: "muted about" }, raw.description) : null,
    el("div", { class: "field-error", role: "alert", hidden: true }));
  return { name, node, read };
}

function buildFields(planName) {
  const plan = form.plans.find((p) => p.name === planName);
  form.plan = plan;
  $("form-plan-about").textContent = plan ? plan.description +
    (plan.needs_approval && !form.editing ? " — your submission waits for a manager's approval."
      : "") : "";
  const schema = (plan && plan.schema) || {};
  const required = schema.required || [];
  form.fields = Object.entries(schema.properties || {})
    .map(([name, raw]) => makeField(plan, name, raw, required.includes(name)));
  $("form-fields").replaceChildren(...form.fields.map((f) => f.node));
  clearFormErrors();
}

function clearFormErrors() {
  for (const node of document.querySelectorAll("#form-fields .field")) {
    node.classList.remove("invalid");
    const err = node.querySelector(".field-error");
    err.hidden = true;
    err.textContent = "";
  }
  $("form-error").hidden = true;
  $("form-error").textContent = "";
}

// The gateway's 422: each message beside the field it names, the rest above the button.
function showFormErrors(error) {
  const rest = [];
  for (const e of error.errors.length ? error.errors : [{ param: null, message: error.detail }]) {
    const path = String(e.param || "").split(".").filter((p) => p !== "params");
    const node = path.length && [...document.querySelectorAll("#form-fields .field")]
      .find((n) => n.dataset.param === path[0]);
    if (node) {
      node.classList.add("invalid");
      const err = node.querySelector(".field-error");
      err.textContent = err.textContent ? `${err.textContent}; ${e.message}` : e.message;
      err.hidden = false;
    } else {
      rest.push(e.param ? `${e.param}: ${e.message}` : e.message);
    }
  }
  $("form-error").textContent = rest.join("; ");
  $("form-error").hidden = !rest.length;
}

async function openForm(editId) {
  showView("submit-view");
  $("form-fields").replaceChildren();
  clearFormErrors();
  const base = `/labs/${enc(state.lab)}`;
  try {
    const [plans, devices, exp] = await Promise.all([
      api("GET", `${base}/plans`),
      api("GET", `${base}/devices`),
      editId ? api("GET", `${base}/experiments/${enc(editId)}`) : null,
    ]);
    form.editing = exp;
    form.devices = Object.fromEntries(devices.map((d) => [d.name, d]));
    form.plans = plans.filter((p) => p.allowed || (exp && p.name === exp.plan));
    $("form-title").textContent = exp ? `Edit experiment ${short(exp.id)} (${exp.plan})`
      : "Submit an experiment";
    $("form-submit").textContent = exp ? "Save the changes" : "Submit";
    $("form-cancel").href = exp ? `#/experiments/${enc(exp.id)}` : "#/";
    const picker = $("form-plan");
    picker.replaceChildren(...form.plans.map((p) => option(p.name, p.name, exp && p.name === exp.plan)));
    picker.disabled = !!exp;
    const priorities = atLeast("manager") ? ["normal", "low", "urgent"] : ["normal", "low"];
    $("form-priority").replaceChildren(...priorities.map((p) => option(p, p, false)));
    $("form-priority").closest("label").hidden = !!exp;
    if (!form.plans.length) {
      showFormErrors({ errors: [], detail: "you may submit no plan of this lab" });
      return;
    }
    buildFields(picker.value);
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else showError(e.message);
  }
}

async function onFormSubmit(event) {
  event.preventDefault();
  clearFormErrors();
  const button = $("form-submit");
  const values = {};
  for (const f of form.fields) {
    const v = f.read();
    if (v !== undefined) values[f.name] = v;
  }
  const base = `/labs/${enc(state.lab)}/experiments`;
  button.disabled = true;
  try {
    let exp;
    if (form.editing) {
      const before = form.editing.params;
      const changes = {};
      for (const f of form.fields) {
        if (!(f.name in values)) {
          if (f.name in before) changes[f.name] = null;
        } else if (JSON.stringify(values[f.name]) !== JSON.stringify(before[f.name])) {
          changes[f.name] = values[f.name];
        }
      }
      exp = await api("PATCH", `${base}/${enc(form.editing.id)}`, { params: changes });
    } else {
      exp = await api("POST", base, { plan: $("form-plan").value, params: values,
        priority: $("form-priority").value });
    }
    clearError();
    location.hash = `#/experiments/${enc(exp.id)}`;
  } catch (e) {
    if (e.status === 401) signOut(e.message);
    else if (e.status === 422) showFormErrors(e);
    else showFormErrors({ errors: [], detail: e.message });
  } finally {
    button.disabled = false;
  }
}

function wireForm() {
  $("plan-form").addEventListener("submit", onFormSubmit);
  $("form-plan").addEventListener("change", (event) => buildFields(event.target.value));
}
