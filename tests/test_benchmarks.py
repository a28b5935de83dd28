"""Every script in ``benchmarks/`` runs from the repo root with its smallest settings.

The figures are not checked (benchmarks assert nothing): only that each script starts,
finishes with status 0 and prints its figure lines. A new benchmark needs an entry in
``TINY``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))

#: benchmark → (its smallest settings, words each of its figure lines prints)
TINY: dict[str, tuple[list[str], list[str]]] = {
    "api.py": (
        ["--clients", "2", "--each", "2", "--lists", "1"],
        ["accepted: 4", "submissions per second", "submit latency", "lost: 0", "list 4 of"],
    ),
    "curve_hop.py": (
        ["--messages", "50", "--round-trips", "5", "--sizes", "300"],
        ["one hop on loopback", "300 B plain: one-way latency", "300 B CURVE: one-way latency"],
    ),
    "lab_check.py": (
        ["--rounds", "1"],
        [
            "remotelab check serial-sim.yaml: checks",
            "remotelab check sim.yaml: checks",
            "all passed",
        ],
    ),
    "optimize_vs_random.py": (
        ["--budget", "1", "--seeds", "1"],
        ["budget 1 experiments", "tpe", "random", "mean best", "within 0.03"],
    ),
    "parallel.py": (
        ["--per-station", "1", "--speed", "2000"],
        [
            "concurrency 1: wall",
            "concurrency 3: wall",
            "throughput ratio",
            "utilisation at",
            "release-to-start",
        ],
    ),
    "queue_overhead.py": (
        ["--n", "2", "--latency", "1", "--busy", "2", "--backlog", "1"],
        [
            "per-experiment overhead",
            "submission-to-start",
            "bare RunEngine",
            "submission while an experiment runs",
            "listing the queue",
            "bluesky-queueserver not measured",
        ],
    ),
    "serial_roundtrip.py": (
        ["--queries", "20"],
        ["pty: 20 queries", "tcp: 20 queries", "bench plan on 'sim'", "bench plan on 'serial-sim'"],
    ),
    "soak.py": (
        ["--n", "6", "--faults", "3", "--outage", "1"],
        [
            "soak: 6 experiments",
            "lost        0",
            "mislabelled 0",
            "documents",
            "outbox lag",
            "worker RSS",
        ],
    ),
    "stream.py": (
        ["--events", "20", "--rounds", "1", "--paced", "20"],
        [
            "(a) bare RunEngine",
            "(b) RunEngine + store + stream",
            "ratio (b)/(a)",
            "store per document",
            "publisher per document",
            "full speed",
            "paced 100 events/s",
        ],
    ),
}


def test_every_benchmark_has_tiny_settings() -> None:
    assert BENCHMARKS, "no benchmarks found"
    missing = sorted(set(BENCHMARKS) - set(TINY))
    assert not missing, f"give {missing} their smallest settings in TINY"
    assert not set(TINY) - set(BENCHMARKS), "TINY names a benchmark that is gone"


def test_no_benchmark_shadows_a_module() -> None:
    """A script's folder is first on its ``sys.path``: a name like ``queue`` hides a module."""
    taken = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    shadowing = sorted(n for n in BENCHMARKS if n.removesuffix(".py") in taken)
    assert not shadowing, f"{shadowing} are named like installed modules; rename them"


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_from_repo_root(name: str, tmp_path: Path) -> None:
    if name not in TINY:
        pytest.fail(f"benchmarks/{name} has no smallest settings in TINY")
    args, words = TINY[name]
    # a fresh shell's environment: no Prefect or remotelab settings, no queueserver anchor
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REMOTELAB_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), PYTHONIOENCODING="utf-8", TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    absent = [w for w in words if w not in done.stdout]
    assert not absent, f"{name} did not print {absent}:\n{done.stdout}"
