"""What a plan declares it always drives (``@plan(..., uses=...)``), as the lab's device names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remotelab.errors import LabFileError

if TYPE_CHECKING:
    from remotelab.lab import Lab

#: what a plan always drives: parameter or device names, or a function of (params, lab)
Uses = tuple[str, ...] | Callable[[Any, "Lab"], Iterable[str]]


def names_in(value: Any) -> list[str]:
    """The names a parameter's value holds (one, a list, or none)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def devices_used(plan: str, uses: Uses, params: BaseModel, lab: Lab) -> list[str]:
    """The devices plan ``plan`` declares with ``uses`` for validated ``params``: a parameter
    name stands for the device(s) it names. :class:`LabFileError` for a device the lab lacks."""
    named = list(uses(params, lab)) if callable(uses) else list(uses)
    found: list[str] = []
    for item in named:
        value = getattr(params, item) if item in type(params).model_fields else item
        for name in names_in(value):
            if name not in lab.devices:
                raise LabFileError(f"plan {plan}: uses device {name!r}, which this lab lacks")
            if name not in found:
                found.append(name)
    return found


__all__ = ["Uses", "devices_used", "names_in"]
