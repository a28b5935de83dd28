"""Helpers of the reliability tests."""

from __future__ import annotations

import json
from pathlib import Path


def read_docs(path: Path) -> list:
    """The documents a worker process wrote, one JSON line each (a line cut by a kill left
    out)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(tuple(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return out
