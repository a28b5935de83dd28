"""Load on the gateway: concurrent clients submitting, then listing a long queue.

    python benchmarks/api.py [--clients 20] [--each 50]

Starts ``remotelab demo`` (Prefect server on SQLite, worker, gateway) in its own process
and a temporary directory, holds the lab so that every experiment stays queued, lets
``--clients`` threads each submit ``--each`` experiments through the HTTP gateway with
their own client, and prints submissions per second and p50/p99 latency of a submission;
then checks that every accepted submission is in the queue exactly once, and times listing
the whole queue (one page of up to 1,000 items).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotelab import Client  # noqa: E402
from remotelab.errors import ApiError  # noqa: E402
from remotelab.queue import ExperimentState  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--each", type=int, default=50)
    parser.add_argument("--lists", type=int, default=20, help="times to list the queue")
    parser.add_argument("--write-slots", type=int, default=4, help="gateway's concurrent writes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, demo(Path(tmp), args.write_slots) as (url, tokens):
        token = tokens["researcher"]
        manager = Client(url, tokens["manager"], timeout=120)
        manager.hold()  # nothing runs: the queue only grows
        accepted: list[str] = []
        refused: list[str] = []
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client_thread() -> None:
            with Client(url, token, timeout=120) as c:
                barrier.wait()
                for _ in range(args.each):
                    t0 = time.perf_counter()
                    try:
                        exp = c.submit("measure", {"detectors": ["thermometer"], "num": 1})
                    except (ApiError, httpx.HTTPError) as exc:
                        with lock:
                            refused.append(str(exc))
                        continue
                    dt = time.perf_counter() - t0
                    with lock:
                        accepted.append(exp.id)
                        latencies.append(dt)

        threads = [threading.Thread(target=client_thread) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0

        listed = manager.queue(state=list(ExperimentState))
        counts = Counter(e.id for e in listed)
        lost = set(accepted) - set(counts)
        duplicates = [i for i, n in counts.items() if n > 1]
        extra = set(counts) - set(accepted)

        list_times = []
        for _ in range(args.lists):
            t1 = time.perf_counter()
            items, total = manager.experiments(limit=1000)
            list_times.append(time.perf_counter() - t1)
        manager.release()
        manager.close()

    n = len(accepted)
    print(
        f"clients: {args.clients} × {args.each} submissions, {_cpus()} cores, "
        f"gateway write slots: {args.write_slots}"
    )
    print(
        f"accepted: {n}, refused: {len(refused)}" + (f" (first: {refused[0]})" if refused else "")
    )
    print(f"submissions per second: {n / wall:.1f} (wall {wall:.1f} s)")
    print(
        f"submit latency: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    print(
        f"in the queue: {len(listed)}; lost: {len(lost)}; duplicates: {len(duplicates)}; "
        f"not submitted here: {len(extra)}"
    )
    print(
        f"list {len(items)} of {total} queued: p50 {percentile(list_times, 50) * 1000:.0f} ms, "
        f"p99 {percentile(list_times, 99) * 1000:.0f} ms"
    )
    return 0 if not lost and not duplicates else 1


@contextmanager
def demo(tmp: Path, write_slots: int) -> Iterator[tuple[str, dict[str, str]]]:
    """``remotelab demo`` in a subprocess; its URL and tokens while it runs."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "REMOTELAB_DATA_DIR": str(tmp),
        "REMOTELAB_WRITE_SLOTS": str(write_slots),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotelab",
            "demo",
            "--port",
            str(port),
            "--no-examples",
            "--data",
            str(tmp / "demo"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tokens: dict[str, str] = {}
    said: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            said.append(line)
            if line.startswith(("manager token:", "researcher token:")):
                tokens[line.split()[0]] = line.split()[-1]
            if line.startswith("ready"):
                break
        else:
            raise SystemExit("remotelab demo did not start:\n" + "".join(said[-40:]))
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        yield f"http://127.0.0.1:{port}", tokens
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpus() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
