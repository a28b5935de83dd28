"""Benchmark remotelab's experiment queue on this machine, in one run.

Prints:
- per-experiment overhead of 50 back-to-back trivial experiments (``measure``, one reading of
  the thermometer): each experiment's cycle (end to end of the previous one, from Prefect's
  timestamps) minus the plan's time on a bare RunEngine — median, p95 and mean;
- submission-to-start latency on an idle lab (submit call to Prefect's start time);
- the same plan on a bare RunEngine, for reference;
- submission p50/p99 while an experiment runs (100 submissions; the lab busy with a long
  ``measure`` of the same thermometer, so they wait), and the same with a killed worker's
  announcement left in Prefect (its control port silent);
- with 1,000 experiments waiting: submission p50/p99, time to list the queue, server errors;
- bluesky-queueserver's per-item overhead beside ours, if given the anchor script
  (``--anchor PATH`` or ``$REMOTELAB_QUEUESERVER_ANCHOR``).

It starts its own Prefect server (SQLite, temporary) unless given ``--api``, and a worker
process (``python -m remotelab worker``) on a simulated lab with a fast clock.

    python benchmarks/queue_overhead.py [--n 50] [--latency 20] [--busy 100] [--backlog 1000]
                                        [--anchor PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bluesky import RunEngine  # noqa: E402

from remotelab.lab import load_lab, shipped_lab_text  # noqa: E402
from remotelab.plans.registry import registry_for  # noqa: E402
from remotelab.queue import ExperimentQueue, ExperimentState, PrefectServer  # noqa: E402
from remotelab.queue.announcement import WorkerAnnouncement  # noqa: E402
from remotelab.queue.server import free_port  # noqa: E402

PLAN, PARAMS = "measure", {"detectors": ["thermometer"], "num": 1}
SPEED = 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def wait_done(q: ExperimentQueue, exp_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not q.get(exp_id).state.finished:
        if time.monotonic() > deadline:
            raise SystemExit(f"experiment {exp_id} did not finish in {timeout} s")
        time.sleep(0.05)


def bare_runengine(lab, n: int) -> list[float]:
    registry = registry_for(lab)
    re = RunEngine({}, context_managers=[])
    times = []
    for _ in range(n):
        plan = registry.build(registry.validate(PLAN, PARAMS, lab=lab), lab, md={})
        t0 = time.perf_counter()
        re(plan)
        times.append(time.perf_counter() - t0)
    return times


def dead_worker(q: ExperimentQueue) -> WorkerAnnouncement:
    """The announcement of a worker of another host that was just killed (its heartbeat
    still fresh, nothing listening on its control port), as the queue would find it."""
    info = WorkerAnnouncement(
        id="killed-elsewhere",
        lab=q.name,
        host="another-host",
        pid=1,
        control=f"tcp://127.0.0.1:{free_port()}",
        heartbeat=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),  # fresh throughout
    )
    q.prefect.announce(info, create=True)
    return info


def submit_while_busy(q: ExperimentQueue, n: int) -> tuple[list[float], bool]:
    """Time ``n`` submissions while a long experiment runs (on the thermometer they use, so
    they wait); the times, and whether it ran throughout. All of them are cancelled after."""
    long = q.submit(PLAN, {**PARAMS, "num": 10_000}, submitter="bench", priority="urgent")
    q.wait_for(long.id, [ExperimentState.running], timeout=120)
    times, ids = [], []
    for _ in range(n):
        t = time.perf_counter()
        ids.append(q.submit(PLAN, PARAMS, submitter="bench", priority="low").id)
        times.append(time.perf_counter() - t)
    ran_throughout = q.get(long.id).state == ExperimentState.running
    q.hold()
    for exp_id in [long.id, *ids]:
        try:
            q.cancel(exp_id, by="bench")
        except Exception:  # it ended meanwhile
            continue
    wait_done(q, long.id)
    q.release()
    return times, ran_throughout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="back-to-back experiments (at least 2)")
    ap.add_argument("--latency", type=int, default=20, help="idle-lab submissions to time")
    ap.add_argument(
        "--busy", type=int, default=100, help="submissions timed while an experiment runs"
    )
    ap.add_argument("--backlog", type=int, default=1000, help="experiments waiting")
    ap.add_argument("--api", help="use this Prefect API instead of starting one")
    ap.add_argument(
        "--anchor",
        default=os.environ.get("REMOTELAB_QUEUESERVER_ANCHOR"),
        help="path of queueserver_anchor.py (bluesky-queueserver's figure)",
    )
    args = ap.parse_args()
    if args.n < 2 or args.latency < 1 or args.backlog < 1 or args.busy < 1:
        ap.error("--n must be at least 2, --latency, --busy and --backlog at least 1")

    work = Path(tempfile.mkdtemp(prefix="remotelab-bench-"))
    os.environ["REMOTELAB_KEYS_DIR"] = str(work / "keys")  # its processes share CURVE keys
    server = None
    if args.api is None:
        t0 = time.perf_counter()
        server = PrefectServer(work / "prefect").start()
        api = server.api_url
        print(f"Prefect server (SQLite) up in {time.perf_counter() - t0:.1f} s at {api}")
    else:
        api = args.api
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"bench{uuid.uuid4().hex[:6]}"
    lab_file = work / "lab.yaml"
    lab_file.write_text(yaml.safe_dump(data))
    lab = load_lab(lab_file, speed=SPEED)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PREFECT_API_URL": api}
    worker = None
    try:
        bare = bare_runengine(lab, args.n)
        plan_time = statistics.mean(bare)
        q = ExperimentQueue(lab, api_url=api)
        q.ensure()
        q.hold()
        worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 (the child writes to it)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remotelab",
                "worker",
                "--lab",
                str(lab_file),
                "--speed",
                str(SPEED),
                "--api",
                api,
            ],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not q.workers(fresh=True):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not start; see " + str(work / "worker.log"))
            time.sleep(0.1)

        # warm-up (first plan builds, imports, connections)
        q.release()
        wait_done(q, q.submit(PLAN, PARAMS, submitter="bench").id)

        # 1. back-to-back
        q.hold()
        exps = [q.submit(PLAN, PARAMS, submitter="bench") for _ in range(args.n)]
        t0 = time.perf_counter()
        q.release()
        wait_done(q, exps[-1].id)
        wall = time.perf_counter() - t0
        done = [q.get(e.id) for e in exps]
        bad = [e for e in done if e.state != ExperimentState.completed]
        ends = sorted(e.ended for e in done)
        cycles = [(b - a).total_seconds() for a, b in itertools.pairwise(ends)]
        overheads = [c - plan_time for c in cycles]
        mean_overhead = (wall - args.n * plan_time) / args.n

        # 2. submission-to-start on an idle lab
        latencies = []
        for _ in range(args.latency):
            time.sleep(0.3)  # the worker is idle, waiting
            before = time.time()
            exp = q.submit(PLAN, PARAMS, submitter="bench")
            wait_done(q, exp.id)
            latencies.append(q.get(exp.id).started.timestamp() - before)

        # 3. submissions while an experiment runs (they wait for its thermometer), then
        # the same with a killed worker's announcement left in Prefect
        busy_times, ran_throughout = submit_while_busy(q, args.busy)
        dead = dead_worker(q)
        try:
            dead_times, dead_ran = submit_while_busy(q, args.busy)
        finally:
            q.prefect.withdraw(dead.id)

        # 4. backlog
        q.hold()
        errors = 0
        submit_times = []
        for _ in range(args.backlog):
            t = time.perf_counter()
            try:
                q.submit(PLAN, PARAMS, submitter="bench", priority="low")
            except Exception:
                errors += 1
            submit_times.append(time.perf_counter() - t)
        list_times = []
        for _ in range(3):
            t = time.perf_counter()
            listed = q.list()
            list_times.append(time.perf_counter() - t)
        log_text = (work / "prefect" / "server.log").read_text() if server else ""
        server_errors = sum(log_text.count(s) for s in ("database is locked", " 500 "))

        print()
        print(f"remotelab queue, {args.n} back-to-back trivial experiments ({PLAN}, 1 reading):")
        print(
            f"  per-experiment overhead: median {ms(statistics.median(overheads))}, "
            f"p95 {ms(pct(overheads, 95))}, mean {ms(mean_overhead)} "
            f"(wall {wall:.2f} s, {len(bad)} not completed)"
        )
        print(
            f"  submission-to-start on an idle lab: median {ms(statistics.median(latencies))}, "
            f"p95 {ms(pct(latencies, 95))} ({args.latency} submissions)"
        )
        print(
            f"  bare RunEngine, same plan: median {ms(statistics.median(bare))}, "
            f"mean {ms(plan_time)} per plan"
        )
        print(
            f"submission while an experiment runs: p50 {ms(statistics.median(busy_times))}, "
            f"p99 {ms(pct(busy_times, 99))} ({args.busy} submissions"
            + ("" if ran_throughout else "; the experiment ended before the last one")
            + ")"
        )
        print(
            f"  the same with a killed worker's announcement left: "
            f"p50 {ms(statistics.median(dead_times))}, p99 {ms(pct(dead_times, 99))}"
            + ("" if dead_ran else " (the experiment ended before the last one)")
        )
        print(f"with {len(listed)} experiments waiting:")
        print(
            f"  submission: p50 {ms(statistics.median(submit_times))}, "
            f"p99 {ms(pct(submit_times, 99))}; listing the queue: "
            f"{ms(statistics.median(list_times))}; errors: {errors} client, "
            f"{server_errors} in the server log"
        )
        print(
            "targets: overhead <= 200 ms per experiment; submission-to-start <= 500 ms median; "
            "submission while busy p50 <= 100 ms, p99 <= 500 ms"
        )
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(60)
        lab.close()
        if server is not None:
            server.stop()

    if args.anchor and not Path(args.anchor).is_file():
        print(f"(anchor {args.anchor} not found: bluesky-queueserver not measured)")
    elif args.anchor:
        print()
        print(f"bluesky-queueserver on this machine ({args.anchor}):")
        out = subprocess.run(
            [sys.executable, args.anchor, "--json"], capture_output=True, text=True, timeout=1800
        )
        if out.returncode != 0:
            print("  anchor failed:", out.stderr.strip()[-500:])
        else:
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  per-item overhead: {ms(r['overhead_s'])} ({r['n']} items, "
                f"{ms(r['per_item_s'])}/item, bare RunEngine {ms(r['bare_re_s'])}/plan)"
            )
            print(
                f"  remotelab: {ms(mean_overhead)} mean, "
                f"{ms(statistics.median(overheads))} median per experiment"
            )
            print(
                f"  ratio queueserver / remotelab (mean overhead): "
                f"{r['overhead_s'] / mean_overhead:.1f}x"
            )
    else:
        print("(no --anchor / $REMOTELAB_QUEUESERVER_ANCHOR: bluesky-queueserver not measured)")


if __name__ == "__main__":
    main()
