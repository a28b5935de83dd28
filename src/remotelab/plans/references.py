"""What a submission's parameters name, checked against the lab, and pydantic's errors put
in words a researcher reads: the two halves of :meth:`PlanRegistry.validate
<remotelab.plans.registry.PlanRegistry.validate>` that are not the plan's own check."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from remotelab.devices import LOST
from remotelab.plans.params import DEVICE_KINDS, PlanParams
from remotelab.plans.uses import names_in

if TYPE_CHECKING:
    from remotelab.lab import Lab


def marker_of(info: Any) -> dict[str, Any]:
    """The remotelab marker of a parameter field (its kind, unit…), or {}."""
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (list, tuple):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


def pydantic_errors(exc: ValidationError, model: type[PlanParams]) -> list[dict[str, Any]]:
    """pydantic's errors for a submission, as ``{"param", "message"}`` a researcher reads."""
    fields = model.model_fields
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        param = ".".join(loc) if loc else None
        top = fields.get(loc[0]) if loc else None
        if err["type"] == "missing":
            desc = f": {top.description}" if top is not None and top.description else ""
            message = f"required parameter is missing (expected{desc})"
        elif err["type"] == "extra_forbidden":
            message = f"unknown parameter; this plan takes: {', '.join(fields)}"
        else:
            unit = marker_of(top).get("unit") if top is not None else None
            got = err.get("input")
            message = f"{err['msg']}{' ' + unit if unit else ''} (got {got!r})"
        out.append({"param": param, "message": message})
    return out


def check_references(
    model_cls: type[PlanParams], values: Mapping[str, Any], lab: Lab, *, skip: set[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str], list[str]]:
    """Devices, samples, wells and locations the parameters name, checked against the lab."""
    filled: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    devices: list[str] = []
    samples: list[str] = []
    wells = {w for n, lw in lab.spec.labware.items() for w in lw.well_names(n)}
    for pname, info in model_cls.model_fields.items():
        if pname in skip:
            continue
        marker = marker_of(info)
        value = values.get(pname, None if info.is_required() else info.get_default())
        many = _is_list(info.annotation)
        kind = marker.get("device_kind")
        if kind is not None:
            what, fits = DEVICE_KINDS[kind]
            of_kind = [n for n, d in lab.devices.items() if fits(d)]
            if value is None:
                if marker.get("optional"):
                    continue
                if many and of_kind:
                    value = filled[pname] = of_kind
                elif not many and len(of_kind) == 1:
                    value = filled[pname] = of_kind[0]
                else:
                    choice = f"name one of: {', '.join(of_kind)}" if of_kind else "none here"
                    errors.append(
                        {"param": pname, "message": f"expected {what} of this lab; {choice}"}
                    )
                    continue
            for item in names_in(value):
                if item not in lab.devices:
                    errors.append(
                        {
                            "param": pname,
                            "message": f"unknown device {item!r}; expected {what}: "
                            f"{', '.join(of_kind) or 'this lab has none'}",
                        }
                    )
                elif not fits(lab.devices[item]):
                    cls = type(lab.devices[item]).__name__
                    errors.append(
                        {
                            "param": pname,
                            "message": f"device {item!r} is a {cls}, not {what}; "
                            f"this lab's: {', '.join(of_kind) or 'none'}",
                        }
                    )
                elif item not in devices:
                    devices.append(item)
        if marker.get("sample"):
            for item in names_in(value):
                if item not in lab.tracker.positions:
                    errors.append(
                        {
                            "param": pname,
                            "message": f"unknown sample {item!r}; this lab's samples: "
                            f"{', '.join(lab.tracker.samples)}",
                        }
                    )
                elif lab.tracker.where(item) == LOST:
                    errors.append({"param": pname, "message": f"sample {item!r} is lost"})
                elif item not in samples:
                    samples.append(item)
        if marker.get("well"):
            for item in names_in(value):
                if item not in wells:
                    errors.append(
                        {
                            "param": pname,
                            "message": f"unknown well {item!r}; this lab's wells: "
                            f"{', '.join(sorted(wells))}",
                        }
                    )
        if marker.get("location"):
            for item in names_in(value):
                if item not in lab.tracker.locations:
                    errors.append(
                        {
                            "param": pname,
                            "message": f"unknown location {item!r}; this lab's locations: "
                            f"{', '.join(lab.tracker.locations)}",
                        }
                    )
    return filled, errors, devices, samples


__all__ = ["check_references", "marker_of", "pydantic_errors"]
