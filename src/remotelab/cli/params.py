"""Plan parameters on the command line: ``-p key=value`` for ``run``, ``submit`` and ``edit``.

A value is JSON if it parses (numbers, ``true``/``false``/``null``, ``[lists]``,
``{objects}``, ``"strings"``), a comma-separated list of such values if it has commas, else
the text itself. A single value given for a parameter whose schema takes a list becomes a
one-item list (``-p detectors=thermometer``); ``null`` stays ``null`` (``edit`` removes the
parameter).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remotelab.errors import PlanValidationError, RemotelabError


def parse_value(text: str) -> Any:
    """One ``-p`` value: JSON, a comma list of JSON-or-text items, or the text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def takes_list(prop: dict[str, Any]) -> bool:
    """Whether a JSON Schema property takes an array and no plain value."""
    options = prop.get("anyOf") or prop.get("oneOf") or [prop]
    types: set[Any] = set()
    for option in options:
        kind = option.get("type")
        types.update(kind if isinstance(kind, list) else [kind])
    return "array" in types and not types & {"string", "number", "integer", "boolean"}


def parse_params(
    items: list[str], schema: dict[str, Any] | None = None, *, plan: str | None = None
) -> dict[str, Any]:
    """``["num=3", "detectors=thermometer,ph_meter"]`` → ``{"num": 3, "detectors": [...]}``.

    With the plan's JSON ``schema``, single values of list parameters become one-item lists.
    A malformed item or a key given twice raises :class:`PlanValidationError` naming it.
    """
    properties = (schema or {}).get("properties", {})
    params: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append({"param": None, "message": f"-p {item!r}: write -p key=value"})
            continue
        if key in params:
            problems.append({"param": key, "message": "given more than once"})
            continue
        value = parse_value(text)
        if value is not None and key in properties and takes_list(properties[key]):
            value = value if isinstance(value, list) else [value]
        params[key] = value
    if problems:
        name = plan or (schema or {}).get("title") or "?"
        raise PlanValidationError(name, problems)
    return params


def read_params(
    items: list[str], schema: Callable[[], dict[str, Any]], *, plan: str | None = None
) -> dict[str, Any]:
    """:func:`parse_params` with the schema fetched only if there are items; an unknown plan
    or experiment is left for the submission or edit to report."""
    if not items:
        return {}
    try:
        found = schema()
    except RemotelabError:
        found = None
    return parse_params(items, found, plan=plan)


__all__ = ["parse_params", "parse_value", "read_params", "takes_list"]
