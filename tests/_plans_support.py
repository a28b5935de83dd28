"""Helpers shared by the plan tests: a fast simulated lab, a RunEngine that keeps its documents
(``engine``, from remotelab.testing)."""

from __future__ import annotations

from pathlib import Path

from bluesky import RunEngine

from remotelab.lab import load_lab, shipped_lab_text
from remotelab.testing import engine
from remotelab.testing import events as events_in

#: clock speed for plan tests: simulated minutes pass in tens of milliseconds
FAST = 5000.0


def fast_lab(seed: int | None = None, path: str | Path | None = None):
    return load_lab(path, seed=seed, speed=FAST)


def events(re: RunEngine, stream: str = "primary") -> list[dict]:
    return events_in(re.documents, stream)


def start_doc(re: RunEngine) -> dict:
    return next(d for n, d in re.documents if n == "start")


def stop_doc(re: RunEngine) -> dict:
    return next(d for n, d in re.documents if n == "stop")


def lab_file(tmp_path: Path, extra: str) -> Path:
    """The shipped simulated lab's file with ``extra`` YAML appended."""
    path = tmp_path / "lab.yaml"
    path.write_text(shipped_lab_text("sim") + "\n" + extra)
    return path


__all__ = ["FAST", "engine", "events", "fast_lab", "lab_file", "start_doc", "stop_doc"]
