"""The plans of a lab: their parameters' JSON Schema and whether the caller may submit them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from remotelab.api.auth import Principal, Role
from remotelab.api.deps import ERROR_RESPONSES, GW, Who, registry_role, served_lab
from remotelab.api.gateway import LabService
from remotelab.api.models import PlanInfo
from remotelab.errors import UnknownPlanError
from remotelab.plans.params import DEVICE_KINDS
from remotelab.queue.models import needs_approval

router = APIRouter(tags=["plans"], responses=ERROR_RESPONSES)


def choices(svc: LabService, schema: dict[str, Any]) -> dict[str, list[str]]:
    """What each parameter that names something of the lab may name: the devices of its
    ``device_kind``, the lab's samples, its labware's wells."""
    lab = svc.lab
    out: dict[str, list[str]] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("device_kind")
        if kind in DEVICE_KINDS:
            fits = DEVICE_KINDS[kind][1]
            out[name] = [n for n, d in lab.devices.items() if fits(d)]
        elif prop.get("sample"):
            out[name] = list(lab.tracker.samples)
        elif prop.get("well"):
            out[name] = [w for n, lw in lab.spec.labware.items() for w in lw.well_names(n)]
    return out


def plan_info(svc: LabService, who: Principal, described: dict[str, Any]) -> PlanInfo:
    """A plan as the registry describes it, with what the caller may do with it."""
    role = registry_role(who)
    allowed = who.role.at_least(Role.researcher) and described["name"] in svc.registry.allowed(role)
    return PlanInfo(
        name=described["name"],
        description=described["description"],
        params_schema=described["schema"],
        example=described["example"],
        allowed=allowed,
        needs_approval=allowed and needs_approval(svc.lab, described["name"], role),
        choices=choices(svc, described["schema"]),
    )


@router.get("/labs/{lab}/plans", response_model=list[PlanInfo])
def list_plans(lab: str, who: Who, gw: GW) -> list[PlanInfo]:
    """Every plan of the lab with its parameters' JSON Schema, and whether the caller may
    submit it."""
    svc = served_lab(gw, who, lab)
    return [plan_info(svc, who, d) for d in svc.registry.describe()]


@router.get("/labs/{lab}/plans/{plan}", response_model=PlanInfo)
def show_plan(lab: str, plan: str, who: Who, gw: GW) -> PlanInfo:
    """One plan, with the JSON Schema of its parameters."""
    svc = served_lab(gw, who, lab)
    for d in svc.registry.describe():
        if d["name"] == plan:
            return plan_info(svc, who, d)
    raise UnknownPlanError(
        f"lab {lab} has no plan {plan!r}; it has: {', '.join(svc.registry.names())}"
    )


__all__ = ["choices", "plan_info", "router"]
