"""Holding shared devices for a block of a plan's steps, and keeping plans to their devices.

A shared device (``shared: true`` in the lab file: the sample arm that loads both the
spectrometer and the balance) is not reserved for a whole run: a plan holds it for the steps
that need it, in bluesky's style — stubs that yield messages, never touching the book::

    yield from holding(["arm"], bps.mv(arm, {"sample": "S001", "destination": "balance"}))

``hold`` and ``release`` are the stubs; ``holding`` wraps a plan between them (released in a
finalizer, also on abort). The RunEngine serves the two messages once :func:`install_holds`
registered them on it with the lab's reservation book: waiting in line (FIFO) for every device
of the block at once, without blocking the RunEngine (pause and abort work while a plan
waits). :func:`install_local_holds` gives a plain RunEngine a book of its own. :func:`guard`
keeps a plan to the devices it may drive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterable
from typing import Any

import bluesky.preprocessors as bpp
from bluesky import Msg

from remotelab.errors import DeviceNotReservedError
from remotelab.lab.reservations import Reservations

HOLD = "remotelab_hold"
RELEASE = "remotelab_release"
#: how often (s) a waiting hold looks at its ticket (the RunEngine's loop stays free)
WAIT_STEP = 0.002


def _names(devices: Iterable[Any]) -> list[str]:
    return [d if isinstance(d, str) else d.name for d in devices]


def hold(*devices: Any) -> Generator[Msg, Any, Any]:
    """Plan stub: wait until every one of ``devices`` (names or devices) is held by this plan."""
    return (yield Msg(HOLD, None, devices=_names(devices)))


def release(*devices: Any) -> Generator[Msg, Any, Any]:
    """Plan stub: give back shared ``devices`` this plan holds."""
    return (yield Msg(RELEASE, None, devices=_names(devices)))


def holding(devices: Iterable[Any], plan: Generator[Msg, Any, Any]) -> Generator[Msg, Any, Any]:
    """Run ``plan`` holding ``devices``: held before its first step, released after its last
    (also when it fails or is aborted)."""
    names = _names(devices)

    def body() -> Generator[Msg, Any, Any]:
        yield from hold(*names)
        return (yield from plan)

    return (yield from bpp.finalize_wrapper(body(), lambda: release(*names)))


def install_holds(RE: Any, book: Reservations, holder: Callable[[], str]) -> None:
    """Serve ``hold``/``release`` on ``RE`` from ``book``, for the experiment ``holder()``."""

    async def do_hold(msg: Msg) -> None:
        ticket = book.enqueue(holder(), msg.kwargs.get("devices", []))
        try:
            while not ticket.granted.is_set():
                await asyncio.sleep(WAIT_STEP)
        except BaseException:  # cancelled (abort, stop) while waiting: leave the line
            book.cancel(ticket)
            raise

    async def do_release(msg: Msg) -> None:
        book.release(holder(), msg.kwargs.get("devices", []))

    RE.register_command(HOLD, do_hold)
    RE.register_command(RELEASE, do_release)


def install_local_holds(RE: Any) -> Reservations:
    """Give a plain RunEngine (one plan at a time) a book of its own; the book."""
    book = Reservations()
    install_holds(RE, book, lambda: "local")
    return book


def device_of(obj: Any, lab: Any) -> str | None:
    """The name of the lab device ``obj`` is (or is a part of), or None."""
    while obj is not None:
        name = getattr(obj, "name", None)
        if isinstance(name, str) and lab.devices.get(name) is obj:
            return name
        obj = getattr(obj, "parent", None)
    return None


def guard(
    plan: Generator[Msg, Any, Any], allowed: Callable[[], set[str]], lab: Any, experiment: str = ""
) -> Generator[Msg, Any, Any]:
    """``plan``, failing with :class:`DeviceNotReservedError` at its first message to a lab
    device not in ``allowed()`` (its reserved devices and the shared ones it holds now)."""

    def check(msg: Msg) -> Msg:
        if msg.obj is not None:
            device = device_of(msg.obj, lab)
            if device is not None and device not in allowed():
                raise DeviceNotReservedError(device, experiment or "this experiment")
        return msg

    return (yield from bpp.msg_mutator(plan, check))


__all__ = [
    "HOLD",
    "RELEASE",
    "device_of",
    "guard",
    "hold",
    "holding",
    "install_holds",
    "install_local_holds",
    "release",
]
