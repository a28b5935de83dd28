"""Throughput of the run store + live stream, and the stream's latency.

Prints, for a fast simulated detector (``ophyd.sim.det``, no wait):

(a) events/s of a bare RunEngine;
(b) events/s of the RunEngine with the run store (a committed SQLite transaction per
    document, plots on) and the stream publisher attached, and the ratio (b)/(a);
then the latency from an event's emission (the RunEngine handing it to its callbacks) to
its receipt by a subscriber in another process, through the proxy in a third process,
p50 and p99, at full speed and paced at 100 events/s. The stream is CurveZMQ, as always; the
three processes share a temporary keys directory.

Run: ``python benchmarks/stream.py [--events N] [--rounds R] [--paced N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotelab.data import RunStore  # noqa: E402
from remotelab.stream import StreamPublisher  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

SUBSCRIBER = """
import json, sys, time
from remotelab.stream import Subscriber
sub = Subscriber(sys.argv[1])
while sub.receive().kind != "status":  # the publisher's heartbeat: the path is up
    pass
print("ready", flush=True)
seen, run = {}, None
while True:
    m = sub.receive()
    if m.name == "event":
        seen[m.doc["uid"]] = time.time()
    elif m.name == "start" and m.doc.get("experiment_id") == sys.argv[2]:
        run = m.doc["uid"]
    elif m.name == "stop" and m.doc.get("run_start") == run:
        break
print(json.dumps(seen), flush=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate(RE: RunEngine, n: int, **md) -> tuple[float, str]:
    t0 = time.perf_counter()
    (uid,) = RE(count([det], num=n), **md)
    return n / (time.perf_counter() - t0), uid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="events per run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating (a)/(b) rounds")
    ap.add_argument("--paced", type=int, default=1000, help="events of the paced latency run")
    ap.add_argument(
        "--synchronous", choices=("NORMAL", "FULL"), default="NORMAL", help="store's sync mode"
    )
    args = ap.parse_args()

    in_addr = f"tcp://127.0.0.1:{free_port()}"
    out_addr = f"tcp://127.0.0.1:{free_port()}"
    tmp = tempfile.TemporaryDirectory()
    os.environ["REMOTELAB_KEYS_DIR"] = ENV["REMOTELAB_KEYS_DIR"] = str(Path(tmp.name) / "keys")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "remotelab", "stream-proxy", "--in", in_addr, "--out", out_addr],
        env=ENV,
        stdout=subprocess.DEVNULL,
    )
    try:
        bare = RunEngine({}, context_managers=[])
        full = RunEngine({}, context_managers=[])
        emitted: dict[str, float] = {}

        def stamp(name, doc):
            if name == "event":
                emitted[doc["uid"]] = time.time()

        store = RunStore(Path(tmp.name) / "runs.sqlite", synchronous=args.synchronous)
        publisher = StreamPublisher(in_addr)
        costs: dict[str, list[float]] = {"store": [], "publisher": []}

        def timed(label, callback):
            def wrapper(name, doc):
                t = time.perf_counter()
                callback(name, doc)
                costs[label].append(time.perf_counter() - t)

            return wrapper

        full.subscribe(stamp)
        full.subscribe(timed("store", store))
        full.subscribe(timed("publisher", publisher))
        publisher.wait_connected(10)

        rate(bare, 200)  # warm up both
        rate(full, 200)
        store.wait_plots()
        a_rates, b_rates = [], []
        for c in costs.values():
            c.clear()
        for _ in range(args.rounds):
            a_rates.append(rate(bare, args.events)[0])
            b_rates.append(rate(full, args.events)[0])
            store.wait_plots()
        a, b = statistics.median(a_rates), statistics.median(b_rates)
        print(
            f"events per run: {args.events}, rounds: {args.rounds} (median shown), "
            f"store synchronous={args.synchronous}"
        )
        print(f"(a) bare RunEngine:                {a:8.0f} events/s")
        print(f"(b) RunEngine + store + stream:    {b:8.0f} events/s")
        print(f"    ratio (b)/(a):                 {b / a:8.2f}   (target >= 0.8)")
        for label, c in costs.items():
            print(
                f"    {label} per document: median {statistics.median(c) * 1e6:6.1f} µs, "
                f"p99 {sorted(c)[int(len(c) * 0.99)] * 1e6:7.1f} µs"
            )

        for label, delay in (("full speed", 0.0), ("paced 100 events/s", 0.01)):
            token = f"latency-{uuid.uuid4()}"
            sub = subprocess.Popen(
                [sys.executable, "-c", SUBSCRIBER, out_addr, token],
                env=ENV,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert sub.stdout is not None
            assert sub.stdout.readline().strip() == "ready"
            emitted.clear()
            n = args.paced if delay else args.events
            t0 = time.perf_counter()
            full(count([det], num=n, delay=delay or None), experiment_id=token)
            elapsed = time.perf_counter() - t0
            received = json.loads(sub.stdout.readline())
            sub.wait(10)
            lat = sorted((received[u] - t) * 1000 for u, t in emitted.items() if u in received)
            lost = len(emitted) - len(lat)
            p50 = lat[len(lat) // 2]
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(
                f"latency emission→subscriber, {label:18s}: p50 {p50:6.2f} ms, "
                f"p99 {p99:6.2f} ms, max {lat[-1]:6.2f} ms over {len(lat)} events "
                f"({n / elapsed:.0f} events/s, {lost} not received)"
            )
        publisher.close()
        store.close()
    finally:
        proxy.terminate()
        proxy.wait(10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
