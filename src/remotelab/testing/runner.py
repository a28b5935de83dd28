"""A RunEngine for tests, and running a plan on a lab the way a submission runs."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remotelab.testing.results import Document, PlanResult

#: the RunEngines :func:`engine` made and that are still alive (for :func:`close_engines`)
MADE: weakref.WeakSet[Any] = weakref.WeakSet()

if TYPE_CHECKING:
    from bluesky import RunEngine

    from remotelab.lab import Lab
    from remotelab.plans.registry import PlanRegistry

#: the clock speed of labs in tests: simulated minutes pass in tens of milliseconds
FAST = 2000.0
#: the seed of the simulated world in tests
SEED = 42


def engine(store: Callable[[str, dict[str, Any]], Any] | None = None) -> RunEngine:
    """A RunEngine that needs no main thread and no signal handlers, serving the plans'
    holds of shared devices on a book of its own; ``.documents`` collects ``(name, doc)``.

    ``store`` (a :class:`~remotelab.data.RunStore`) is attached first, as the worker does.
    """
    from bluesky import RunEngine

    from remotelab.data.wiring import attach
    from remotelab.plans.holds import install_local_holds

    re = RunEngine({}, context_managers=[])
    MADE.add(re)
    install_local_holds(re)
    if store is not None:
        attach(re, store=store)
    documents: list[Document] = []
    re.documents = documents  # type: ignore[attr-defined]
    re.subscribe(lambda name, doc: documents.append((name, doc)))
    return re


class PlanRunner:
    """``runner(name, **params)``: validate a plan's parameters with the lab's registry as a
    submission is validated (as ``role``), build it with provenance, run it on ``engine``.

    Rejected parameters raise the registry's typed errors (``PlanValidationError``,
    ``PlanNotAllowedError`` of :mod:`remotelab.errors`); a plan that fails raises what the
    RunEngine raises.
    """

    def __init__(
        self,
        lab: Lab,
        engine: RunEngine,
        *,
        role: str = "manager",
        registry: PlanRegistry | None = None,
    ):
        self.lab, self.engine, self.role = lab, engine, role
        self._registry = registry

    @property
    def registry(self) -> PlanRegistry:
        """The lab's plan registry (built-in plans, the lab file's modules and role rules)."""
        if self._registry is None:
            from remotelab.plans.registry import registry_for

            self._registry = registry_for(self.lab)
        return self._registry

    def as_role(self, role: str) -> PlanRunner:
        """The same runner, submitting as ``role`` (the lab's role rules apply)."""
        return PlanRunner(self.lab, self.engine, role=role, registry=self._registry)

    def __call__(self, name: str, /, **params: Any) -> PlanResult:
        validated = self.registry.validate(name, params, lab=self.lab, role=self.role)
        md = {"experiment_id": f"test-{uuid.uuid4().hex[:12]}", "submitter": "pytest"}
        plan = self.registry.build(validated, self.lab, md=md)
        documents: list[Document] = []
        token = self.engine.subscribe(lambda doc_name, doc: documents.append((doc_name, doc)))
        try:
            self.engine(plan)
        finally:
            self.engine.unsubscribe(token)
        return PlanResult(validated.name, validated.params, documents)


def close_engines() -> None:
    """Close the event loops of every idle RunEngine :func:`engine` made (a test session
    making hundreds would otherwise run out of file descriptors)."""
    from remotelab.plans.engine import close_engine

    for made in list(MADE):
        close_engine(made)


__all__ = ["FAST", "SEED", "PlanRunner", "close_engines", "engine"]
