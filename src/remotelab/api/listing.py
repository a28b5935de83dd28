"""Listing a lab's experiments page by page, however long the queue.

Prefect answers at most ``PREFECT_API_DEFAULT_LIMIT`` (200) flow runs per request; the
queue reads its answers page by page. Filters on submitter, plan and priority go to
Prefect as tags (the queue tags every experiment with them). Unfinished experiments come in
queue order (running, then queued by priority and place, then awaiting approval); finished
ones newest first, counted by Prefect. :func:`prioritise` changes a queued experiment's
priority with the queue's own moves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from remotelab.queue.models import Experiment, ExperimentState, Priority

_RANK = {
    ExperimentState.running: 0,
    ExperimentState.paused: 0,
    ExperimentState.queued: 1,
    ExperimentState.waiting_for_approval: 2,
}
_FINISHED_TYPES = {
    ExperimentState.completed: StateType.COMPLETED,
    ExperimentState.failed: StateType.FAILED,
    ExperimentState.cancelled: StateType.CANCELLED,
    ExperimentState.crashed: StateType.CRASHED,
}


def filter_tags(submitter: str | None, plan: str | None, priority: Priority | None) -> list[str]:
    tags = []
    if submitter is not None:
        tags.append(f"submitter:{submitter}")
    if plan is not None:
        tags.append(f"plan:{plan}")
    if priority is not None:
        tags.append(f"priority:{Priority(priority).value}")
    return tags


def _pages(
    queue: Any,
    states: list[ExperimentState],
    tags: list[str],
    sort: FlowRunSort,
    want: int | None = None,
) -> list[Experiment]:
    """Every experiment in ``states`` with ``tags`` (at most ``want``); the queue reads
    Prefect's answers page by page."""
    return queue.read(states, tags=tags or None, limit=want, sort=sort)


def _count_finished(queue: Any, states: list[ExperimentState], tags: list[str]) -> int:
    flt = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[_FINISHED_TYPES[s] for s in states])
        )
    )
    if tags:
        flt.tags = FlowRunFilterTags(all_=tags)
    return queue.client.count_flow_runs(
        flow_run_filter=flt,
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[queue.deployment_id])),
    )


def list_experiments(
    queue: Any,
    states: Iterable[ExperimentState],
    *,
    submitter: str | None = None,
    plan: str | None = None,
    priority: Priority | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Experiment], int]:
    """One page of the lab's experiments in ``states`` and how many match in all."""
    wanted = list(dict.fromkeys(ExperimentState(s) for s in states))
    tags = filter_tags(submitter, plan, priority)
    unfinished = [s for s in wanted if not s.finished]
    finished = [s for s in wanted if s.finished]
    items: list[Experiment] = []
    if unfinished:
        far = datetime.max.replace(tzinfo=UTC)
        items = sorted(
            _pages(queue, unfinished, tags, FlowRunSort.EXPECTED_START_TIME_ASC),
            key=lambda e: (_RANK.get(e.state, 3), e.priority.rank, e.scheduled or far),
        )
    total = len(items)
    if finished:
        total += _count_finished(queue, finished, tags)
        need = offset + limit - len(items)
        if need > 0:
            items += _pages(queue, finished, tags, FlowRunSort.END_TIME_DESC, want=need)
    return items[offset : offset + limit], total


__all__ = ["filter_tags", "list_experiments"]
