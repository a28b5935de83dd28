"""Plans for the parallel-lanes tests: each reads its devices until the test opens its gate.

``gated`` reads ``devices`` at checkpoints until gate ``gate`` is opened (first setting each
settable it names in ``set``); ``arm_block`` holds the shared devices ``hold`` for a block in
which it reads a sensor until its gate opens. Gates are :class:`threading.Event` objects by
name, so a test decides when a plan ends, without timing anything.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from remotelab.plans.holds import holding
from remotelab.plans.params import DeviceParam, Param, PlanParams
from remotelab.plans.registry import plan

GATES: defaultdict[str, threading.Event] = defaultdict(threading.Event)


class GatedParams(PlanParams):
    devices: list[str] = DeviceParam("detector", min_length=1, description="sensors to read")
    settables: list[str] = DeviceParam("settable", [], description="settables to set first")
    value: float = Param(0.0, description="the value the settables are set to")
    gate: str = Param(description="the gate that ends it")


@plan(params=GatedParams)
def gated(
    devices: list,
    settables: list,
    gate: str,
    value: float = 0.0,
    *,
    md: dict | None = None,
):
    """Set the settables, then read the sensors at checkpoints until the gate opens."""

    @bpp.run_decorator(md={"plan_name": "gated", "gate": gate, **(md or {})})
    def inner():
        for settable in settables:
            yield from bps.mv(settable, value)
        while True:
            yield from bps.checkpoint()
            yield from bps.trigger_and_read(devices)
            if GATES[gate].is_set():
                return
            yield from bps.sleep(0.005)

    return (yield from inner())


class ArmBlockParams(PlanParams):
    sensor: str = DeviceParam("detector", description="the sensor read inside the block")
    hold: list[str] = DeviceParam("readable", min_length=1, description="shared devices held")
    gate: str = Param(description="the gate that ends the block")


@plan(params=ArmBlockParams)
def arm_block(sensor: Any, hold: list, gate: str, *, md: dict | None = None):
    """Hold the shared devices for a block in which the sensor is read until the gate opens."""

    def block():
        while True:
            yield from bps.checkpoint()
            yield from bps.trigger_and_read([sensor])
            if GATES[gate].is_set():
                return
            yield from bps.sleep(0.005)

    @bpp.run_decorator(md={"plan_name": "arm_block", "gate": gate, **(md or {})})
    def inner():
        yield from bps.trigger_and_read([sensor])
        yield from holding([h.name for h in hold], block())

    return (yield from inner())


class SneakyParams(PlanParams):
    sensor: str = DeviceParam("detector", description="the sensor it declares")
    other: str = Param(description="a device it reads without declaring it")


@plan(params=SneakyParams)
def sneaky(sensor: Any, other: str, *, lab: Any, md: dict | None = None):
    """Read its sensor, then a device it never declared (the worker must refuse that)."""

    @bpp.run_decorator(md={"plan_name": "sneaky", **(md or {})})
    def inner():
        yield from bps.trigger_and_read([sensor])
        yield from bps.trigger_and_read([lab[other]])

    return (yield from inner())
