"""The bench's own plans (lab.yaml lists this module under plans.modules)."""

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans import DeviceParam, Param, PlanParams, plan, to_safe_setpoint


class HoldParams(PlanParams):
    temperature: float = Param(description="where to hold the heated block", unit="degC")
    readings: int = Param(3, ge=1, le=100, description="probe readings once settled")
    heater: str | None = DeviceParam(
        "temperature_controller", None, description="the block's temperature controller"
    )
    thermometer: str | None = DeviceParam("thermometer", None, description="the probe in the block")


def within_limits(params, lab):
    """The temperature must be one the heater may be set to."""
    low, high = lab[params.heater].limits["setpoint"]
    if not low <= params.temperature <= high:
        yield "temperature", f"{params.temperature:g} degC is outside [{low:g}, {high:g}] degC"


@plan(params=HoldParams, check=within_limits, example={"temperature": 40.0, "readings": 3})
def hold_and_read(temperature, readings, heater, thermometer, md=None):
    """Hold the heated block at a temperature, read its probe a few times, then bring the
    block back to its safe setpoint (so the plan leaves the lab safe)."""

    @bpp.stage_decorator([heater, thermometer])
    @bpp.run_decorator(md={"temperature": temperature, **(md or {})})
    def inner():
        yield from bps.mv(heater, temperature)  # done once the block has settled
        for _ in range(readings):
            yield from bps.trigger_and_read([thermometer, heater])
        yield from to_safe_setpoint(heater)

    return (yield from inner())
