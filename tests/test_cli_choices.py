"""Options with a fixed set of values list them in ``--help`` and refuse another in one line,
through a gateway and on this machine; the CLI's lists are the model's."""

from __future__ import annotations

import typing

import pytest
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.cli.target import EventName, Place, PriorityName, RoleName, StateName
from remotelab.notify import SUBSCRIBABLE
from remotelab.plans.registry import ROLES
from remotelab.queue import ExperimentState, Priority

GATEWAY = ["--url", "http://127.0.0.1:9", "--token", "rl_x"]  # never reached: refused first


def test_the_choices_are_the_models():
    assert typing.get_args(PriorityName) == tuple(p.value for p in Priority)
    assert [s.value for s in StateName] == [s.value for s in ExperimentState]
    assert typing.get_args(RoleName) == ROLES
    assert [e.value for e in EventName] == [k.value for k in SUBSCRIBABLE]
    assert typing.get_args(Place) == ("front", "back")


BAD = [
    (["submit", "measure", "--priority", "asap"], "'asap' is not one of 'urgent', 'normal', 'low'"),
    (["prioritise", "E-1", "asap"], "'asap' is not one of 'urgent', 'normal', 'low'"),
    (["move", "E-1", "--to", "middle"], "'middle' is not one of 'front', 'back'"),
    (["queue", "--state", "done"], "'done' is not one of 'waiting_for_approval'"),
    (["export", "R-1", "--format", "xlsx"], "'xlsx' is not one of 'csv', 'json', 'hdf5'"),
    (["notify", "add", "json://x", "--event", "all"], "'all' is not one of 'experiment_failed'"),
]


@pytest.mark.parametrize("side", [[], GATEWAY, ["--local"]], ids=["default", "gateway", "local"])
@pytest.mark.parametrize(("args", "said"), BAD, ids=[b[0][0] for b in BAD])
def test_a_value_not_in_the_choices_is_refused_in_one_line(args, said, side):
    result = CliRunner().invoke(app, [*args, *side])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and said in errors[0], result.output
    assert "Traceback" not in result.output


def test_help_lists_the_choices():
    shown = CliRunner().invoke(app, ["submit", "--help"]).output
    assert "urgent|normal|low" in shown and "observer|researcher|manager|admin" in shown
    assert "front|back" in CliRunner().invoke(app, ["move", "--help"]).output
    assert "csv|json|hdf5" in CliRunner().invoke(app, ["export", "--help"]).output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["submit", "measure", "--priority", "asap", *GATEWAY], "'asap' is not one of"),
        (["nonsense"], "No such command 'nonsense'"),
        (["queue", "--local", "--api", "http://127.0.0.1:9/api"], "cannot reach the service"),
        (["queue", *GATEWAY], "cannot reach the gateway"),
    ],
    ids=["choice", "command", "prefect-down", "gateway-down"],
)
def test_the_installed_command_says_a_usage_error_or_a_service_down_in_one_line(args, said):
    """As a user runs it (``remotelab …``, not through the test runner): one line on stderr,
    no usage block, no traceback, exit status 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTELAB_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "remotelab", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], done.stderr
