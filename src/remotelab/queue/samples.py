"""A lab's samples as its queue knows them: where each is, who holds it, and which are used up.

A plan that uses up its sample (``@plan(consumes=...)``, the titration) is submitted with the
tag ``consumes``. A sample is used up once such an experiment has started on it (it ran: it has
runs, or it runs now), the sample being its parameter's value (as edited); the queue reads that
from Prefect, so the gateway and the lab machine's CLI agree, across restarts. Where a sample is and
what holds it come from the lab's live workers (their status), else from the lab file.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import StateType

from remotelab.queue.models import Experiment, lab_tag

#: the tag of every experiment whose plan uses up its sample
CONSUMES = "consumes"
#: the Prefect state types of an experiment that may have started
STARTED_TYPES = (
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.COMPLETED,
    StateType.FAILED,
    StateType.CRASHED,
    StateType.CANCELLED,
    StateType.CANCELLING,
)


def consumes_tags(definition: Any) -> list[str]:
    """The tags of an experiment of plan ``definition``: ``consumes`` if it uses a sample up."""
    return [CONSUMES] if getattr(definition, "consumes", None) else []


def consumed_sample(definition: Any, params: dict[str, Any]) -> str | None:
    """The sample a submission of plan ``definition`` uses up, if its plan uses one up."""
    param = getattr(definition, "consumes", None)
    value = params.get(param) if param else None
    return value if isinstance(value, str) and value else None


def used_up(queue: Any) -> dict[str, dict[str, Any]]:
    """The lab's used-up samples: sample → the experiment that used it up (``experiment``,
    ``plan``, ``state``, ``why``); the first one that started on it."""
    found: dict[str, dict[str, Any]] = {}
    runs = queue.prefect.runs(STARTED_TYPES, tags=[lab_tag(queue.name), CONSUMES])
    for run in runs:
        exp = Experiment.from_flow_run(run)
        ran = exp.run_uids or exp.started or exp.state.value in ("running", "paused")
        if not ran or exp.state.value == "waiting_for_approval":
            continue
        try:
            definition = queue.registry.definition(exp.plan)
        except Exception:  # a plan the lab no longer offers
            continue
        sample = consumed_sample(definition, exp.params)
        if sample is not None and sample not in found:
            found[sample] = {
                "experiment": exp.id,
                "plan": exp.plan,
                "state": exp.state.value,
                "why": f"by experiment {exp.id} ({exp.plan}, {exp.state.value})",
            }
    return found


def note_used_up(queue: Any) -> None:
    """Record the lab's used-up samples on its lab's tracker (which validation reads)."""
    tracker = getattr(queue.lab, "tracker", None)
    if tracker is not None:
        for sample, record in used_up(queue).items():
            if sample in tracker.positions:
                tracker.consumed.setdefault(sample, record["why"])


def lab_samples(queue: Any, view: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each sample of the lab file: ``id``, ``location`` (as a live worker says, else the lab
    file's), ``live`` (whether a worker said), ``lost``, ``consumed`` and ``consumed_by``
    (the experiment), ``held_by`` (the experiment holding it), ``description``,
    ``volume_ml``, ``metadata``. ``view``: the workers' merged status (asked if not given)."""
    spec = getattr(queue.lab, "spec", None)
    if spec is None:
        return []
    if view is None:
        view = queue.reservations()
    said = view.get("samples") or {}
    positions, consumed = said.get("at") or {}, dict(said.get("consumed") or {})
    used = used_up(queue)
    book = view.get("reservations") or {}
    out = []
    for sample, entry in spec.samples.items():
        record = used.get(sample)
        location = positions.get(sample, entry.location)
        out.append(
            {
                "id": sample,
                "location": location,
                "live": sample in positions,
                "lost": location == "lost",
                "consumed": record is not None or sample in consumed,
                "consumed_by": record["experiment"] if record else None,
                "why_consumed": record["why"] if record else consumed.get(sample),
                "held_by": (book.get(f"sample:{sample}") or {}).get("holder"),
                "description": entry.description,
                "volume_ml": entry.volume_ml,
                "metadata": dict(entry.metadata),
            }
        )
    return out


__all__ = [
    "CONSUMES",
    "consumed_sample",
    "consumes_tags",
    "lab_samples",
    "note_used_up",
    "used_up",
]
