"""The soak benchmark's plan (added to its lab through the lab file's ``plans.modules``).

``soak_measure`` reads detectors like ``measure``; with ``fault`` set, the first detector's
simulated instrument is told to fail its next measurement first — an instrument fault,
injected on the worker's side, whose expected outcome (failed) the benchmark knows.
"""

from __future__ import annotations

from typing import Any

import bluesky.plans as bp

from remotelab.plans.params import DeviceParam, Param, PlanParams
from remotelab.plans.registry import plan
from remotelab.sim import Fault, inject_fault


class SoakParams(PlanParams):
    detectors: list[str] = DeviceParam("detector", min_length=1, description="what to read")
    num: int = Param(5, ge=1, le=10_000, description="readings")
    fault: bool = Param(False, description="make the first detector fail its next reading")


@plan(params=SoakParams)
def soak_measure(detectors: list, num: int = 5, fault: bool = False, *, md: dict | None = None):
    """Read the detectors ``num`` times (failing at once if ``fault``)."""
    if fault:
        inject_fault(detectors[0], Fault.FAIL)
    return (yield from bp.count(detectors, num=num, md={"plan_name": "soak_measure", **(md or {})}))


__all__: list[Any] = ["soak_measure"]
