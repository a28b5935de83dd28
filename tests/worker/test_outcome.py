"""The outcome of a finished experiment: a pure function of what happened."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType

from remotelab.worker.outcome import decide, exit_status_of, summary


@pytest.mark.parametrize(
    ("statuses", "cancel", "error", "stopped", "expected_type", "expected_status", "words"),
    [
        (["success"], None, None, False, StateType.COMPLETED, "success", "completed: 1 run(s)"),
        (["success"], None, None, True, StateType.COMPLETED, "success", "(stopped early)"),
        ([], None, None, True, StateType.COMPLETED, None, "completed: 0 run(s)"),
        (["success", "fail"], None, None, False, StateType.FAILED, "fail", "the plan failed"),
        (["fail", "abort"], None, None, False, StateType.CANCELLED, "abort", "aborted"),
        (
            ["abort"],
            "cancelled by mia",
            None,
            False,
            StateType.CANCELLED,
            "abort",
            "cancelled by mia",
        ),
        # a cancel wins over an error raised while the plan was torn down
        (
            ["abort"],
            "cancelled",
            RuntimeError("x"),
            False,
            StateType.CANCELLED,
            "abort",
            "cancelled",
        ),
        (
            [],
            None,
            ValueError("unknown device 'nope'"),
            False,
            StateType.FAILED,
            None,
            "ValueError: unknown device 'nope'",
        ),
        (
            ["success"],
            None,
            RuntimeError("after"),
            False,
            StateType.FAILED,
            "success",
            "RuntimeError: after",
        ),
    ],
)
def test_outcome_of_each_ending(
    statuses, cancel, error, stopped, expected_type, expected_status, words
):
    outcome = decide(
        statuses,
        cancel_reason=cancel,
        error=error,
        stopped_early=stopped,
        runs=len(statuses),
        duration=1.5,
    )
    assert outcome.type == expected_type
    assert outcome.exit_status == expected_status
    assert words in outcome.message
    state = outcome.state("[worker w1]", "; devices safe")
    assert state.type == expected_type
    assert state.message.startswith("[worker w1] ") and state.message.endswith("; devices safe")


def test_exit_status_an_abort_or_failure_in_any_run_wins():
    assert exit_status_of([]) is None
    assert exit_status_of(["success", "success"]) == "success"
    assert exit_status_of(["fail", "success"]) == "fail"
    assert exit_status_of(["success", "abort", "fail"]) == "abort"


def test_summary_names_every_run_with_its_data_link_and_the_error():
    class Exp:
        id, plan, params, submitter, role = "e1", "measure", {"num": 2}, "ada", "researcher"

        class priority:
            value = "normal"

    error = RuntimeError("heater tripped")
    outcome = decide(["fail"], error=error)
    text = summary(
        Exp,
        outcome,
        lab="sim",
        worker="w1",
        uids=["u1", "u2"],
        duration=2.0,
        error=error,
        data_url="http://lab/runs/{uid}",
    )
    assert "| outcome | failed |" in text and "| exit status | fail |" in text
    assert "[data](http://lab/runs/u1)" in text and "`u2`" in text
    assert "**Error:** RuntimeError: heater tripped" in text


def test_a_failed_status_is_reported_by_the_error_that_failed_it():
    from bluesky.utils import FailedStatus

    from remotelab.worker.outcome import error_text

    try:
        try:
            raise TimeoutError("thermometer: measure did not finish within 120 s")
        except TimeoutError as cause:
            raise FailedStatus("Status(obj=Thermometer(...))") from cause
    except FailedStatus as failed:
        assert (
            error_text(failed) == "TimeoutError: thermometer: measure did not finish within 120 s"
        )
        assert "did not finish" in decide([], error=failed).message
