"""Shared fixtures: the shipped simulated lab on a fast clock and a plain RunEngine."""

from __future__ import annotations

import pytest
from bluesky import RunEngine

from remotelab.lab import load_lab

#: clock speed for tests: simulated minutes pass in tens of milliseconds
FAST = 2000.0


@pytest.fixture
def lab():
    """The shipped simulated lab, seed 42, at a high clock speed."""
    with load_lab(speed=FAST) as the_lab:
        yield the_lab


@pytest.fixture
def RE():
    """A RunEngine that needs no main thread and no signal handlers; collects its documents."""
    engine = RunEngine({}, context_managers=[])
    engine.documents = []
    engine.subscribe(lambda name, doc: engine.documents.append((name, doc)))
    return engine
