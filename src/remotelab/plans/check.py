"""Checking a lab file and its plans before a lab runs them (``remotelab check``).

:func:`check_lab` parses the lab file, imports every plan module, and for each plan with
example parameters: validates the example against the lab, walks the plan with
``bluesky.simulators.summarize_plan`` on the lab loaded without connecting (no device
touched), runs it on the lab's simulated twin on a fast clock, and checks that the run
succeeded and left every device at its declared safe state. Each step is a
:class:`StepResult`; the whole is a :class:`CheckReport`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from remotelab.errors import RemotelabError
from remotelab.plans.holds import install_local_holds
from remotelab.plans.registry import BUILTIN_MODULES, PlanRegistry, plans_in_module

if TYPE_CHECKING:
    from remotelab.lab import Lab

#: the subject of the steps that concern the lab file as a whole
LAB_FILE = "(lab file)"
#: the clock speed plans run at on the twin
CHECK_SPEED = 2000.0


@dataclass(frozen=True)
class StepResult:
    """One named step of a check: ``subject`` is a plan, a plan module or :data:`LAB_FILE`."""

    subject: str
    step: str
    ok: bool
    message: str = ""
    seconds: float = 0.0
    #: True for a plan's steps, False for the lab file's and the modules' imports
    is_plan: bool = True
    skipped: bool = False


@dataclass
class CheckReport:
    """Every step of a check, in order, and how long it took."""

    lab: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def plans(self) -> list[str]:
        """The plans checked (each with at least one step), in order."""
        return list(dict.fromkeys(s.subject for s in self.steps if s.is_plan))

    def failures(self) -> list[StepResult]:
        return [s for s in self.steps if not s.ok]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]


class _Steps:
    """Records steps on a report, timing each and turning its error into a failure."""

    def __init__(self, report: CheckReport):
        self.report = report

    def add(self, result: StepResult) -> StepResult:
        self.report.steps.append(result)
        return result

    @contextlib.contextmanager
    def step(self, subject: str, name: str, *, is_plan: bool = True) -> Iterator[list[str]]:
        """A step: the body may append a message to the yielded list; an exception fails it."""
        start = time.monotonic()
        note: list[str] = []
        try:
            yield note
        except Exception as exc:
            self.add(StepResult(subject, name, False, describe_error(exc), _since(start), is_plan))
            raise _StepFailed from None
        self.add(StepResult(subject, name, True, "; ".join(note), _since(start), is_plan))


class _StepFailed(Exception):
    """A step failed (recorded already): the steps after it are not taken."""


def _since(start: float) -> float:
    return round(time.monotonic() - start, 4)


def describe_error(exc: BaseException) -> str:
    """The remotelab error at the root of ``exc`` (a failed status's), else ``exc`` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RemotelabError):
            return str(seen)
        status: Any = seen.args[0] if seen.args else None
        inner = None
        if hasattr(status, "exception"):
            with contextlib.suppress(Exception):
                inner = status.exception()
        seen = inner or seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def import_plans(spec: str) -> ModuleType:
    """The plan module ``spec``: a dotted module name, or the path of a ``.py`` file."""
    if spec.endswith(".py") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise ImportError(f"no file {spec}")
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        if loader_spec is None or loader_spec.loader is None:  # pragma: no cover
            raise ImportError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[path.stem] = module
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(path.stem, None)
            raise
        return module
    return importlib.import_module(spec)


def _import_step(steps: _Steps, registry: PlanRegistry, spec: str) -> None:
    with contextlib.suppress(_StepFailed), steps.step(spec, "import", is_plan=False) as note:
        try:
            module = import_plans(spec)
        except Exception as exc:
            raise ImportError(f"cannot import plan module {spec}: {describe_error(exc)}") from None
        definitions = plans_in_module(module)
        if not definitions:
            raise ImportError(f"plan module {spec} defines no plans")
        for definition in definitions:
            registry.register(definition)
        note.append(", ".join(d.name for d in definitions))


def _walk(registry: PlanRegistry, validated: Any, offline: Lab) -> str:
    from bluesky.simulators import summarize_plan

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summarize_plan(registry.build(validated, offline))
    return f"{len(out.getvalue().splitlines())} lines of plan summary"


def _run(registry: PlanRegistry, name: str, example: dict[str, Any], twin: Lab) -> str:
    """Run the example on ``twin`` (brought to its safe state first); raise unless success."""
    from bluesky import RunEngine

    from remotelab.plans.engine import close_engine

    twin.safe_state()
    validated = registry.validate(name, example, lab=twin)
    engine = RunEngine({}, context_managers=[])
    install_local_holds(engine)
    stops: list[dict[str, Any]] = []
    engine.subscribe(lambda n, doc: stops.append(doc) if n == "stop" else None)
    try:
        engine(registry.build(validated, twin))
    finally:
        close_engine(engine)
    bad = [
        f"{d.get('exit_status')}: {d.get('reason') or 'no reason given'}"
        for d in stops
        if d.get("exit_status") != "success"
    ]
    if not stops:
        raise RuntimeError("the plan opened no run")
    if bad:
        raise RuntimeError(f"run ended {'; '.join(bad)}")
    return f"{len(stops)} run(s), exit status success"


def check_plan(
    steps: _Steps,
    registry: PlanRegistry,
    name: str,
    offline: Lab,
    load_twin: Callable[[], Lab],
) -> None:
    """The steps of one plan: validate its example, walk it, run it, check the safe state."""
    example = registry.definition(name).example
    if not example:
        steps.add(
            StepResult(name, "example", True, "no example parameters: not run", 0, True, True)
        )
        return
    with contextlib.suppress(_StepFailed):
        with steps.step(name, "validate") as note:
            validated = registry.validate(name, example, lab=offline)
            note.append(f"devices {', '.join(validated.devices) or 'none'}")
        with steps.step(name, "walk") as note:
            note.append(_walk(registry, validated, offline))
        twin = None
        try:
            with steps.step(name, "run") as note:
                twin = load_twin()
                note.append(_run(registry, name, example, twin))
            with steps.step(name, "safe state") as note:
                unsafe = twin.unsafe_devices()
                if unsafe:
                    raise RuntimeError(
                        "left off its safe state: "
                        + "; ".join(f"{dev}: {why}" for dev, why in unsafe.items())
                    )
                note.append("every device at its safe state")
        finally:
            if twin is not None:
                twin.close()


def check_lab(
    path: str | Path | None,
    plan_modules: Iterable[str] = (),
    *,
    simulate: bool = True,
    speed: float = CHECK_SPEED,
    on_plans: Callable[[list[str]], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
) -> CheckReport:
    """Check the lab file at ``path`` (or a shipped lab's name) and its plans.

    ``plan_modules`` are added to the built-in ones and the lab file's ``plans.modules``.
    Plans run on the lab's simulated twin (``simulate=False``: on the lab as the file
    describes it). ``on_plans`` is told the plans about to be checked, ``on_plan`` each plan
    once checked.
    """
    from remotelab.lab import load_lab

    start = time.monotonic()
    report = CheckReport(lab=str(path or "sim"))
    steps = _Steps(report)
    logging.getLogger("bluesky").addHandler(logging.NullHandler())
    try:
        with steps.step(LAB_FILE, "parse", is_plan=False) as note:
            offline = load_lab(path, connect=False, simulate=simulate)
            report.lab = offline.name
            note.append(f"lab {offline.name}: {len(offline.devices)} devices")
    except _StepFailed:
        report.seconds = _since(start)
        return report
    try:
        registry = PlanRegistry()  # every plan, whatever the roles may run
        modules = [*BUILTIN_MODULES, *offline.spec.plans.modules, *plan_modules]
        for spec in dict.fromkeys(modules):
            _import_step(steps, registry, spec)
        names = registry.names()
        if on_plans is not None:
            on_plans(names)
        for name in names:
            check_plan(
                steps,
                registry,
                name,
                offline,
                lambda: load_lab(path, speed=speed, simulate=simulate),
            )
            if on_plan is not None:
                on_plan(name)
    finally:
        offline.close()
    report.seconds = _since(start)
    return report


__all__ = ["LAB_FILE", "CheckReport", "StepResult", "check_lab", "describe_error"]
