"""A publisher that records what reaches it, for the tests of how a RunEngine is wired."""

from __future__ import annotations

from typing import Any


class RecordingPublisher:
    """Stands in for a StreamPublisher: documents, engine states, and whether the store
    already had the run of ``experiment_id`` when its start document arrived."""

    def __init__(self, store: Any, experiment_id: str):
        self.store = store
        self.experiment_id = experiment_id
        self.documents: list[str] = []
        self.states: list[str] = []
        self.experiments: list[str | None] = []  # the experiment each state came with
        self.start_was_stored: list[bool] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.documents.append(name)
        if name == "start":
            self.start_was_stored.append(bool(self.store.runs(experiment_id=self.experiment_id)))

    def on_engine_state(
        self, new_state: Any, old_state: Any = None, experiment: str | None = None
    ) -> None:
        self.states.append(str(new_state))
        self.experiments.append(experiment)
