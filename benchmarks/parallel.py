"""Benchmark several experiments at once: one mixed batch, with ``concurrency: 1`` and ``3``.

On the shipped simulated lab (a fast clock), the same batch of experiments spread over three
stations — spectroscopy (``measure_samples``: the arm brings a sample to the spectrometer),
the titration station's pH meter (``measure``) and the heated block (``temperature_ramp``:
heater and thermometer) — runs once with the
lab running one experiment at a time and once with three at a time. Prints, in one run:

- the batch's wall time at each concurrency, and the ratio (throughput gained);
- each instrument's utilisation (time reserved or held for an experiment / wall time);
- the delay from a device being released to the next experiment that waited for it
  starting (its start document), median and p95.

It starts its own Prefect server (SQLite, temporary) unless given ``--api``; the worker runs in
this process, on a thread, so the reservation book can be watched.

    python benchmarks/parallel.py [--per-station 10] [--speed 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from remotelab.lab import load_lab, shipped_lab_text  # noqa: E402
from remotelab.queue import ExperimentQueue, ExperimentState, PrefectServer  # noqa: E402
from remotelab.worker import LabWorker  # noqa: E402

#: one experiment of each station, submitted in turn (each about as long as the others)
STATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "spectroscopy": (
        "measure_samples",
        {
            "samples": ["S001", "S002", "S003", "S004", "S005"],
            "station": "spectrometer",
            "detectors": ["spectrometer"],
            "readings": 5,
        },
    ),
    "titration": ("measure", {"detectors": ["ph_meter"], "num": 50}),
    "reactor": (
        "temperature_ramp",
        {"setpoints": [27], "detectors": ["thermometer"], "readings": 3},
    ),
}
INSTRUMENTS = ["spectrometer", "arm", "ph_meter", "heater", "thermometer"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Watch:
    """Start and stop documents by experiment, and when each device was freed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.start: dict[str, tuple[float, list[str]]] = {}
        self.stop: dict[str, float] = {}
        self.run_exp: dict[str, str] = {}
        self.released: list[tuple[float, str]] = []

    def document(self, name: str, doc: dict[str, Any]) -> None:
        with self.lock:
            if name == "start":
                exp = doc.get("experiment_id", "")
                self.run_exp[doc["uid"]] = exp
                used = [*doc.get("devices", []), *doc.get("shared_devices", [])]
                devices = list(dict.fromkeys(used))
                self.start.setdefault(exp, (doc["time"], devices))
            elif name == "stop":
                self.stop[self.run_exp.get(doc["run_start"], "")] = doc["time"]

    def freed(self, resources: list[str]) -> None:
        now = time.time()
        with self.lock:
            self.released.extend((now, r) for r in resources)


def run_batch(
    api: str, work: Path, concurrency: int, per_station: int, speed: float
) -> dict[str, Any]:
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"par{concurrency}-{uuid.uuid4().hex[:6]}"
    data["concurrency"] = concurrency
    lab_file = work / f"{data['name']}.yaml"
    lab_file.write_text(yaml.safe_dump(data))
    lab = load_lab(lab_file, speed=speed)
    watch = Watch()
    worker = LabWorker(lab, api_url=api, poll_interval=0.5, subscribers=[watch.document])
    worker.book.on_release.append(watch.freed)
    q = ExperimentQueue(lab, api_url=api)
    q.ensure()
    worker.start()
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        warm = q.submit("measure", {"detectors": ["thermometer"], "num": 1}, submitter="bench")
        q.wait_for(warm.id, timeout=120)
        q.hold()
        batch = []
        for _ in range(per_station):
            for station, (plan, params) in STATIONS.items():
                batch.append((station, q.submit(plan, params, submitter="bench").id))
        queued_at = time.time()
        t0 = time.perf_counter()
        q.release()
        states = [q.wait_for(exp_id, timeout=1800).state for _, exp_id in batch]
        wall = time.perf_counter() - t0
    finally:
        worker.shutdown("benchmark over")
        thread.join(120)
        worker.close()
        q.close()
        lab.close()
    ids = {exp_id for _, exp_id in batch}
    end = queued_at + wall
    busy: dict[str, float] = defaultdict(float)
    for exp_id in ids:
        start, devices = watch.start[exp_id]
        for device in devices:
            busy[device] += watch.stop[exp_id] - start
    delays = []
    for exp_id in ids:  # from the latest release of one of its devices to its start
        start, devices = watch.start[exp_id]
        before = [t for t, r in watch.released if r in devices and queued_at <= t <= start]
        if before:
            delays.append(start - max(before))
    spans = sorted((watch.start[e][0], watch.stop[e]) for e in ids)
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans) if b[0] > a[1]]
    return {
        "gaps": gaps,
        "runs": [watch.stop[e] - watch.start[e][0] for e in ids],
        "station_runs": {
            station: sum(watch.stop[e] - watch.start[e][0] for st, e in batch if st == station)
            for station in STATIONS
        },
        "wall": wall,
        "completed": sum(s == ExperimentState.completed for s in states),
        "utilisation": {d: busy.get(d, 0.0) / (end - queued_at) for d in INSTRUMENTS},
        "delays": delays,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-station", type=int, default=10, help="experiments per station")
    ap.add_argument("--speed", type=float, default=200, help="simulated clock speed")
    ap.add_argument("--api", help="use this Prefect API instead of starting one")
    args = ap.parse_args()
    if args.per_station < 1:
        ap.error("--per-station must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="remotelab-bench-"))
    os.environ["REMOTELAB_KEYS_DIR"] = str(work / "keys")  # its processes share CURVE keys
    server = None
    if args.api is None:
        server = PrefectServer(work / "prefect").start()
        api = server.api_url
    else:
        api = args.api
    try:
        results = {c: run_batch(api, work, c, args.per_station, args.speed) for c in (1, 3)}
    finally:
        if server is not None:
            server.stop()
    n = args.per_station * len(STATIONS)
    one, three = results[1], results[3]
    print(f"remotelab parallel stations, {n} experiments over {len(STATIONS)} stations:")
    for c, r in results.items():
        print(f"  concurrency {c}: wall {r['wall']:.1f} s, {r['completed']}/{n} completed")
    print(f"  throughput ratio (concurrency 3 / 1): {one['wall'] / three['wall']:.2f}x")
    for c, r in results.items():
        shown = ", ".join(f"{d} {u:.0%}" for d, u in r["utilisation"].items())
        print(f"  utilisation at concurrency {c} (the arm: runs that use it): {shown}")
    if one["gaps"]:
        print(
            "  between one experiment's end and the next one's start at concurrency 1: "
            f"median {statistics.median(one['gaps']) * 1000:.0f} ms,"
            f" p95 {pct(one['gaps'], 95) * 1000:.0f} ms, max {max(one['gaps']) * 1000:.0f} ms"
        )
    for c, r in results.items():
        shown = ", ".join(f"{st} {t:.1f} s" for st, t in r["station_runs"].items())
        print(f"  time the experiments of each station ran, at concurrency {c}: {shown}")
    for c, r in results.items():
        runs = r["runs"]
        print(
            f"  an experiment's run (start to stop document) at concurrency {c}: "
            f"median {statistics.median(runs):.2f} s, max {max(runs):.2f} s"
        )
    delays = three["delays"]
    if delays:
        print(
            f"  release-to-start at concurrency 3: "
            f"median {statistics.median(delays) * 1000:.0f} ms,"
            f" p95 {pct(delays, 95) * 1000:.0f} ms ({len(delays)} starts after a release)"
        )
    else:
        print("  release-to-start at concurrency 3: no experiment waited for a device")


if __name__ == "__main__":
    main()
