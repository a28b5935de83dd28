"""``titration``: add titrant in steps with pH readings until an endpoint pH or a maximum
volume; the steps shrink where the pH rises fast, so the equivalence point is resolved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from ophyd import Signal

from remotelab.errors import NoResultError
from remotelab.plans.analysis import equivalence_volume
from remotelab.plans.basic import limit_problems, sample_md
from remotelab.plans.params import DeviceParam, Param, PlanParams, SampleParam
from remotelab.plans.registry import plan

if TYPE_CHECKING:
    from remotelab.lab import Lab


class TitrationParams(PlanParams):
    sample_id: str | None = SampleParam(
        None, description="the sample in the titration vessel (for metadata and its volume)"
    )
    pump: str | None = DeviceParam("pump", None, description="titrant pump; default: the lab's")
    ph_meter: str | None = DeviceParam(
        "ph_meter", None, description="pH meter in the vessel; default: the lab's"
    )
    stirrer: str | None = DeviceParam(
        "stirrer", None, description="stirrer under the vessel; default: the lab's"
    )
    endpoint_ph: float | None = Param(
        11.0,
        ge=0,
        le=14,
        unit="pH",
        description="stop once the pH reaches this (none: volume only)",
    )
    max_volume_ml: float = Param(
        30.0, gt=0, unit="mL", description="stop once this much titrant has been added"
    )
    step_ml: float = Param(1.0, gt=0, unit="mL", description="largest addition")
    min_step_ml: float = Param(
        0.05, gt=0, unit="mL", description="smallest addition (near the equivalence point)"
    )
    target_dph: float = Param(
        0.15, gt=0, le=5, unit="pH", description="pH change per addition the steps aim for"
    )
    stir_rpm: float = Param(300.0, ge=0, unit="rpm", description="stirring speed while titrating")
    titrant_molarity: float | None = Param(
        None, gt=0, unit="mol/L", description="titrant concentration, to report the analyte's"
    )
    sample_volume_ml: float | None = Param(
        None, gt=0, unit="mL", description="sample volume; default: the lab file's for sample_id"
    )


def _check(p: TitrationParams, lab: Lab) -> Iterator[tuple[str, str]]:
    if p.min_step_ml > p.step_ml:
        yield "min_step_ml", f"{p.min_step_ml:g} mL is larger than step_ml ({p.step_ml:g} mL)"
    assert p.pump is not None and p.stirrer is not None  # the registry filled in the lab's
    yield from limit_problems(lab[p.pump], "volume", {"max_volume_ml": p.max_volume_ml}, " mL")
    yield from limit_problems(lab[p.stirrer], "setpoint", {"stir_rpm": p.stir_rpm}, " rpm")


def _no_endpoint(phs: list[float], total: float, endpoint_ph: float | None) -> str:
    """Why a titration found no equivalence point."""
    if phs and endpoint_ph is not None and phs[0] >= endpoint_ph:
        return (
            f"no equivalence point: the pH was {phs[0]:.2f} before any titrant, already at or "
            f"past the endpoint pH {endpoint_ph:g} (a used-up sample?)"
        )
    return f"no equivalence point in {len(phs)} reading(s) up to {total:g} mL of titrant"


def _value(reading: dict | None, key: str) -> float | None:
    if not reading or key not in reading:
        return None
    return float(reading[key]["value"])


@plan(
    params=TitrationParams,
    check=_check,
    example={"sample_id": "T001", "titrant_molarity": 0.1, "max_volume_ml": 25.0},
    consumes="sample_id",
)
def titration(
    pump: Any,
    ph_meter: Any,
    stirrer: Any,
    sample_id: str | None = None,
    endpoint_ph: float | None = 11.0,
    max_volume_ml: float = 30.0,
    step_ml: float = 1.0,
    min_step_ml: float = 0.05,
    target_dph: float = 0.15,
    stir_rpm: float = 300.0,
    titrant_molarity: float | None = None,
    sample_volume_ml: float | None = None,
    *,
    lab: Lab | None = None,
    md: dict | None = None,
):
    """Add titrant with the pump, stirring, reading the pH after each addition, until the
    endpoint pH or the maximum volume; then report the equivalence volume (steepest rise)
    in the ``endpoint`` stream. The sample is used up once titrant is added; a run that finds
    no equivalence point fails saying why (:class:`~remotelab.errors.NoResultError`)."""
    if sample_volume_ml is None and lab is not None and sample_id in lab.spec.samples:
        sample_volume_ml = lab.spec.samples[sample_id].volume_ml or None
    added = Signal(name="titrant_added", value=0.0)
    equivalence = Signal(name="equivalence_volume", value=float("nan"))
    analyte = Signal(name="analyte_molarity", value=float("nan"))
    ph_key = f"{ph_meter.name}_ph"

    def inner():
        start = yield from bps.rd(pump, default_value=0.0)
        _md = {
            **sample_md(lab, sample_id),
            "titrant_offset_ml": start,
            "endpoint_ph": endpoint_ph,
            "max_volume_ml": max_volume_ml,
            "titrant_molarity": titrant_molarity,
            "sample_volume_ml": sample_volume_ml,
            "hints": {"dimensions": [(["titrant_added"], "primary")]},
            **(md or {}),
        }

        @bpp.run_decorator(md=_md)
        def run():
            volumes, phs = [], []
            yield from bps.mv(stirrer, stir_rpm)
            total, step = 0.0, step_ml
            reading = yield from bps.trigger_and_read([ph_meter, pump, added])
            ph = _value(reading, ph_key)
            while True:
                if ph is not None:
                    volumes.append(total)
                    phs.append(ph)
                if endpoint_ph is not None and ph is not None and ph >= endpoint_ph:
                    break
                if total >= max_volume_ml - 1e-9:
                    break
                step = min(step, max_volume_ml - total)
                yield from bps.checkpoint()
                yield from bps.mv(pump, start + total + step)
                total = round(total + step, 6)
                yield from bps.mv(added, total)
                reading = yield from bps.trigger_and_read([ph_meter, pump, added])
                if reading is not None and sample_id and lab is not None:  # it ran: used up
                    lab.tracker.consume(sample_id, "titrated")
                new_ph = _value(reading, ph_key)
                if new_ph is not None and ph is not None:
                    rise = max(new_ph - ph, 1e-6)
                    step = min(max(step * target_dph / rise, min_step_ml), step_ml)
                ph = new_ph
            v_eq = equivalence_volume(volumes, phs)
            if v_eq is not None:
                yield from bps.mv(equivalence, v_eq)
                if titrant_molarity and sample_volume_ml:
                    yield from bps.mv(analyte, titrant_molarity * v_eq / sample_volume_ml)
                yield from bps.trigger_and_read([equivalence, analyte], name="endpoint")
            elif phs:  # it read the pH (not a dry walk of the plan) but found no endpoint
                raise NoResultError(_no_endpoint(phs, total, endpoint_ph))

        def stop_stirring():
            yield from bps.mv(stirrer, 0.0)

        return (yield from bpp.finalize_wrapper(run(), stop_stirring()))

    return (yield from inner())
