"""``optimize``: the self-driving-lab loop. An Optuna study proposes the next conditions
(the fraction of reagent A in the reagent mix, and the temperature) from the results so
far; the lab heats the reactor, doses solvent and reagents, measures, and tells the study
the result; repeat until the budget is spent or the target is met.

The plan never touches a device itself: results come back through the values that
``trigger_and_read`` returns (``None`` under a simulator such as ``summarize_plan``,
in which case the trial is told it failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from ophyd import Signal

from remotelab.plans.basic import limit_problems, to_safe_setpoint
from remotelab.plans.params import DeviceParam, Param, PlanParams, WellParam
from remotelab.plans.registry import plan

if TYPE_CHECKING:
    import optuna

    from remotelab.lab import Lab


class OptimizeParams(PlanParams):
    budget: int = Param(25, ge=1, le=500, description="most experiments to run")
    target: float | None = Param(
        None, description="stop as soon as the objective reaches this (maximize) or goes below it"
    )
    fraction: list[float] = Param(
        [0.25, 0.75],
        min_length=2,
        max_length=2,
        description="search bounds [low, high] of the fraction of reagent A in the reagent mix",
    )
    temperature: list[float] = Param(
        [30.0, 80.0],
        min_length=2,
        max_length=2,
        unit="degC",
        description="search bounds [low, high] of the reaction temperature",
    )
    objective: str = Param(
        "peak_absorbance", description="the detector reading to optimise (a field of detector)"
    )
    direction: Literal["maximize", "minimize"] = Param("maximize", description="optimise how")
    sampler: Literal["tpe", "random"] = Param(
        "tpe", description="Optuna sampler: tpe (Bayesian) or random (the baseline)"
    )
    startup_trials: int = Param(
        5, ge=1, le=100, description="random trials before the TPE model takes over"
    )
    seed: int = Param(0, description="seed of the sampler, so a run can be repeated")
    reagent_volume_ul: float = Param(
        20.0, gt=0, unit="uL", description="volume of reagent A + reagent B per experiment"
    )
    solvent_volume_ul: float = Param(
        980.0, ge=0, unit="uL", description="solvent added first, to dilute the mix"
    )
    reagent_a: str = WellParam("reagent_a/1", description="reservoir of reagent A")
    reagent_b: str = WellParam("reagent_b/1", description="reservoir of reagent B")
    solvent: str = WellParam("solvent/1", description="solvent reservoir")
    reactor: str = WellParam("reactor/1", description="heated vessel where the reagents react")
    waste: str = WellParam("waste/1", description="where the reactor is emptied after each")
    detector: str = DeviceParam("detector", "probe", description="measures the reactor")
    heater: str | None = DeviceParam(
        "temperature_controller", None, description="heats the reactor; default: the lab's"
    )
    handler: str | None = DeviceParam(
        "liquid_handler", None, description="doses and empties the reactor; default: the lab's"
    )


def _check(p: OptimizeParams, lab: Lab) -> Iterator[tuple[str, str]]:
    for name in ("fraction", "temperature"):
        lo, hi = getattr(p, name)
        if not lo < hi:
            yield name, f"low {lo:g} must be below high {hi:g}"
    flo, fhi = p.fraction
    if not (flo > 0.0 and fhi < 1.0):
        yield "fraction", "bounds must lie strictly between 0 and 1"
    assert p.heater is not None and p.handler is not None  # the registry filled in the lab's
    heater, handler, detector = lab[p.heater], lab[p.handler], lab[p.detector]
    tlo, thi = p.temperature
    yield from limit_problems(heater, "setpoint", {"temperature": tlo}, " degC")
    yield from limit_problems(heater, "setpoint", {"temperature": thi}, " degC")
    if p.objective not in detector.read_attrs:
        yield (
            "objective",
            f"{detector.name} reads no {p.objective!r}; it reads: "
            + ", ".join(detector.read_attrs),
        )
    volumes = {
        "reagent_volume_ul": p.reagent_volume_ul * min(flo, 1 - fhi),
        "solvent_volume_ul": p.solvent_volume_ul or None,
    }
    yield from limit_problems(handler, "volume", volumes, " uL")
    total = p.reagent_volume_ul + p.solvent_volume_ul
    yield from limit_problems(handler, "volume", {"reagent_volume_ul": total}, " uL (reactor)")
    _, capacity = handler.wells.get(p.reactor, (0.0, 0.0))
    if total > capacity:
        yield "solvent_volume_ul", f"reactor {p.reactor} holds {capacity:g} uL, not {total:g}"
    need = {
        "reagent_a": p.budget * p.reagent_volume_ul * fhi,
        "reagent_b": p.budget * p.reagent_volume_ul * (1 - flo),
        "solvent": p.budget * p.solvent_volume_ul,
    }
    for param, volume in need.items():
        well = getattr(p, param)
        have = handler.wells.get(well, (0.0, 0.0))[0]
        if volume > have + 1e-9:
            yield param, f"{well} holds {have:g} uL; a budget of {p.budget} may need {volume:g} uL"
    held, capacity = handler.wells.get(p.waste, (0.0, 0.0))
    if p.budget * total > capacity - held + 1e-9:
        yield "waste", f"{p.waste} has room for {capacity - held:g} uL, not {p.budget * total:g}"


def _sampler(name: str, seed: int, startup: int) -> optuna.samplers.BaseSampler:
    import optuna  # imported when a loop runs: listing and validating plans stays light

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)


@plan(
    params=OptimizeParams,
    check=_check,
    example={"budget": 6, "seed": 1, "startup_trials": 3},
)
def optimize(
    detector: Any,
    heater: Any,
    handler: Any,
    budget: int = 25,
    target: float | None = None,
    fraction: tuple[float, float] | list[float] = (0.25, 0.75),
    temperature: tuple[float, float] | list[float] = (30.0, 80.0),
    objective: str = "peak_absorbance",
    direction: Literal["maximize", "minimize"] = "maximize",
    sampler: str = "tpe",
    startup_trials: int = 5,
    seed: int = 0,
    reagent_volume_ul: float = 20.0,
    solvent_volume_ul: float = 980.0,
    reagent_a: str = "reagent_a/1",
    reagent_b: str = "reagent_b/1",
    solvent: str = "solvent/1",
    reactor: str = "reactor/1",
    waste: str = "waste/1",
    md: dict | None = None,
):
    """Closed-loop optimisation: choose the next reagent fraction and temperature from the
    results so far (Optuna ask/tell), make and measure the mix, until the budget or the
    target is met. The best conditions are read into the ``best`` stream; the heater is left
    at its safe setpoint."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction=direction, sampler=_sampler(sampler, seed, startup_trials)
    )
    space = {
        "fraction": FloatDistribution(float(fraction[0]), float(fraction[1])),
        "temperature": FloatDistribution(float(temperature[0]), float(temperature[1])),
    }
    key = f"{detector.name}_{objective}"
    trial_no = Signal(name="trial", value=0)
    fraction_sig = Signal(name="fraction", value=float("nan"))
    setpoint_sig = Signal(name="temperature_setpoint", value=float("nan"))
    best = [Signal(name=f"best_{n}", value=float("nan")) for n in ("fraction", "temperature")]
    best_value = Signal(name="best_objective", value=float("nan"))
    _md = {
        "num_points": budget,
        "optimizer": {
            "library": "optuna",
            "version": optuna.__version__,
            "sampler": sampler,
            "seed": seed,
            "direction": direction,
            "objective": key,
            "space": {"fraction": list(fraction), "temperature": list(temperature)},
            "budget": budget,
            "target": target,
        },
        "hints": {"dimensions": [(["trial"], "primary")]},
        **(md or {}),
    }
    total = reagent_volume_ul + solvent_volume_ul

    def transfer(source: str, destination: str, volume: float):
        yield from bps.mv(handler, {"source": source, "destination": destination, "volume": volume})

    @bpp.stage_decorator([detector])
    @bpp.run_decorator(md=_md)
    def loop():
        for number in range(budget):
            yield from bps.checkpoint()
            trial = study.ask(space)
            x, temp = trial.params["fraction"], trial.params["temperature"]
            volume_a = round(reagent_volume_ul * x, 3)
            volume_b = round(reagent_volume_ul - volume_a, 3)
            yield from bps.mv(heater, temp)
            if solvent_volume_ul > 0:
                yield from transfer(solvent, reactor, solvent_volume_ul)
            yield from transfer(reagent_a, reactor, volume_a)
            yield from transfer(reagent_b, reactor, volume_b)
            yield from bps.mv(trial_no, number, fraction_sig, x, setpoint_sig, temp)
            reading = yield from bps.trigger_and_read(
                [detector, heater, trial_no, fraction_sig, setpoint_sig]
            )
            value = None
            if reading and key in reading:
                value = float(reading[key]["value"])
                study.tell(trial, value)
            else:
                study.tell(trial, state=TrialState.FAIL)
            yield from transfer(reactor, waste, total)
            if value is not None and target is not None:
                met = value >= target if direction == "maximize" else value <= target
                if met:
                    break
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if done:
            top = study.best_trial
            yield from bps.mv(
                best[0],
                top.params["fraction"],
                best[1],
                top.params["temperature"],
                best_value,
                top.value,
            )
            yield from bps.trigger_and_read([*best, best_value], name="best")
        yield from to_safe_setpoint(heater)

    return (yield from loop())
