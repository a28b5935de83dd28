"""This machine's side of the CLI (``LocalBackend``): each operation of the ``Backend``
protocol on the lab's Prefect queue, acting as the user given by ``--by``/``--submitter``."""

from __future__ import annotations

import pytest

from remotelab.cli.backend import Backend, Done
from remotelab.cli.local import LocalBackend
from remotelab.errors import CommandLineError
from remotelab.queue import ExperimentState


def test_experiment_operations_on_this_machine(prefect_api, lab_file, exq):
    side: Backend = LocalBackend(str(lab_file), api=prefect_api, by="ada")
    with side:
        assert side.lab_name() == exq.name
        assert "n" in side.schema("steps")["properties"]
        exp = side.submit("steps", {"n": 1}, priority="low")
        assert exp.submitter == "ada" and side.experiment(exp.id).priority.value == "low"
        items, total = side.experiments(states=None, submitter="ada", plan="steps", limit=100)
        assert [e.id for e in items] == [exp.id] and total == 1
        with pytest.raises(CommandLineError, match="--mine"):
            side.experiments(states=None, submitter=None, plan=None, limit=1, mine=True)
        assert side.prioritise(exp.id, "urgent").priority.value == "urgent"
        edited = side.edit(exp.id, {"n": 2})
        assert edited.params == {"n": 2} and [e["by"] for e in edited.edits] == ["ada"]
        assert side.move(exp.id, to="back").id == exp.id
        assert side.hold() == Done(exp.lab) and side.is_held()
        assert side.release() == Done(exp.lab) and not side.is_held()
        assert side.cancel(exp.id, reason="enough").state == ExperimentState.cancelled
        assert side.wait(exp.id).state == ExperimentState.cancelled
        assert exq.get(exp.id).state == ExperimentState.cancelled


def test_approval_on_this_machine(prefect_api, tmp_path):
    from queue_helpers import write_lab

    from remotelab.lab import load_lab
    from remotelab.queue import ExperimentQueue

    lab_file = write_lab(tmp_path, approval={"plans": ["steps"]})
    with ExperimentQueue(load_lab(lab_file, connect=False), api_url=prefect_api) as q:
        q.ensure()
    with (
        LocalBackend(str(lab_file), api=prefect_api, submitter="ada") as researcher,
        LocalBackend(str(lab_file), api=prefect_api, by="mia", role="manager") as manager,
    ):
        gated = researcher.submit("steps", {"n": 1}, priority="normal")
        assert gated.state == ExperimentState.waiting_for_approval
        assert manager.approve(gated.id).state == ExperimentState.queued
        refused = researcher.submit("steps", {"n": 1}, priority="normal")
        assert manager.reject(refused.id, reason="no").state == ExperimentState.cancelled
        manager.cancel(gated.id)
