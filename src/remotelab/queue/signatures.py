"""Signed submissions: only what the gateway (or the lab's own queue) accepted is run.

When an experiment is accepted, edited, re-prioritised or approved, the queue signs what a
worker will act on — its flow run's parameters (plan, parameters, submitter, role, devices,
edits, audit head), the lab, its priority and its approval — with the submission key
(:mod:`remotelab.keys.signing`), and stores the signature in the parameters under
``signature``. The signature names the run's *submission id*, a random id given to Prefect
as the run's idempotency key: Prefect keeps it unique per flow and never changes it, so a
signature cannot be copied onto another run.

A worker checks every queued run with :func:`refusal` before it claims it (and the run as
read after the claim): unsigned, altered, copied or approved-around-the-gateway runs are
ended Cancelled, state name :data:`REFUSED`, with the reason; the gateway audits them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from remotelab.keys.signing import SignatureInvalid, Signer, Verifier, canonical
from remotelab.queue.models import Experiment

#: the parameter holding a submission's signature
SIGNATURE = "signature"
#: the state name of a run a worker refused to run
REFUSED = "Refused"
#: the tag a worker puts on a run it refused (the gateway audits those)
REFUSED_TAG = "remotelab:refused"
#: approval values: none needed; needed and not given yet; ``approved by <manager>``
NO_APPROVAL = "not needed"
APPROVAL_REQUIRED = "required"
#: the labels of a manager's signed approval (see :func:`approval_labels`)
APPROVER_LABEL = "remotelab.approved_by"
APPROVAL_LABEL = "remotelab.approval_signature"


def approved_by(manager: str) -> str:
    return f"approved by {manager}"


def payload(
    lab: str, submission: str, parameters: Mapping[str, Any], priority: str, approval: str
) -> dict[str, Any]:
    """What is signed: the lab, the submission id, the priority, the approval and every
    parameter of the run but the signature itself."""
    return {
        "v": 1,
        "lab": lab,
        "submission": submission,
        "priority": priority,
        "approval": approval,
        "parameters": {k: v for k, v in parameters.items() if k != SIGNATURE},
    }


def signed(
    signer: Signer,
    lab: str,
    submission: str,
    parameters: Mapping[str, Any],
    *,
    priority: str,
    approval: str,
) -> dict[str, Any]:
    """``parameters`` with their signature (see :func:`payload`)."""
    body = payload(lab, submission, parameters, priority, approval)
    sig = signer.sign(body)
    stamp = {**sig, "submission": submission, "priority": priority, "approval": approval}
    return {**body["parameters"], SIGNATURE: stamp}


def approval_of(parameters: Mapping[str, Any]) -> str:
    """The approval a run's signature claims (:data:`NO_APPROVAL` if none is claimed)."""
    stamp = parameters.get(SIGNATURE)
    if isinstance(stamp, Mapping):
        return str(stamp.get("approval") or NO_APPROVAL)
    return NO_APPROVAL


def resigned(
    signer: Signer, lab: str, run: Any, parameters: Mapping[str, Any], **claims: str
) -> dict[str, Any]:
    """``parameters`` for run ``run`` signed again, keeping its submission id and the claims
    not given (``priority``, ``approval``)."""
    stamp = (run.parameters or {}).get(SIGNATURE) or {}
    exp = Experiment.from_flow_run(run)
    return signed(
        signer,
        lab,
        str(run.idempotency_key or stamp.get("submission") or ""),
        parameters,
        priority=claims.get("priority", exp.priority.value),
        approval=claims.get("approval", str(stamp.get("approval") or NO_APPROVAL)),
    )


def _digest(parameters: Mapping[str, Any]) -> str:
    body = {k: v for k, v in parameters.items() if k != SIGNATURE}
    return hashlib.sha256(canonical(body)).hexdigest()


def approval_labels(signer: Signer, lab: str, run: Any, manager: str) -> dict[str, str]:
    """The labels recording a manager's approval of ``run`` as it is now: the approval is
    signed over the run's parameters, so an edit after it needs an approval again. Labels
    are merged by Prefect, so approving never overwrites an edit made at the same moment."""
    parameters = dict(run.parameters or {})
    sig = signer.sign(_approval_payload(lab, run, parameters, manager))
    return {APPROVER_LABEL: manager, APPROVAL_LABEL: f"{sig['key']}:{sig['sig']}"}


def _approval_payload(lab: str, run: Any, parameters: Mapping[str, Any], manager: str) -> dict:
    return {
        "v": 1,
        "lab": lab,
        "submission": str(run.idempotency_key or ""),
        "approved_by": manager,
        "parameters": _digest(parameters),
    }


def label_approval(run: Any, lab: str, verifier: Verifier) -> str | None:
    """The manager whose signed approval labels ``run`` carries for its parameters as they
    are now, or None."""
    labels = dict(run.labels or {})
    manager, stamp = labels.get(APPROVER_LABEL), labels.get(APPROVAL_LABEL)
    if not isinstance(manager, str) or not isinstance(stamp, str) or ":" not in stamp:
        return None
    kid, sig = stamp.split(":", 1)
    body = _approval_payload(lab, run, dict(run.parameters or {}), manager)
    try:
        verifier.verify(body, {"key": kid, "sig": sig})
    except SignatureInvalid:
        return None
    return manager


def effective_approval(run: Any, lab: str, verifier: Verifier) -> str:
    """The approval ``run`` holds now: its signature's, or a manager's signed approval of
    it as it is now."""
    approval = approval_of(dict(run.parameters or {}))
    if approval == APPROVAL_REQUIRED:
        manager = label_approval(run, lab, verifier)
        if manager is not None:
            return approved_by(manager)
    return approval


def refusal(run: Any, lab: str, verifier: Verifier) -> str | None:
    """Why a worker of ``lab`` must not run ``run`` (a queued Prefect flow run), or None if
    the gateway signed exactly what it holds."""
    parameters = dict(run.parameters or {})
    stamp = parameters.get(SIGNATURE)
    if not isinstance(stamp, Mapping):
        return "it carries no signature of the gateway: it was not submitted through remotelab"
    exp = Experiment.from_flow_run(run)
    key = str(run.idempotency_key or "")
    if key != str(stamp.get("submission") or ""):
        return "its signature belongs to another submission: it was copied onto this run"
    if stamp.get("priority") != exp.priority.value:
        return (
            f"its priority was changed outside the gateway (signed {stamp.get('priority')}, "
            f"now {exp.priority.value})"
        )
    approval = str(stamp.get("approval") or "")
    body = payload(lab, key, parameters, exp.priority.value, approval)
    try:
        verifier.verify(body, {k: stamp.get(k) for k in ("key", "sig")})
    except SignatureInvalid as exc:
        return str(exc)
    if approval == APPROVAL_REQUIRED and label_approval(run, lab, verifier) is None:
        return (
            "it needs a manager's approval, and the gateway signed no approval of it as it is now"
        )
    return None


__all__ = [
    "APPROVAL_LABEL",
    "APPROVAL_REQUIRED",
    "APPROVER_LABEL",
    "NO_APPROVAL",
    "REFUSED",
    "REFUSED_TAG",
    "SIGNATURE",
    "approval_labels",
    "approval_of",
    "approved_by",
    "effective_approval",
    "label_approval",
    "payload",
    "refusal",
    "resigned",
    "signed",
]
