"""Soak: many experiments on the simulated lab while faults are injected for real.

It starts its own Prefect server (SQLite, temporary), a stream proxy and a ``remotelab worker``
process on the shipped simulated lab (fast clock, run store on), submits ``--n`` experiments
(``soak_measure``: a few readings; ``--instrument-faults`` of them with an instrument fault),
and while the worker drains the queue injects, at random moments, one of: the worker
SIGKILLed (and started again), Prefect SIGKILLed (and started again on its database), the
stream proxy SIGKILLed (and started again). Then it checks every experiment against the run
store and prints:

- submitted / completed / failed / cancelled / crashed, **lost** (not ended, or gone) and
  **mislabelled** (the queue's outcome disagrees with the stored runs: completed without a
  successful run, crashed or failed with a run that stopped with success…) — both must be 0;
- documents expected (the readings of every completed experiment) vs stored;
- the outbox's lag: from the stop document to the final state in Prefect, p50 / p99 / max;
- the memory (RSS) of the last worker process started: once it serves, and at the end.

    python benchmarks/soak.py [--n 500] [--faults 12] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks" / "support"))  # soak_plans

from remotelab.data import RunStore  # noqa: E402
from remotelab.lab import load_lab, shipped_lab_text  # noqa: E402
from remotelab.queue import ExperimentQueue, ExperimentState, PrefectServer  # noqa: E402
from remotelab.queue.server import free_port  # noqa: E402

DETECTORS = ["thermometer", "balance", "ph_meter"]
FAULTS = ("worker", "prefect", "proxy")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def rss_mib(pid: int) -> float:
    """A process's resident memory (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Site:
    """The processes of one lab: Prefect, the stream proxy, the worker."""

    def __init__(self, tmp: Path, lab_file: Path):
        self.tmp = tmp
        self.lab_file = lab_file
        self.prefect = PrefectServer(tmp / "prefect")
        self.ports = free_port(), free_port()
        self.proxy: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.workers_started = 0
        # the site's keys (submission signing, CURVE) shared by this process and its children
        os.environ.setdefault("REMOTELAB_KEYS_DIR", str(tmp / "data" / "keys"))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), str(ROOT / "benchmarks" / "support")]
            ),
            "PREFECT_API_URL": self.prefect.api_url,
            "REMOTELAB_DATA_DIR": str(self.tmp / "data"),
            "REMOTELAB_RETRY_CAP": "2",
        }

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        with open(self.tmp / log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "remotelab", *args],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_proxy(self) -> None:
        i, o = self.ports
        self.proxy = self._spawn(
            ["stream-proxy", "--in", f"tcp://127.0.0.1:{i}", "--out", f"tcp://127.0.0.1:{o}"],
            "proxy.log",
        )

    def start_worker(self) -> None:
        self.workers_started += 1
        self.worker = self._spawn(
            [
                "worker",
                "--lab",
                str(self.lab_file),
                "--speed",
                "500",
                "--poll",
                "0.5",
                "--stream",
                f"tcp://127.0.0.1:{self.ports[0]}",
            ],
            "worker.log",
        )

    @staticmethod
    def kill(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    def kill_prefect(self) -> None:
        proc = self.prefect.proc
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            self.prefect.proc = None

    def stop(self) -> None:
        self.kill(self.worker)
        self.kill(self.proxy)
        self.prefect.stop()


def write_lab(tmp: Path) -> Path:
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"soak{uuid.uuid4().hex[:6]}"
    data["concurrency"] = 3
    data.setdefault("plans", {})["modules"] = ["soak_plans"]
    data["unattended"] = {"hold_after_failures": 0}  # instrument faults are expected here
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="experiments (default 500)")
    parser.add_argument("--faults", type=int, default=12, help="process faults injected")
    parser.add_argument("--instrument-faults", type=float, default=0.05, help="share faulty")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outage", type=float, default=8.0, help="seconds each kill lasts")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="remotelab-soak-"))
    os.environ["REMOTELAB_KEYS_DIR"] = str(tmp / "keys")  # its processes share CURVE keys
    lab_file = write_lab(tmp)
    site = Site(tmp, lab_file)
    lab = load_lab(lab_file, speed=500)
    injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
    outages: list[tuple[float, float]] = []  # Prefect down: (from, to), wall clock
    try:
        site.prefect.start()
        site.start_proxy()
        queue = ExperimentQueue(lab, api_url=site.prefect.api_url)
        queue.ensure()
        site.start_worker()
        until(lambda: queue.workers(fresh=True), 120, "the worker")
        exps: dict[str, dict[str, Any]] = {}
        for _ in range(args.n):
            params = {
                "detectors": [rng.choice(DETECTORS)],
                "num": rng.randint(2, 6),
                "fault": rng.random() < args.instrument_faults,
            }
            exps[queue.submit("soak_measure", params, submitter="soak").id] = params
        until(lambda: queue.get(next(iter(exps))).state.finished, 120, "the first to end")
        rss_start = rss_mib(site.worker.pid) if site.worker else 0.0
        t0 = time.monotonic()
        for _ in range(args.faults):
            time.sleep(rng.uniform(2.0, 8.0))
            kind = rng.choice(FAULTS)
            injected[kind] += 1
            print(f"  {time.monotonic() - t0:6.1f} s  fault: {kind} SIGKILLed", flush=True)
            if kind == "worker":
                site.kill(site.worker)
                time.sleep(rng.uniform(0.5, 2.0))
                site.start_worker()
                pid = site.worker.pid if site.worker else 0
                until(
                    lambda p=pid: any(w["pid"] == p for w in queue.workers(fresh=True)),
                    120,
                    "the restarted worker",
                )
                rss_start = rss_mib(pid)  # the last worker's, from its start
            elif kind == "prefect":
                down = time.time()
                site.kill_prefect()
                time.sleep(args.outage)
                site.prefect.start()
                outages.append((down, time.time()))
            else:
                site.kill(site.proxy)
                time.sleep(rng.uniform(0.5, args.outage))
                site.start_proxy()
        until(
            lambda: all(queue.get(i).state.finished for i in exps) or None,
            max(600.0, args.n * 2.0),
            "every experiment to end",
        )
        rss_end = rss_mib(site.worker.pid) if site.worker and site.worker.poll() is None else 0.0
        report(queue, exps, tmp, injected, site, rss_start, rss_end, time.monotonic() - t0, outages)
    finally:
        site.stop()
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    queue: ExperimentQueue,
    exps: dict[str, dict[str, Any]],
    tmp: Path,
    injected: dict[str, int],
    site: Site,
    rss_start: float,
    rss_end: float,
    wall: float,
    outages: list[tuple[float, float]],
) -> None:
    counts = dict.fromkeys(
        ["completed", "failed", "cancelled", "crashed", "lost", "mislabelled"], 0
    )
    expected_docs = stored_docs = 0
    lags: list[float] = []
    calm: list[float] = []  # of experiments that ended with Prefect up
    bad: list[str] = []
    with RunStore(tmp / "data" / "runs.sqlite", plots=False) as store:
        for exp_id, params in exps.items():
            try:
                exp = queue.get(exp_id)
            except Exception:
                counts["lost"] += 1
                continue
            if not exp.state.finished:
                counts["lost"] += 1
                continue
            counts[exp.state.value] = counts.get(exp.state.value, 0) + 1
            runs = store.runs(experiment_id=exp_id)
            statuses = [r.exit_status for r in runs]
            ok = {
                ExperimentState.completed: bool(runs) and all(s == "success" for s in statuses),
                ExperimentState.failed: "success" not in statuses,
                ExperimentState.cancelled: "success" not in statuses,
                ExperimentState.crashed: "success" not in statuses,
            }.get(exp.state, False)
            if exp.state == ExperimentState.completed and params["fault"]:
                ok = False  # an instrument fault cannot complete
            if not ok:
                counts["mislabelled"] += 1
                bad.append(f"{exp_id} {exp.state.value} runs={statuses}")
            if exp.state == ExperimentState.completed:
                expected_docs += params["num"]
                stored_docs += sum(r.num_events or 0 for r in runs)
                if exp.ended is not None and runs and runs[-1].stop_time is not None:
                    stop = runs[-1].stop_time
                    lags.append(exp.ended.timestamp() - stop)
                    if not any(a - 1.0 <= stop <= b for a, b in outages):
                        calm.append(exp.ended.timestamp() - stop)
    print()
    print(f"soak: {len(exps)} experiments in {wall:.0f} s, faults injected {injected}")
    print(f"  worker processes started: {site.workers_started}")
    print(f"  submitted   {len(exps)}")
    for key in ("completed", "failed", "cancelled", "crashed"):
        print(f"  {key:<11} {counts[key]}")
    print(f"  lost        {counts['lost']}   (must be 0)")
    print(f"  mislabelled {counts['mislabelled']}   (must be 0)")
    for line in bad[:10]:
        print(f"    {line}")
    print(
        f"  documents (events of completed experiments): expected {expected_docs}, "
        f"stored {stored_docs}"
    )
    print(
        f"  outbox lag (stop document → final state in Prefect): p50 {pct(lags, 0.5):.3f} s, "
        f"p99 {pct(lags, 0.99):.3f} s, max {max(lags, default=0.0):.3f} s; of those ending "
        f"with Prefect up: p99 {pct(calm, 0.99):.3f} s, max {max(calm, default=0.0):.3f} s"
    )
    print(
        f"  worker RSS: {rss_start:.0f} MiB when the last worker had started, "
        f"{rss_end:.0f} MiB at the end"
    )


if __name__ == "__main__":
    main()
