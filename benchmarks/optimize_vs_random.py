"""The ``optimize`` plan against random search on the simulated lab: figures, no asserts.

    python benchmarks/optimize_vs_random.py [--budget 25] [--seeds 10] [--lab-seed 42]

For each sampler seed, runs the closed loop with Optuna's TPE and with random search
(same budget, same seed) and prints how far the best conditions found lie from the
world's hidden optimum, the best objective, and the clock and wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bluesky import RunEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from remotelab.lab import load_lab
from remotelab.plans import registry_for


def run_once(sampler: str, seed: int, budget: int, lab_seed: int, speed: float) -> dict:
    with load_lab(seed=lab_seed, speed=speed) as lab:
        registry = registry_for(lab)
        validated = registry.validate(
            "optimize", {"sampler": sampler, "seed": seed, "budget": budget}, lab=lab
        )
        docs: list[tuple[str, dict]] = []
        engine = RunEngine({}, context_managers=[])
        engine.subscribe(lambda name, doc: docs.append((name, doc)))
        began, clock0 = time.perf_counter(), lab.clock.time()
        engine(registry.build(validated, lab))
        wall, clock = time.perf_counter() - began, lab.clock.time() - clock0
        best = next(d["data"] for n, d in docs if n == "event" and "best_fraction" in d["data"])
        fraction, temperature = lab.world.reaction.optimum
        return {
            "dfraction": best["best_fraction"] - fraction,
            "dtemperature": best["best_temperature"] - temperature,
            "best": best["best_objective"],
            "wall": wall,
            "clock": clock,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--lab-seed", type=int, default=42)
    parser.add_argument("--speed", type=float, default=5000.0)
    args = parser.parse_args()
    print(f"budget {args.budget} experiments, world seed {args.lab_seed}")
    print(
        f"{'seed':>4}  {'sampler':<7} {'dfraction':>9} {'dT degC':>8} {'best':>7} "
        f"{'clock h':>7} {'wall s':>6}"
    )
    found: dict[str, list[dict]] = {"tpe": [], "random": []}
    for seed in range(args.seeds):
        for sampler in found:
            r = run_once(sampler, seed, args.budget, args.lab_seed, args.speed)
            found[sampler].append(r)
            print(
                f"{seed:>4}  {sampler:<7} {r['dfraction']:>+9.3f} {r['dtemperature']:>+8.2f} "
                f"{r['best']:>7.3f} {r['clock'] / 3600:>7.2f} {r['wall']:>6.1f}"
            )
    for sampler, runs in found.items():
        within = sum(abs(r["dfraction"]) <= 0.03 and abs(r["dtemperature"]) <= 3 for r in runs)
        print(
            f"{sampler:<7} mean best {statistics.mean(r['best'] for r in runs):.3f}; "
            f"within 0.03 / 3 degC of the optimum: {within}/{len(runs)}"
        )


if __name__ == "__main__":
    main()
