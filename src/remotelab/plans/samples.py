"""``measure_samples``: the arm brings each sample to an instrument station, it is
measured there, and the arm puts it back in its rack slot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import FailedPause, RunEngineControlException
from ophyd import Signal

from remotelab.devices import GRIPPER, LOST
from remotelab.plans.holds import holding
from remotelab.plans.params import DeviceParam, LocationParam, Param, PlanParams, SampleParam
from remotelab.plans.registry import plan

if TYPE_CHECKING:
    from remotelab.lab import Lab


class MeasureSamplesParams(PlanParams):
    samples: list[str] = SampleParam(min_length=1, description="sample ids, measured in this order")
    station: str = LocationParam(
        "spectrometer", description="the instrument station the arm brings each sample to"
    )
    detectors: list[str] | None = DeviceParam(
        "detector",
        None,
        min_length=1,
        description="sensors that measure the sample at the station; default: all",
    )
    arm: str | None = DeviceParam("arm", None, description="the sample arm; default: the lab's")
    readings: int = Param(1, ge=1, le=100, description="readings of each sample")


def _check(p: MeasureSamplesParams, lab: Lab) -> Iterator[tuple[str, str]]:
    if p.station not in lab.spec.locations.stations:
        yield (
            "station",
            f"{p.station!r} is not an instrument station; stations: "
            f"{', '.join(lab.spec.locations.stations)}",
        )
        return
    seen: set[str] = set()
    for i, sample in enumerate(p.samples):
        if sample in seen:
            yield f"samples.{i}", f"sample {sample!r} is listed twice"
        seen.add(sample)
        where = lab.tracker.where(sample)
        if where in (GRIPPER, LOST) or where == p.station:
            yield f"samples.{i}", f"sample {sample!r} is at {where}, not in a rack slot"
    occupant = lab.tracker.at(p.station)
    if occupant is not None and occupant not in seen:
        yield "station", f"station {p.station!r} is occupied by sample {occupant!r}"


@plan(
    params=MeasureSamplesParams,
    check=_check,
    example={"samples": ["S001", "S004"], "station": "spectrometer", "detectors": ["spectrometer"]},
)
def measure_samples(
    samples: list[str],
    station: str,
    detectors: list,
    arm: Any,
    readings: int = 1,
    *,
    lab: Lab,
    md: dict | None = None,
):
    """For each sample: the arm brings it from its rack slot to the station, the detectors
    measure it, the arm returns it to its slot. Events carry the sample id."""
    origins = {s: lab.tracker.where(s) for s in samples}
    sample_id = Signal(name="sample_id", value="")
    devices = [*detectors, sample_id]
    _md = {
        "sample_locations": origins,
        "station": station,
        "samples": {
            s: {"location": origins[s], "description": lab.spec.samples[s].description}
            for s in samples
            if s in lab.spec.samples
        },
        "num_points": len(samples) * readings,
        **(md or {}),
    }
    current: list[str | None] = [None]

    def put_back():
        """After a failure: return a sample left at the station, if the arm can."""
        sample = current[0]
        if sample is not None and lab.tracker.where(sample) == station:
            move = bps.mv(arm, {"sample": sample, "destination": origins[sample]})
            yield from holding([arm], move)

    @bpp.stage_decorator(detectors)
    @bpp.run_decorator(md=_md)
    def inner():
        for sample in samples:
            yield from bps.checkpoint()
            yield from bps.mv(sample_id, sample)
            current[0] = sample
            # the arm is shared: held for its moves only, free while the station measures
            yield from holding([arm], bps.mv(arm, {"sample": sample, "destination": station}))
            for _ in range(readings):
                yield from bps.trigger_and_read(devices)
            back = bps.mv(arm, {"sample": sample, "destination": origins[sample]})
            yield from holding([arm], back)
            current[0] = None

    def on_failure(exc: BaseException):
        # an abort or stop request (Ctrl-C, the queue's abort) must not be followed by a
        # move: the caller brings the lab to its safe state, and the tracker keeps where
        # the sample was left (at the station, or in the gripper of the parked arm)
        if isinstance(exc, RunEngineControlException | FailedPause):
            return
        yield from put_back()

    return (yield from bpp.contingency_wrapper(inner(), except_plan=on_failure, auto_raise=True))
