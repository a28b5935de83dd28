"""A plan the notification tests add to the simulated lab: it asks the operator."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans.params import Param, PlanParams
from remotelab.plans.registry import plan
from remotelab.worker.operator import ask_operator


class AskParams(PlanParams):
    prompt: str = Param("load tray 2, then confirm", description="what the operator must do")


@plan(params=AskParams, uses=("thermometer",))
def ask(prompt: str = "load tray 2, then confirm", *, lab: Any = None):
    """Ask the operator, then read the thermometer once."""
    answer = yield from ask_operator(prompt, kind="confirm")

    @bpp.run_decorator(md={"plan_name": "ask", "operator_answer": answer})
    def inner():
        yield from bps.trigger_and_read([lab["thermometer"]])

    return (yield from inner())
