"""Which lab a test runs on: a marker's choice over the command line's, over the pytest
configuration's, over the shipped simulated lab."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remotelab.testing.runner import FAST, SEED

if TYPE_CHECKING:
    from remotelab.lab import Lab


def resolve(path: str | Path | None, base: Path) -> str | None:
    """``path`` relative to ``base``; a shipped lab's short name (``sim``) stays as it is."""
    from remotelab.lab import SHIPPED_LABS

    if path is None or str(path) == "":
        return None
    if str(path) in SHIPPED_LABS:
        return str(path)
    return str((base / path).resolve())


@dataclass(frozen=True)
class LabChoice:
    """A lab file (None: the shipped simulated lab), whether to load it as its simulated
    twin, and the simulated world's seed and clock speed."""

    path: str | None = None
    simulate: bool = False
    seed: int | None = SEED
    speed: float = FAST

    def load_options(self) -> dict[str, Any]:
        """The keywords of ``load_lab`` besides the path."""
        return {"seed": self.seed, "speed": self.speed, "simulate": self.simulate}

    def load(self) -> Lab:
        """The lab, connected (on its simulators when simulated)."""
        from remotelab.lab import load_lab

        return load_lab(self.path, **self.load_options())


def choose(
    marker: Mapping[str, Any] | None,
    *,
    option_path: str | None = None,
    option_simulate: bool | None = None,
    ini_path: str | None = None,
    ini_simulate: bool = False,
) -> LabChoice:
    """The lab of one test, each setting taken from the first that gives it: the test's
    ``remotelab_lab`` marker (keywords ``path``, ``simulate``, ``seed``, ``speed``), the
    command-line options, the ini settings; paths already resolved by the caller."""
    marked = dict(marker or {})
    unknown = set(marked) - {"path", "simulate", "seed", "speed"}
    if unknown:
        raise TypeError(f"remotelab_lab marker: unknown keywords {', '.join(sorted(unknown))}")
    path = marked.get("path") or option_path or ini_path or None
    if "simulate" in marked:
        simulate = bool(marked["simulate"])
    elif option_simulate is not None:
        simulate = option_simulate
    else:
        simulate = ini_simulate
    return LabChoice(
        path=path,
        simulate=simulate,
        seed=marked.get("seed", SEED),
        speed=float(marked.get("speed", FAST)),
    )


__all__ = ["LabChoice", "choose", "resolve"]
