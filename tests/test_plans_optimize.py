"""The closed loop finds the simulated lab's hidden optimum and beats random search.

Stated in docs/plans.md: on the default simulated lab (world seed 42), with the plan's
defaults (budget 25 experiments, TPE with 5 random start-up trials), for sampler seeds
0, 1 and 2 the best conditions found lie within 0.03 of the hidden optimum's reagent
fraction and within 3 °C of its temperature; and with the same budget and seeds the
mean best objective is higher than random search's.
"""

from __future__ import annotations

import pytest

from _plans_support import engine, events, fast_lab, start_doc
from remotelab.plans import registry_for

BUDGET = 25
SEEDS = (0, 1, 2)
FRACTION_TOLERANCE = 0.03
TEMPERATURE_TOLERANCE = 3.0


def optimise(sampler: str, seed: int, **params) -> dict:
    with fast_lab(seed=42) as lab:
        registry = registry_for(lab)
        validated = registry.validate(
            "optimize", {"sampler": sampler, "seed": seed, "budget": BUDGET, **params}, lab=lab
        )
        re = engine()
        re(registry.build(validated, lab))
        (best,) = events(re, "best")
        return {
            "optimum": lab.world.reaction.optimum,
            "reaction": lab.world.reaction,
            "best": best["data"],
            "trials": [e["data"] for e in events(re)],
            "start": start_doc(re),
            "reactor": lab["pipette"].volume("reactor/1"),
        }


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, int], dict]:
    return {(s, seed): optimise(s, seed) for s in ("tpe", "random") for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_optimize_finds_the_hidden_optimum_within_tolerance(results, seed):
    result = results[("tpe", seed)]
    fraction, temperature = result["optimum"]
    assert len(result["trials"]) == BUDGET
    assert result["best"]["best_fraction"] == pytest.approx(fraction, abs=FRACTION_TOLERANCE)
    assert result["best"]["best_temperature"] == pytest.approx(
        temperature, abs=TEMPERATURE_TOLERANCE
    )
    assert result["reactor"] == 0  # emptied after every experiment


def test_optimize_does_better_than_random_search_with_the_same_budget(results):
    def mean_best(sampler: str) -> float:
        return sum(results[(sampler, s)]["best"]["best_objective"] for s in SEEDS) / len(SEEDS)

    assert all(len(results[("random", s)]["trials"]) == BUDGET for s in SEEDS)
    assert mean_best("tpe") > mean_best("random")


def test_the_loop_records_its_trials_and_search_space(results):
    result = results[("tpe", 0)]
    lo, hi = 0.25, 0.75
    for trial in result["trials"]:
        assert lo <= trial["fraction"] <= hi
        assert 30.0 <= trial["temperature_setpoint"] <= 80.0
        assert trial["heater_temperature"] == pytest.approx(trial["temperature_setpoint"], abs=0.3)
    best_seen = max(t["probe_peak_absorbance"] for t in result["trials"])
    assert result["best"]["best_objective"] == best_seen
    optimizer = result["start"]["optimizer"]
    assert optimizer["sampler"] == "tpe" and optimizer["budget"] == BUDGET
    assert optimizer["space"] == {"fraction": [0.25, 0.75], "temperature": [30.0, 80.0]}


def test_optimize_stops_once_the_target_is_met():
    result = optimise("tpe", 0, target=1.2)
    values = [t["probe_peak_absorbance"] for t in result["trials"]]
    assert len(values) < BUDGET
    assert values[-1] >= 1.2 and all(v < 1.2 for v in values[:-1])


def test_each_measurement_matches_the_reaction_model(results):
    result = results[("random", 1)]
    reaction = result["reaction"]
    # 20 uL of 0.05 M reagents in 1000 uL: 0.001 M of A + B; product ε = 40000 L/(mol·cm)
    # at 560 nm, probe path 0.1 cm
    for trial in result["trials"]:
        formed = reaction.yield_at(trial["fraction"], trial["heater_temperature"]) * 0.001 / 2
        assert trial["probe_peak_absorbance"] == pytest.approx(formed * 40000 * 0.1, abs=0.01)
