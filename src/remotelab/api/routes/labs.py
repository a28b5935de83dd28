"""Labs and their devices: queue and worker status, device limits, safe states, live status,
and the device reservations of the experiments that run.

Where the lab shows experiments to their submitters only (``visibility: own``), a researcher
or observer sees the running experiments, holders, waiters, readings and alerts of their own
experiments only; the lab's counts and device states stay (:mod:`remotelab.api.visibility`)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from remotelab.api.auth import Principal
from remotelab.api.deps import ERROR_RESPONSES, GW, Who, served_lab
from remotelab.api.gateway import Gateway, LabService
from remotelab.api.models import (
    DeviceStatus,
    LabReservations,
    LabSummary,
    Reservation,
    SampleInfo,
)
from remotelab.api.visibility import View
from remotelab.errors import RemotelabError
from remotelab.queue import listing, samples
from remotelab.queue.models import Experiment, ExperimentState
from remotelab.queue.workers import ACTIVE

router = APIRouter(tags=["labs"], responses=ERROR_RESPONSES)


def lab_summary(svc: LabService, gw: Gateway, who: Principal) -> LabSummary:
    """A lab as the gateway shows the caller it: held or not, live workers, queue length
    (the lab's), what runs, the workers found lost."""
    q, view = svc.queue, View(svc, who)
    _, waiting = listing.list_experiments(
        q, [ExperimentState.queued, ExperimentState.waiting_for_approval], limit=1, annotate=False
    )
    running = q.list(ACTIVE)
    if view.user is not None:  # whose they are, for the live status
        gw.live.learn({e.id: e.submitter for e in running})
        running = view.experiments(running)
    workers = q.workers()
    lost = sorted(q.prefect.lost_workers(), key=lambda r: r.at, reverse=True)
    if view.user is not None:
        lost = [r.model_copy(update={"experiments": view.ids(r.experiments)}) for r in lost]
    return LabSummary(
        name=svc.name,
        description=svc.lab.spec.description or "",
        simulated=svc.lab.simulated,
        visibility=svc.lab.visibility,
        held=q.is_held(),
        workers=len(workers),
        queued=waiting,
        current=running[0] if running else None,
        running=running,
        status=gw.live.lab_status(svc.name, view.user),
        alerts=view.alerts(q.alerts()),
        lost=lost,
    )


def _used_by(svc: LabService, exp: Experiment) -> set[str]:
    """The devices a running experiment drives: stored with it, else its plan's (validated
    again, for experiments submitted before the queue stored them)."""
    if exp.devices:
        return set(exp.devices)
    try:
        validated = svc.registry.validate(exp.plan, exp.params, lab=svc.lab, role="manager")
    except RemotelabError:
        return set()
    return set(getattr(validated, "devices", None) or ())


def fault_of(name: str, alerts: list[dict[str, Any]]) -> str | None:
    """The message of the first open alert that names device ``name``, if any."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return next((str(a.get("message")) for a in alerts if word.search(str(a.get("message")))), None)


def device_statuses(svc: LabService, gw: Gateway, who: Principal) -> list[DeviceStatus]:
    """The lab's devices, each online if a worker is, held by the experiment whose
    reservation it is (else busy if a running experiment drives it), with its waiters, its
    latest reading on the live stream and, if an open alert names it, that fault (as the
    caller may see them: :class:`~remotelab.api.visibility.View`)."""
    view = View(svc, who)
    online = bool(svc.queue.workers())
    alerts = view.alerts(svc.queue.alerts()) if online else []
    stored = gw.readings.of_lab(gw.store, svc.name, view.user) if gw.store is not None else {}
    readings = {**stored, **gw.live.readings(svc.name, view.user)}
    book = svc.queue.reservations()["reservations"] if online else {}
    holders: dict[str, str] = {}
    for exp in svc.queue.read(ACTIVE):
        holders.update(dict.fromkeys(_used_by(svc, exp), exp.id))
    out = []
    for name, dev in svc.lab.describe()["devices"].items():
        held = Reservation.model_validate(book.get(name) or {})
        holder = held.holder or holders.get(name)
        fault = fault_of(name, alerts)
        state = "offline" if not online else "fault" if fault else "busy" if holder else "idle"
        out.append(
            DeviceStatus(
                name=name,
                class_=dev["class"],
                role=dev["role"],
                backend=dev["backend"],
                limits=dev["limits"],
                safe_state=dev["safe_state"],
                shared=bool(dev.get("shared", False)),
                online=online,
                busy=holder is not None,
                experiment=view.shown(holder),
                waiters=view.waiters(held.waiters),
                state=state,
                fault=fault,
                reading=readings.get(name),
            )
        )
    return out


@router.get("/labs", response_model=list[LabSummary])
def list_labs(who: Who, gw: GW) -> list[LabSummary]:
    """The labs the caller may use, with their queue and worker status."""
    return [lab_summary(s, gw, who) for n, s in gw.labs.items() if who.may_use(n)]


@router.get("/labs/{lab}", response_model=LabSummary)
def show_lab(lab: str, who: Who, gw: GW) -> LabSummary:
    """One lab: held or not, live workers, queue length, the running experiments."""
    return lab_summary(served_lab(gw, who, lab), gw, who)


@router.get("/labs/{lab}/devices", response_model=list[DeviceStatus])
def list_devices(lab: str, who: Who, gw: GW) -> list[DeviceStatus]:
    """The lab's devices: class, role, limits, safe state, and live status."""
    return device_statuses(served_lab(gw, who, lab), gw, who)


@router.get("/labs/{lab}/samples", response_model=list[SampleInfo])
def list_samples(lab: str, who: Who, gw: GW) -> list[SampleInfo]:
    """The lab's samples: where each is (as its live workers say, else the lab file), the
    experiment holding it, and whether a plan has used it up (and which experiment)."""
    svc = served_lab(gw, who, lab)
    found = View(svc, who).samples(samples.lab_samples(svc.queue))
    return [SampleInfo.model_validate(s) for s in found]


@router.get("/labs/{lab}/reservations", response_model=LabReservations)
def lab_reservations(lab: str, who: Who, gw: GW) -> LabReservations:
    """What each running experiment holds: resource (device, or ``sample:<id>``) → holder,
    since when and who waits for it (first in line first); why each waiting experiment waits;
    the running experiments. As the lab's live workers say (empty when none answers)."""
    svc = served_lab(gw, who, lab)
    return LabReservations.model_validate(View(svc, who).reservations(svc.queue.reservations()))


__all__ = [
    "device_statuses",
    "fault_of",
    "lab_reservations",
    "lab_summary",
    "list_samples",
    "router",
]
