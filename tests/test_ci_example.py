"""The example lab repository of docs/ci.md: its tests pass through the installed plugin, on
its lab file's simulated twin, and the doc shows its files as they are."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLE = DOCS / "examples" / "lab-repo"
#: a file shown in docs/ci.md: a bold `path` caption, a blank line, then a fenced block
SHOWN = re.compile(r"^\*\*`([^`]+)`\*\*\n\n```[\w-]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def example_files() -> dict[str, str]:
    return {
        path.relative_to(EXAMPLE).as_posix(): path.read_text()
        for path in sorted(EXAMPLE.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_doc_shows_every_file_of_the_example_as_it_is():
    shown = dict(SHOWN.findall((DOCS / "ci.md").read_text()))
    assert shown == example_files()


def test_the_example_lab_repository_passes(pytester):
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_example_workflow_check_step_passes(pytester):
    """The workflow's `remotelab check lab.yaml --plans bench_plans` holds on the example."""
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    workflow = (EXAMPLE / ".github" / "workflows" / "ci.yml").read_text()
    assert "remotelab check lab.yaml --plans bench_plans" in workflow
    result = pytester.run(
        sys.executable, "-m", "remotelab", "check", "lab.yaml", "--plans", "bench_plans"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*hold_and_read*", "*checked * plans in *"])
