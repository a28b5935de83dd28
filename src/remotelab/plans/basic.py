"""Basic plans: read sensors (``measure``), scan a settable (``scan``), step a heater
through setpoints (``temperature_ramp``). Each is one bluesky run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp

from remotelab.plans.params import DeviceParam, Param, PlanParams, SampleParam
from remotelab.plans.registry import plan

if TYPE_CHECKING:
    from remotelab.lab import Lab


def sample_md(lab: Lab | None, sample_id: str | None) -> dict[str, Any]:
    """What the lab file says about a sample, for a run's metadata."""
    if lab is None or sample_id is None:
        return {}
    spec = lab.spec.samples.get(sample_id)
    return {
        "sample_id": sample_id,
        "sample": {
            "id": sample_id,
            "location": lab.tracker.where(sample_id),
            "description": spec.description if spec else "",
            "metadata": dict(spec.metadata) if spec else {},
        },
    }


def limit_problems(
    device: Any, quantity: str, values: Mapping[str, float | None], unit: str = ""
) -> Iterator[tuple[str, str]]:
    """(param, message) for each value outside ``device``'s soft limits of ``quantity``."""
    if quantity not in getattr(device, "limits", {}):
        return
    lo, hi = device.limits[quantity]
    for param, value in values.items():
        if value is not None and not lo <= value <= hi:
            yield (
                param,
                f"{value:g}{unit} is outside {device.name}'s {quantity} limits "
                f"[{lo:g}, {hi:g}]{unit}",
            )


def to_safe_setpoint(*devices: Any):
    """Plan stub: move each device (a temperature controller, a stirrer…) back to the setpoint
    of its declared safe state and wait until it has settled there. A plan that changes a
    setpoint ends with it, so the lab is left safe (``remotelab check`` checks this); the
    RunEngine's stop at the end of a plan holds a controller where it is, not at safe."""
    for device in devices:
        yield from bps.mv(device, float(device.safe_settings["setpoint"]))


# -- measure ------------------------------------------------------------------------------------
class MeasureParams(PlanParams):
    detectors: list[str] | None = DeviceParam(
        "detector", None, min_length=1, description="sensors to read; default: every sensor"
    )
    num: int = Param(3, ge=1, le=10_000, description="how many times to read them")
    sample_id: str | None = SampleParam(None, description="the sample being measured, if any")


@plan(params=MeasureParams, example={"detectors": ["thermometer", "ph_meter"], "num": 3})
def measure(
    detectors: list,
    num: int = 3,
    sample_id: str | None = None,
    *,
    lab: Lab | None = None,
    md: dict | None = None,
):
    """Read a set of sensors N times (with the sample's metadata, if one is named)."""
    _md = {"num_points": num, **sample_md(lab, sample_id), **(md or {})}
    return (yield from bp.count(detectors, num=num, md=_md))


# -- scan ---------------------------------------------------------------------------------------
class ScanParams(PlanParams):
    detectors: list[str] | None = DeviceParam(
        "detector", None, min_length=1, description="sensors read at each point; default: all"
    )
    motor: str = DeviceParam("settable", description="the settable to scan (e.g. heater, stirrer)")
    start: float = Param(description="first position, in the settable's unit")
    stop: float = Param(description="last position, in the settable's unit")
    num: int = Param(5, ge=2, le=1000, description="number of points along the settable")
    motor2: str | None = DeviceParam(
        "settable", None, optional=True, description="second settable: makes a grid scan"
    )
    start2: float | None = Param(None, description="first position of motor2")
    stop2: float | None = Param(None, description="last position of motor2")
    num2: int | None = Param(None, ge=2, le=1000, description="number of points along motor2")
    snake: bool = Param(False, description="grid scan: reverse motor2 on alternate rows")


