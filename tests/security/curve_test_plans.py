"""A plan the CurveZMQ tests add to the simulated lab (through the lab file's ``plans.modules``):
it waits for the operator, so it surely still runs while a test attacks the worker."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans.params import Param, PlanParams
from remotelab.plans.registry import plan
from remotelab.worker.operator import ask_operator


class AskParams(PlanParams):
    prompt: str = Param("confirm the sample is loaded", description="what the operator must do")


@plan(params=AskParams, uses=("thermometer",))
def ask_then_read(prompt: str = "confirm the sample is loaded", *, lab: Any = None):
    """Ask the operator, then read the thermometer once."""
    answer = yield from ask_operator(prompt, kind="value")

    @bpp.run_decorator(md={"plan_name": "ask_then_read", "operator_answer": answer})
    def inner():
        yield from bps.trigger_and_read([lab["thermometer"]])

    return (yield from inner())
