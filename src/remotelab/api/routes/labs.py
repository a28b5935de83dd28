"""Labs and their devices: queue and worker status, device limits, safe states, live status."""

from __future__ import annotations

from fastapi import APIRouter

from remotelab.api.deps import ERROR_RESPONSES, GW, Who, served_lab
from remotelab.api.gateway import Gateway, LabService
from remotelab.api.models import DeviceStatus, LabSummary
from remotelab.errors import RemotelabError
from remotelab.queue import listing
from remotelab.queue.models import ExperimentState

router = APIRouter(tags=["labs"], responses=ERROR_RESPONSES)


def lab_summary(svc: LabService, gw: Gateway) -> LabSummary:
    """A lab as the gateway shows it: held or not, live workers, queue length, current."""
    q = svc.queue
    _, waiting = listing.list_experiments(
        q, [ExperimentState.queued, ExperimentState.waiting_for_approval], limit=1
    )
    return LabSummary(
        name=svc.name,
        description=svc.lab.spec.description or "",
        simulated=svc.lab.simulated,
        held=q.is_held(),
        workers=len(q.workers()),
        queued=waiting,
        current=q.current(),
        status=gw.live.lab_status(svc.name),
    )


def device_statuses(svc: LabService) -> list[DeviceStatus]:
    """The lab's devices, each online if a worker is, busy if the running experiment uses it."""
    online = bool(svc.queue.workers())
    current = svc.queue.current()
    used: set[str] = set()
    if current is not None:
        try:
            used = set(
                svc.registry.validate(
                    current.plan, current.params, lab=svc.lab, role="manager"
                ).devices
            )
        except RemotelabError:
            used = set()
    out = []
    for name, dev in svc.lab.describe()["devices"].items():
        busy = name in used
        out.append(
            DeviceStatus(
                name=name,
                class_=dev["class"],
                role=dev["role"],
                backend=dev["backend"],
                limits=dev["limits"],
                safe_state=dev["safe_state"],
                online=online,
                busy=busy,
                experiment=current.id if busy and current is not None else None,
            )
        )
    return out


@router.get("/labs", response_model=list[LabSummary])
def list_labs(who: Who, gw: GW) -> list[LabSummary]:
    """The labs the caller may use, with their queue and worker status."""
    return [lab_summary(s, gw) for n, s in gw.labs.items() if who.may_use(n)]


@router.get("/labs/{lab}", response_model=LabSummary)
def show_lab(lab: str, who: Who, gw: GW) -> LabSummary:
    """One lab: held or not, live workers, queue length, the running experiment."""
    return lab_summary(served_lab(gw, who, lab), gw)


@router.get("/labs/{lab}/devices", response_model=list[DeviceStatus])
def list_devices(lab: str, who: Who, gw: GW) -> list[DeviceStatus]:
    """The lab's devices: class, role, limits, safe state, and live status."""
    return device_statuses(served_lab(gw, who, lab))


__all__ = ["device_statuses", "lab_summary", "router"]
