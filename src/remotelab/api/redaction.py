"""Other users' experiments left out of what a lab shows (a lab file's ``visibility: own``).

Pure functions over what the gateway relays: a text naming experiments, the alerts of the
lab's workers, a worker's live status. ``sees(experiment_id)`` says whether the caller may see
an experiment; an id of one they may not see becomes :data:`HIDDEN`, an item about one is left
out. Which experiments a caller may see is :mod:`remotelab.api.visibility`'s to say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

#: what an experiment id the caller may not see becomes in a text
HIDDEN = "(hidden)"
#: an experiment id (a UUID) in a text
EXPERIMENT_ID = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE
)
#: the fields of a worker's live status about its latest run
LATEST_RUN = ("experiment_id", "plan_name", "run_uid", "descriptors", "progress", "exit_status")

#: whether the caller may see the experiment of this id
Sees = Callable[[str], bool]


def scrub(text: str, sees: Sees) -> str:
    """``text`` with the id of each experiment the caller may not see replaced by HIDDEN."""
    return EXPERIMENT_ID.sub(lambda m: m[0] if sees(m[0].lower()) else HIDDEN, text)


def visible_alerts(
    alerts: Iterable[dict[str, Any]], sees: Sees, shows: Sees | None = None
) -> list[dict[str, Any]]:
    """The alerts the caller may see: none about an experiment they may not see (a stall, an
    unanswered question); in the others' messages (the lab held …), the ids ``shows`` (default
    ``sees``) refuses hidden."""
    out = []
    for alert in alerts:
        about = alert.get("experiment")
        if about and not sees(str(about)):
            continue
        message = alert.get("message")
        out.append({**alert, "message": scrub(message, shows or sees)} if message else dict(alert))
    return out


def reduce_status(doc: dict[str, Any], sees: Sees) -> dict[str, Any]:
    """A worker's live status as the caller may see it: ``running`` holds only the
    experiments they may see; the latest run (``experiment_id``, ``plan_name``, ``run_uid``,
    ``progress`` …) is theirs, else the latest of theirs that runs, else blank; the alerts
    they may see. The worker's ``state`` (idle, running, paused) stays: that the lab is busy
    is the lab's, as its devices' ``busy``."""
    running = doc.get("running")
    kept = (
        {key: entry for key, entry in running.items() if sees(str(key))}
        if isinstance(running, dict)
        else {}
    )
    out = {**doc, "running": kept, "alerts": visible_alerts(doc.get("alerts") or [], sees)}
    latest = doc.get("experiment_id")
    if latest and sees(str(latest)):
        return out
    for field in LATEST_RUN:
        out.pop(field, None)
    out.update(experiment_id=None, plan_name=None, run_uid=None, descriptors=[])
    out["progress"] = {"done": 0, "total": None}
    if kept:
        key, entry = list(kept.items())[-1]
        out.update(
            experiment_id=key,
            plan_name=entry.get("plan_name"),
            run_uid=entry.get("run_uid"),
            progress=entry.get("progress") or out["progress"],
        )
    return out


__all__ = [
    "EXPERIMENT_ID",
    "HIDDEN",
    "LATEST_RUN",
    "Sees",
    "reduce_status",
    "scrub",
    "visible_alerts",
]
