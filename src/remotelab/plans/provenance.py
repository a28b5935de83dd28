"""Provenance for a run's start document: who asked for what, on which lab, with what setup.

Every run a registered plan makes carries ``experiment_id``, ``submitter``, ``lab``,
``plan_name``, ``plan_params`` (as submitted), ``plan_params_resolved`` (with defaults
filled), ``sample_ids``, ``remotelab_version`` and ``device_config`` (a snapshot of
the configuration of the devices the plan uses), so a run can be traced and repeated. A run
of an experiment accepted by the gateway also carries ``audit_head``: the hash of the audit
log's newest row at that moment (``remotelab audit verify --head`` checks it is still there).
"""

from __future__ import annotations

import getpass
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from remotelab.version import __version__

if TYPE_CHECKING:
    from remotelab.devices import BackendDevice
    from remotelab.lab import Lab
    from remotelab.plans.registry import ValidatedPlan

PROVENANCE_KEYS = (
    "experiment_id",
    "submitter",
    "lab",
    "plan_name",
    "plan_params",
    "sample_ids",
    "devices",
    "shared_devices",
    "remotelab_version",
    "device_config",
)


def json_safe(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (arrays to lists, NaN to None, the rest to str)."""
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)


def device_config(devices: Iterable[BackendDevice]) -> dict[str, Any]:
    """Class, configuration (``read_configuration``), soft limits and safe state per device."""
    snapshot: dict[str, Any] = {}
    for device in devices:
        if device.name in snapshot:
            continue
        config = {key: reading["value"] for key, reading in device.read_configuration().items()}
        snapshot[device.name] = json_safe(
            {
                "class": type(device).__name__,
                "configuration": config,
                "limits": {k: list(v) for k, v in device.limits.items()},
                "safe_state": device.safe_settings,
            }
        )
    return snapshot


def default_submitter() -> str:
    try:
        return f"{getpass.getuser()}@local"
    except Exception:  # pragma: no cover - no user name in some containers
        return "local"


def provenance(
    validated: ValidatedPlan,
    lab: Lab,
    devices: Iterable[BackendDevice],
    md: Mapping[str, Any],
) -> dict[str, Any]:
    """The start-document metadata of a run: the caller's ``md`` plus the provenance keys."""
    return {
        **json_safe(dict(md)),
        "experiment_id": str(md.get("experiment_id") or uuid.uuid4().hex),
        "submitter": str(md.get("submitter") or default_submitter()),
        "lab": lab.name,
        "lab_source": lab.source,
        "plan_name": validated.name,
        "plan_params": json_safe(validated.submitted),
        "plan_params_resolved": json_safe(validated.params),
        "sample_ids": list(validated.sample_ids),
        "devices": list(validated.devices),
        "shared_devices": list(validated.shared),
        "remotelab_version": __version__,
        "device_config": device_config(devices),
    }


__all__ = ["PROVENANCE_KEYS", "default_submitter", "device_config", "json_safe", "provenance"]
