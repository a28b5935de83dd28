"""A plan the dashboard's browser tests add to the simulated lab: it asks the operator a
question, then reads the thermometer."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans.params import Param, PlanParams
from remotelab.plans.registry import plan
from remotelab.worker.operator import ask_operator


class AskParams(PlanParams):
    prompt: str = Param("is the vial capped?", description="what the operator is asked")


@plan(params=AskParams, uses=("thermometer",))
def ask(prompt: str = "is the vial capped?", *, lab: Any = None):
    """Ask the operator a yes/no question, then read the thermometer once."""
    answer = yield from ask_operator(prompt, kind="confirm")

    @bpp.run_decorator(md={"plan_name": "ask", "operator_answer": answer})
    def read_once():
        yield from bps.trigger_and_read([lab["thermometer"]])

    return (yield from read_once())
