"""Listing a lab's experiments page by page, however long the queue.

Filters on submitter, plan and priority go to Prefect as tags (the queue tags every
experiment with them). Unfinished experiments come in queue order (running, then queued by
priority and place, then awaiting approval); finished ones newest first, counted by Prefect.
The queue's adapter on Prefect reads its answers page by page. Each unfinished experiment of
a page says why it waits (``waiting_for``), as the lab's workers tell. An experiment may be
named by a unique prefix of its id (:func:`resolve_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.client.schemas.sorting import FlowRunSort

from remotelab.errors import ExperimentNotFound, QueueError
from remotelab.queue.models import Experiment, ExperimentState, Priority, queue_order

#: the shortest id prefix looked up (shorter ones are not experiment ids)
MIN_PREFIX = 4
HEX = frozenset("0123456789abcdef-")


def resolve_id(queue: Any, experiment_id: str | UUID, *, tags: list[str] | None = None) -> str:
    """The full id of the experiment ``experiment_id`` names: itself if it is a full id, else
    the one experiment of the lab (with every tag in ``tags``: a submitter's, say) whose id
    starts with it (at least :data:`MIN_PREFIX` characters). :class:`ExperimentNotFound` if
    none does, :class:`QueueError` naming them if several do."""
    text = str(experiment_id).strip().lower()
    try:
        return str(UUID(text))
    except ValueError:
        pass
    if len(text) < MIN_PREFIX or not set(text) <= HEX:
        raise ExperimentNotFound(f"no experiment {experiment_id} in lab {queue.name}")
    found = [str(r.id) for r in queue.prefect.runs(tags=tags) if str(r.id).startswith(text)]
    if not found:
        raise ExperimentNotFound(f"no experiment {experiment_id} in lab {queue.name}")
    if len(found) > 1:
        raise QueueError(
            f"{experiment_id} is the start of {len(found)} experiments' ids "
            f"({', '.join(sorted(found)[:5])}…): give more of it"
        )
    return found[0]


def filter_tags(submitter: str | None, plan: str | None, priority: Priority | None) -> list[str]:
    tags = []
    if submitter is not None:
        tags.append(f"submitter:{submitter}")
    if plan is not None:
        tags.append(f"plan:{plan}")
    if priority is not None:
        tags.append(f"priority:{Priority(priority).value}")
    return tags


def list_experiments(
    queue: Any,
    states: Iterable[ExperimentState],
    *,
    submitter: str | None = None,
    plan: str | None = None,
    priority: Priority | None = None,
    limit: int = 100,
    offset: int = 0,
    annotate: bool = True,
) -> tuple[list[Experiment], int]:
    """One page of the lab's experiments in ``states`` and how many match in all
    (``annotate``: with ``waiting_for`` from the workers)."""
    wanted = list(dict.fromkeys(ExperimentState(s) for s in states))
    tags = filter_tags(submitter, plan, priority) or None
    unfinished = [s for s in wanted if not s.finished]
    finished = [s for s in wanted if s.finished]
    items: list[Experiment] = []
    if unfinished:
        items = sorted(queue.read(unfinished, tags=tags), key=queue_order)
    total = len(items)
    if finished:
        total += queue.count(finished, tags=tags)
        need = offset + limit - len(items)
        if need > 0:
            items += queue.read(finished, tags=tags, limit=need, sort=FlowRunSort.END_TIME_DESC)
    page = items[offset : offset + limit]
    if annotate and hasattr(queue, "annotate"):
        page = queue.annotate(page)
    return page, total


__all__ = ["MIN_PREFIX", "filter_tags", "list_experiments", "resolve_id"]
