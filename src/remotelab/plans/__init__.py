"""Experiment plans the lab offers, and the registry that validates and builds them.

Plans are bluesky plans (generators of ``Msg``); they never touch hardware
themselves, so ``bluesky.simulators.summarize_plan`` can walk them. The registry
(:mod:`remotelab.plans.registry`) is the only way a plan name and a JSON body from
outside become a plan run on the lab's devices.
"""

from remotelab.plans.basic import to_safe_setpoint
from remotelab.plans.params import (
    DEVICE_KINDS,
    DeviceParam,
    LocationParam,
    Param,
    PlanParams,
    SampleParam,
    WellParam,
)
from remotelab.plans.registry import (
    ROLES,
    PlanDefinition,
    PlanRegistry,
    ValidatedPlan,
    builtin_plans,
    check_role,
    plan,
    registry_for,
)

__all__ = [
    "DEVICE_KINDS",
    "ROLES",
    "DeviceParam",
    "LocationParam",
    "Param",
    "PlanDefinition",
    "PlanParams",
    "PlanRegistry",
    "SampleParam",
    "ValidatedPlan",
    "WellParam",
    "builtin_plans",
    "check_role",
    "plan",
    "registry_for",
    "to_safe_setpoint",
]
