"""How long ``remotelab check`` takes on the shipped labs, as a CI pipeline would run it.

Run: ``python benchmarks/lab_check.py [--rounds N]``. For each shipped lab file it runs
``remotelab check LAB --json`` as a fresh process (what a lab repository's CI does) and
prints the time its checks took (the sum of its steps' seconds, the figure the command
prints), the wall time of the whole process (interpreter and imports included) and
whether every check passed. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "src" / "remotelab" / "labs"
TARGET_S = 30.0  # the figure a CI pipeline on two cores must stay under


def check_once(lab: Path) -> tuple[float, float, bool]:
    """One ``remotelab check`` process: (checks' own seconds, wall seconds, all passed)."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "remotelab", "check", str(lab), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - began
    steps = json.loads(done.stdout)
    checks = sum(float(step["seconds"]) for step in steps)
    return checks, wall, done.returncode == 0 and all(step["ok"] for step in steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="processes per lab file")
    args = ap.parse_args()
    for lab in sorted(LABS.glob("*.yaml")):
        runs = [check_once(lab) for _ in range(args.rounds)]
        checks = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        passed = all(r[2] for r in runs)
        print(
            f"remotelab check {lab.name}: checks {checks:.1f} s, whole process {wall:.1f} s "
            f"(median of {args.rounds}; target < {TARGET_S:.0f} s), "
            f"{'all passed' if passed else 'FAILED'}"
        )


if __name__ == "__main__":
    main()
