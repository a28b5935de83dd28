// remotelab dashboard: plots of a run's main signals with uPlot (vendor/uPlot.iife.min.js).
// A line per scalar reading against the event number; for array readings (a spectrum) the
// latest array. A plot starts from the run's stored events (GET /runs/{uid}/data) and, on the
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
    this.points = new Map(); // seq_num -> data
    this.pending = [];
    this.keys = null;
    this.mode = null;
    this.latest = null; // spectrum mode: the latest array, and its axis
    this.spectra = 0;
    this.ready = false;
    this.plot = null;
    this.timer = null;
    box.dataset.run = uid;
    box.dataset.points = "0";
    box.replaceChildren(el("p", { class: "muted plot-note" }, "loading the plot …"));
    // drawn at the width the page gives it, also once a hidden view is shown
    this.resize = new ResizeObserver(() => {
      if (this.plot && this.box.clientWidth) {
        this.plot.setSize({ width: this.box.clientWidth, height: HEIGHT });
      }
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

  // Which signals to draw: the first scalar numbers, else the first 1-D array (a spectrum).
  useKeys(dataKeys) {
    if (this.keys !== null) return;
    const entries = Object.entries(dataKeys);
    const scalars = entries.filter(([, k]) => numeric(k) && !(k.shape || []).length)
      .map(([name]) => name);
    const arrays = entries.filter(([, k]) => (k.shape || []).length === 1).map(([n]) => n);
    const spectrum = arrays.find((n) => !/wavelength/i.test(n));
    if (spectrum && !scalars.length) {
      this.mode = "spectrum";
      this.keys = [spectrum];
      this.axis = arrays.find((n) => /wavelength/i.test(n)) || null;
    } else {
      this.mode = "lines";
      this.keys = scalars.slice(0, MAX_LINES);
    }
    this.box.dataset.mode = this.mode;
    this.box.dataset.keys = this.keys.join(",");
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
    if (this.keys === null || !data) return;
    if (this.mode === "spectrum") {
      const ys = data[this.keys[0]];
      if (!Array.isArray(ys)) return;
      if (!this.points.has(seq)) this.spectra += 1;
      this.points.set(seq, true);
      if (!this.latest || seq >= this.latest.seq) {
        this.latest = { seq, ys, xs: Array.isArray(data[this.axis]) ? data[this.axis] : null };
      }
    } else {
      this.points.set(seq, data);
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

  series() {
    if (this.mode === "spectrum") {
      if (!this.latest) return null;
      const ys = this.latest.ys.map(Number);
      const xs = this.latest.xs ? this.latest.xs.map(Number) : ys.map((_, i) => i);
      return [xs, ys];
    }
    const seqs = [...this.points.keys()].sort((a, b) => a - b);
    const lines = this.keys.map((k) => seqs.map((s) => {
      const v = this.points.get(s)[k];
      return typeof v === "number" ? v : null;
    }));
    return [seqs, ...lines];
  }

  draw() {
    const data = this.keys && this.keys.length ? this.series() : null;
    const count = this.mode === "spectrum" ? this.spectra : this.points.size;
    this.box.dataset.points = String(count);
    if (!data || !data[0].length) {
      const note = this.keys && !this.keys.length ? "no numeric signal to plot" : "no data yet";
      this.box.replaceChildren(el("p", { class: "muted plot-note" }, note));
      this.plot = null;
      return;
    }
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const width = this.box.clientWidth || 600;
    const spectrum = this.mode === "spectrum";
    const opts = {
      width,
      height: HEIGHT,
      scales: { x: { time: false } },
      legend: { live: false },
      series: [{ label: spectrum ? (this.axis || "index") : "event" },
        ...this.keys.map((k, i) => ({ label: spectrum ? `${k} (latest)` : k,
          stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
      axes: [{ label: spectrum ? (this.axis || "index") : "event" }, { size: 64 }],
    };
    this.box.replaceChildren();
    this.plot = new uPlot(opts, data, this.box);
  }

  destroy() {
    clearTimeout(this.timer);
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
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
