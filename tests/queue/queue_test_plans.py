"""Plans the queue tests add to the simulated lab (through the lab file's ``plans.modules``)."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans.params import DeviceParam, Param, PlanParams
from remotelab.plans.registry import plan
from remotelab.worker.operator import ask_operator


class StepsParams(PlanParams):
    n: int = Param(10, ge=1, le=1_000_000, description="how many steps")
    step_s: float = Param(0.02, ge=0, le=5, description="wall seconds to wait in each step")
    stir: float = Param(300, ge=0, le=1200, description="stirrer speed during the run, rpm")


@plan(params=StepsParams, uses=("thermometer", "stirrer"))
def steps(
    n: int = 10, step_s: float = 0.02, stir: float = 300, *, lab: Any = None, md: dict | None = None
):
    """Spin the stirrer, then read the thermometer n times with a checkpoint before each."""
    thermometer, stirrer = lab["thermometer"], lab["stirrer"]

    @bpp.run_decorator(md={"plan_name": "steps", **(md or {})})
    def inner():
        yield from bps.mv(stirrer, stir)
        for _ in range(n):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read([thermometer])
            yield from bps.sleep(step_s)

    return (yield from inner())


class ReadStepsParams(PlanParams):
    sensor: str = DeviceParam("detector", description="the sensor read at each step")
    n: int = Param(10, ge=1, le=1_000_000, description="how many steps")
    step_s: float = Param(0.02, ge=0, le=5, description="wall seconds to wait in each step")


@plan(params=ReadStepsParams)
def read_steps(sensor: Any, n: int = 10, step_s: float = 0.02, *, md: dict | None = None):
    """Read one sensor n times with a checkpoint before each."""

    @bpp.run_decorator(md={"plan_name": "read_steps", **(md or {})})
    def inner():
        for _ in range(n):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read([sensor])
            yield from bps.sleep(step_s)

    return (yield from inner())


class BoomParams(PlanParams):
    message: str = Param("boom", description="the error message")


@plan(params=BoomParams)
def boom(message: str = "boom", *, lab: Any = None):
    """Start a run, read once, then fail."""

    @bpp.run_decorator(md={"plan_name": "boom"})
    def inner():
        yield from bps.mv(lab["stirrer"], 200)
        yield from bps.trigger_and_read([lab["thermometer"]])
        raise RuntimeError(message)

    return (yield from inner())


class ConfirmParams(PlanParams):
    prompt: str = Param("load tray 2, then confirm", description="what the operator must do")


@plan(params=ConfirmParams)
def confirm_then_read(prompt: str = "load tray 2, then confirm", *, lab: Any = None):
    """Ask the operator, then record the answer in the run's start document."""
    answer = yield from ask_operator(prompt, kind="value")

    @bpp.run_decorator(md={"plan_name": "confirm_then_read", "operator_answer": answer})
    def inner():
        yield from bps.trigger_and_read([lab["thermometer"]])

    return (yield from inner())


class UntilFileParams(PlanParams):
    gate: str = Param(description="the file whose appearance ends the plan")
    stir: float = Param(300, ge=0, le=1200, description="stirrer speed during the run, rpm")


@plan(params=UntilFileParams, uses=("thermometer", "stirrer"))
def until_file(gate: str, stir: float = 300, *, lab: Any = None, md: dict | None = None):
    """Spin the stirrer, then read the thermometer at checkpoints until file ``gate`` exists
    (a test, in another process, decides when the plan ends)."""
    import os

    thermometer, stirrer = lab["thermometer"], lab["stirrer"]

    @bpp.run_decorator(md={"plan_name": "until_file", **(md or {})})
    def inner():
        yield from bps.mv(stirrer, stir)
        while not os.path.exists(gate):
            yield from bps.checkpoint()
            yield from bps.trigger_and_read([thermometer])
            yield from bps.sleep(0.01)
        yield from bps.mv(stirrer, 0)

    return (yield from inner())


def jsonl_documents(lab: Any):
    """A document subscriber (for ``remotelab worker --subscriber``) that appends every
    document to the file named by ``$QUEUE_TEST_DOCS``, flushed at once."""
    import json
    import os

    path = os.environ["QUEUE_TEST_DOCS"]

    def write(name: str, doc: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps([name, doc], default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    return write
