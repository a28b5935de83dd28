"""Asking the operator mid-run: a plan stub and the message it yields.

``yield from ask_operator("Load tray 2, then confirm")`` suspends the plan (the lab stays
held by it) until someone answers through the queue (``remotelab answer`` / the API); the
answer is the stub's return value. ``kind="value"`` asks for a value instead of a yes/no.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bluesky.utils import Msg

#: the RunEngine command a lab worker registers to serve questions
ASK_OPERATOR = "ask_operator"


def ask_operator(prompt: str, kind: str = "confirm") -> Generator[Msg, Any, Any]:
    """Ask the operator; returns the answer (``True``/``False`` for a confirmation)."""
    if kind not in ("confirm", "value"):
        raise ValueError(f"kind must be 'confirm' or 'value', not {kind!r}")
    return (yield Msg(ASK_OPERATOR, None, prompt, kind=kind))


__all__ = ["ASK_OPERATOR", "ask_operator"]
