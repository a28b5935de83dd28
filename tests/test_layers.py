"""No module uses another package's private names or modules (import-linter checks the
layers; this checks what it cannot: names with a leading underscore)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MODULES = sorted((SRC / "remotelab").rglob("*.py"))


def package_of(dotted: str) -> str:
    parts = dotted.split(".")
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def cross_package_private_uses(source: str, module: str) -> list[str]:
    """The private names and modules of other remotelab packages ``source`` (the text of
    module ``module``) imports or reads."""
    here = package_of(module)
    tree = ast.parse(source, module)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("remotelab") or package_of(node.module) == here:
                continue
            if any(private(p) for p in node.module.split(".")):
                found.append(f"line {node.lineno}: from {node.module} import …")
            for alias in node.names:
                if private(alias.name):
                    found.append(f"line {node.lineno}: {alias.name} from {node.module}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("remotelab") and package_of(alias.name) != here:
                    if any(private(p) for p in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and private(node.attr)
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_private_name_of_another_package_is_used(path):
    assert cross_package_private_uses(path.read_text(), module_name(path)) == []


def test_the_check_finds_each_kind_of_private_use():
    source = (
        "from remotelab.data.export import _hidden\n"
        "import remotelab.queue._x\n"
        "from remotelab.queue import control\n"
        "control._secret()\n"
        "from remotelab.api.deps import _own\n"  # its own package: allowed
    )
    found = cross_package_private_uses(source, "remotelab.api.routes.runs")
    assert len(found) == 3, found


#: the most lines of code (no blank lines, comments or docstrings) a module holds
MAX_LINES_OF_CODE = 400


def lines_of_code(source: str) -> int:
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_is_over_the_size_of_one_role(path):
    assert lines_of_code(path.read_text()) <= MAX_LINES_OF_CODE


def test_lines_of_code_leave_out_docstrings_comments_and_blank_lines():
    source = (
        '"""Doc."""\n\n# a comment\nx = 1\n\n\ndef f():\n    """Doc\n    more."""\n    return x\n'
    )
    assert lines_of_code(source) == 3
