"""The example lab repository of docs/ci.md: its tests pass through the installed plugin, on
its lab file's simulated twin, and the doc shows its files as they are."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from remotelab.testing import twin_available

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


@pytest.mark.skipif(
    not twin_available(),
    reason="the example loads its lab file as its simulated twin: needs load_lab(simulate=True)",
)
def test_the_example_lab_repository_passes(pytester):
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
