// remotelab dashboard: plots of a run's main signals with uPlot (vendor/uPlot.iife.min.js).
// A line per scalar reading against the event number; for an array reading (a spectrum) a
// second plot of the latest array. A plot starts from the run's stored events (GET /runs/{uid}/data) and, on the
// lab view, grows with the live stream's events of the run's primary stream.
"use strict";

const COLORS = ["#1d5fbf", "#b42318", "#1f7a4d", "#a15c00"];
const MAX_LINES = 4;
const DRAW_MS = 200;
const HEIGHT = 200;
// descriptor uid -> {run, name, data_keys}, from the live stream (replayed history included)
const descriptors = new Map();
// run uid -> its live plot on the lab view
const plots = new Map();

const numeric = (key) => ["number", "integer"].includes(key.dtype);

class RunPlot {
  constructor(box, uid) {
    this.box = box;
    this.uid = uid;
    this.points = new Map(); // seq_num -> its scalar values
    this.pending = [];
    this.scalars = null; // the scalar keys drawn as lines (null: not known yet)
    this.array = null; // the array key drawn as the latest spectrum, if any
    this.latest = null; // {seq, ys, xs} of that spectrum
    this.spectra = 0;
    this.ready = false;
    this.charts = {}; // "lines" / "spectrum" -> its uPlot
    this.timer = null;
    box.dataset.run = uid;
    box.dataset.points = "0";
    box.dataset.spectra = "0";
    this.note = el("p", { class: "muted plot-note" }, "loading the plot …");
    this.linesBox = el("div", { class: "plot-lines" });
    this.spectrumBox = el("div", { class: "plot-spectrum" });
    box.replaceChildren(this.note, this.linesBox, this.spectrumBox);
    // drawn at the width the page gives it, also once a hidden view is shown
    this.resize = new ResizeObserver(() => {
      const width = this.box.clientWidth;
      if (!width) return;
      for (const chart of Object.values(this.charts)) chart.setSize({ width, height: HEIGHT });
    });
    this.resize.observe(box);
    this.load();
  }

  // The events stored so far (a run just started may have none yet: tried a few times, the
  // live events meanwhile kept).
  async load() {
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const record = await api("GET", `/runs/${enc(this.uid)}/data?format=json`);
        this.useKeys(record.data_keys || {});
        for (const ev of record.events || []) this.add(ev.seq_num, ev.data);
        break;
      } catch (_) {
        await sleep(1000);
      }
    }
    this.ready = true;
    for (const [seq, data] of this.pending) this.add(seq, data);
    this.pending = [];
    this.draw();
  }

  // Which signals to draw: the first scalar numbers as lines; the first 1-D array (a
  // spectrum) as its latest value, against a wavelength array if the events carry one.
  useKeys(dataKeys) {
    if (this.scalars !== null) return;
    const entries = Object.entries(dataKeys);
    this.scalars = entries.filter(([, k]) => numeric(k) && !(k.shape || []).length)
      .map(([name]) => name).slice(0, MAX_LINES);
    const arrays = entries.filter(([, k]) => (k.shape || []).length === 1).map(([n]) => n);
    this.array = arrays.find((n) => !/wavelength/i.test(n)) || null;
    this.axis = arrays.find((n) => /wavelength/i.test(n)) || null;
    this.box.dataset.keys = [...this.scalars, ...(this.array ? [this.array] : [])].join(",");
  }

  event(seq, data, dataKeys) {
    if (dataKeys) this.useKeys(dataKeys);
    if (!this.ready) this.pending.push([seq, data]);
    else {
      this.add(seq, data);
      this.soon();
    }
  }

  add(seq, data) {
    if (this.scalars === null || !data) return;
    if (!this.points.has(seq)) {
      const values = {};
      for (const k of this.scalars) values[k] = typeof data[k] === "number" ? data[k] : null;
      this.points.set(seq, values);
      if (this.array && Array.isArray(data[this.array])) this.spectra += 1;
    }
    const ys = this.array && data[this.array];
    if (Array.isArray(ys) && (!this.latest || seq >= this.latest.seq)) {
      this.latest = { seq, ys, xs: Array.isArray(data[this.axis]) ? data[this.axis] : null };
    }
  }

  soon() {
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.draw();
      }, DRAW_MS);
    }
  }

  lines() {
    const seqs = [...this.points.keys()].sort((a, b) => a - b);
    return [seqs, ...this.scalars.map((k) => seqs.map((s) => this.points.get(s)[k]))];
  }

  spectrum() {
    const ys = this.latest.ys.map(Number);
    return [this.latest.xs ? this.latest.xs.map(Number) : ys.map((_, i) => i), ys];
  }

  draw() {
    this.box.dataset.points = String(this.points.size);
    this.box.dataset.spectra = String(this.spectra);
    const none = this.scalars !== null && !this.scalars.length && !this.array;
    this.note.hidden = this.points.size > 0;
    this.note.textContent = none ? "no numeric signal to plot" : "no data yet";
    if (this.scalars && this.scalars.length && this.points.size) {
      this.chart("lines", this.linesBox, this.lines(), "event",
        this.scalars.map((k) => ({ label: k })));
    }
    if (this.latest) {
      this.chart("spectrum", this.spectrumBox, this.spectrum(), this.axis || "index",
        [{ label: `${this.array} (latest)` }]);
      this.spectrumBox.dataset.seq = String(this.latest.seq);
    }
  }

  chart(kind, where, data, xLabel, series) {
    const chart = this.charts[kind];
    if (chart) {
      chart.setData(data);
      return;
    }
    const opts = {
      width: this.box.clientWidth || 600,
      height: HEIGHT,
      scales: { x: { time: false } },
      legend: { live: false },
      series: [{ label: xLabel }, ...series.map((s, i) => ({ ...s,
        stroke: COLORS[(kind === "spectrum" ? i + 1 : i) % COLORS.length], width: 1.5,
        spanGaps: true }))],
      axes: [{ label: xLabel }, { size: 64 }],
    };
    this.charts[kind] = new uPlot(opts, data, where);
  }

  destroy() {
    clearTimeout(this.timer);
    this.resize.disconnect();
    for (const chart of Object.values(this.charts)) chart.destroy();
    this.charts = {};
  }
}

// The live plot of a running experiment's run in its card (made once per run).
function plotRun(box, uid) {
  if (box.dataset.run === uid && plots.has(uid)) return;
  if (plots.has(uid)) plots.get(uid).destroy();
  plots.set(uid, new RunPlot(box, uid));
}

function dropPlots() {
  for (const p of plots.values()) p.destroy();
  plots.clear();
  descriptors.clear();
}

// A live document for the plots: descriptors say which run and stream events belong to.
function livePlots(name, doc) {
  if (name === "descriptor") {
    descriptors.set(doc.uid, { run: doc.run_start, name: doc.name, data_keys: doc.data_keys });
    return;
  }
  if (name === "stop") {
    for (const [uid, d] of descriptors) if (d.run === doc.run_start) descriptors.delete(uid);
    return;
  }
  if (name !== "event") return;
  const d = descriptors.get(doc.descriptor);
  if (!d || d.name !== "primary") return;
  const plot = plots.get(d.run);
  if (!plot) return;
  if (!plot.box.isConnected) {
    plot.destroy();
    plots.delete(d.run);
    return;
  }
  plot.event(doc.seq_num, doc.data, d.data_keys);
}
