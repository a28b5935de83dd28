"""Typed, documented plan parameters: the pieces a plan's pydantic model is made of.

A plan declares its parameters as a :class:`PlanParams` model. Plain values use
:func:`Param` (description, unit, bounds); references to the lab use
:func:`DeviceParam` (a device of a given kind), :func:`SampleParam` (a sample id),
:func:`WellParam` (a labware well) and :func:`LocationParam` (a rack slot or station).
The markers appear in the JSON Schema (``device_kind``, ``sample``, ``well``,
``location``, ``unit``) and the registry checks them against the lab.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from remotelab.devices import (
    Actuator,
    BackendDevice,
    Balance,
    LiquidHandler,
    PHMeter,
    SampleArm,
    Sensor,
    Spectrometer,
    Stirrer,
    SyringePump,
    TemperatureController,
    Thermometer,
)

#: device kind → (what it means, for messages; the test a device must pass)
DEVICE_KINDS: dict[str, tuple[str, Callable[[BackendDevice], bool]]] = {
    "detector": (
        "a detector (a sensor that is triggered and read)",
        lambda d: isinstance(d, Sensor),
    ),
    "settable": ("a settable (an actuator that is set)", lambda d: isinstance(d, Actuator)),
    "readable": ("any device that can be read", lambda d: isinstance(d, BackendDevice)),
    "temperature_controller": (
        "a temperature controller",
        lambda d: isinstance(d, TemperatureController),
    ),
    "pump": ("a syringe pump", lambda d: isinstance(d, SyringePump)),
    "stirrer": ("a stirrer", lambda d: isinstance(d, Stirrer)),
    "thermometer": ("a thermometer", lambda d: isinstance(d, Thermometer)),
    "ph_meter": ("a pH meter", lambda d: isinstance(d, PHMeter)),
    "balance": ("a balance", lambda d: isinstance(d, Balance)),
    "spectrometer": ("a spectrometer", lambda d: isinstance(d, Spectrometer)),
    "arm": ("a sample-handling arm", lambda d: isinstance(d, SampleArm)),
    "liquid_handler": ("a liquid handler", lambda d: isinstance(d, LiquidHandler)),
}


class PlanParams(BaseModel):
    """Base of every plan's parameter model: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


def _extra(**items: Any) -> dict[str, Any] | None:
    extra = {k: v for k, v in items.items() if v is not None}
    return extra or None


def Param(
    default: Any = ...,
    *,
    description: str,
    unit: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> Any:
    """A plain parameter: a description, an optional unit, optional bounds."""
    return Field(
        default,
        description=description,
        ge=ge,
        le=le,
        gt=gt,
        lt=lt,
        min_length=min_length,
        max_length=max_length,
        json_schema_extra=_extra(unit=unit),
    )


def DeviceParam(
    kind: str,
    default: Any = ...,
    *,
    description: str,
    min_length: int | None = None,
    optional: bool = False,
) -> Any:
    """A device name (or list of names) that must exist in the lab and be of ``kind``.

    With a default of ``None`` the registry picks the lab's device of that kind (the
    only one for a single name, all of them for a list) — unless ``optional``, in
    which case ``None`` means "no device".
    """
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r}; known: {', '.join(DEVICE_KINDS)}")
    return Field(
        default,
        description=description,
        min_length=min_length,
        json_schema_extra={"device_kind": kind, **({"optional": True} if optional else {})},
    )


def SampleParam(default: Any = ..., *, description: str, min_length: int | None = None) -> Any:
    """A sample id (or list of ids) the lab knows."""
    return Field(
        default,
        description=description,
        min_length=min_length,
        json_schema_extra={"sample": True},
    )


def WellParam(default: Any = ..., *, description: str) -> Any:
    """A labware well of the lab (``plate/3``, ``reagent_a/1``)."""
    return Field(default, description=description, json_schema_extra={"well": True})


def LocationParam(default: Any = ..., *, description: str) -> Any:
    """A location of the lab: a rack slot (``rack_a/2``) or a station."""
    return Field(default, description=description, json_schema_extra={"location": True})


__all__ = [
    "DEVICE_KINDS",
    "DeviceParam",
    "LocationParam",
    "Param",
    "PlanParams",
    "SampleParam",
    "WellParam",
]