def _check_scan(p: ScanParams, lab: Lab) -> Iterator[tuple[str, str]]:
    yield from limit_problems(lab[p.motor], "setpoint", {"start": p.start, "stop": p.stop})
    if p.motor2 is None:
        for name in ("start2", "stop2", "num2"):
            if getattr(p, name) is not None:
                yield name, "only used with motor2 (a grid scan); set motor2 or leave it out"
        return
    if p.motor2 == p.motor:
        yield "motor2", f"must differ from motor ({p.motor})"
    for name in ("start2", "stop2", "num2"):
        if getattr(p, name) is None:
            yield name, "required parameter is missing for a grid scan (motor2 is set)"
    yield from limit_problems(lab[p.motor2], "setpoint", {"start2": p.start2, "stop2": p.stop2})


@plan(
    params=ScanParams,
    check=_check_scan,
    example={"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 600, "num": 4},
)
def scan(
    detectors: list,
    motor: Any,
    start: float,
    stop: float,
    num: int = 5,
    motor2: Any = None,
    start2: float | None = None,
    stop2: float | None = None,
    num2: int | None = None,
    snake: bool = False,
    md: dict | None = None,
):
    """Scan a settable (1-D) or two settables (grid) and read detectors at each point."""
    if motor2 is None:
        _md = {"num_points": num, **(md or {})}
        return (yield from bp.scan(detectors, motor, start, stop, num, md=_md))
    if start2 is None or stop2 is None or num2 is None:
        raise ValueError("a grid scan (motor2 given) needs start2, stop2 and num2")
    _md = {"num_points": num * num2, **(md or {})}
    return (
        yield from bp.grid_scan(
            detectors,
            motor,
            start,
            stop,
            num,
            motor2,
            start2,
            stop2,
            num2,
            snake_axes=snake,
            md=_md,
        )
    )


# -- temperature ramp ---------------------------------------------------------------------------
class TemperatureRampParams(PlanParams):
    setpoints: list[float] = Param(
        [30.0, 40.0, 50.0],
        min_length=1,
        max_length=200,
        unit="degC",
        description="temperatures to step through, in order",
    )
    heater: str | None = DeviceParam(
        "temperature_controller", None, description="the temperature controller; default: the lab's"
    )
    detectors: list[str] | None = DeviceParam(
        "detector",
        None,
        min_length=1,
        description="sensors read at each setpoint once settled; default: all",
    )
    readings: int = Param(1, ge=1, le=1000, description="readings at each setpoint")
    ramp_rate: float | None = Param(
        None, gt=0, unit="degC/min", description="ramp rate; default: the controller's setting"
    )


def _check_ramp(p: TemperatureRampParams, lab: Lab) -> Iterator[tuple[str, str]]:
    assert p.heater is not None  # the registry filled in the lab's
    heater = lab[p.heater]
    points = {f"setpoints.{i}": v for i, v in enumerate(p.setpoints)}
    yield from limit_problems(heater, "setpoint", points, " degC")
    yield from limit_problems(heater, "ramp_rate", {"ramp_rate": p.ramp_rate}, " degC/min")


@plan(
    params=TemperatureRampParams,
    check=_check_ramp,
    example={"setpoints": [30.0, 35.0], "heater": "heater", "detectors": ["thermometer"]},
)
def temperature_ramp(
    setpoints: list[float],
    heater: Any,
    detectors: list,
    readings: int = 1,
    ramp_rate: float | None = None,
    md: dict | None = None,
):
    """Step a temperature controller through setpoints; at each, wait until it has settled,
    then read the detectors. It ends back at the controller's safe setpoint."""
    devices = [heater, *[d for d in detectors if d is not heater]]
    _md = {
        "setpoints": list(setpoints),
        "num_points": len(setpoints) * readings,
        "hints": {"dimensions": [([heater.temperature.name], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator(devices)
    @bpp.run_decorator(md=_md)
    def inner():
        if ramp_rate is not None:
            yield from bps.mv(heater.ramp_rate, ramp_rate)
        for setpoint in setpoints:
            yield from bps.checkpoint()
            yield from bps.mv(heater, setpoint)  # completes once settled
            for _ in range(readings):
                yield from bps.trigger_and_read(devices)
        yield from to_safe_setpoint(heater)

    return (yield from inner())
