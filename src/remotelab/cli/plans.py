"""What ``remotelab plans`` does on this machine (the lab's plans), and ``remotelab run PLAN
-p key=value …``, which validates one and runs it on the local (by default simulated) lab
with a live table and a progress bar, keeps the run in the run store and leaves the lab in
its safe state."""

from __future__ import annotations

import json
import logging
import signal
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import typer
from bluesky import RunEngine
from bluesky.callbacks.core import CallbackBase
from bluesky.utils import RunEngineInterrupted
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.cli.params import parse_params
from remotelab.cli.target import SIMULATE, RoleName
from remotelab.data import attach
from remotelab.errors import PlanValidationError, RemotelabError, SafeStateError
from remotelab.lab import Lab, load_lab
from remotelab.plans import registry_for
from remotelab.plans.engine import close_engine
from remotelab.plans.holds import install_local_holds
from remotelab.plans.provenance import json_safe

LAB_OPTION = typer.Option(
    None, "--lab", "-l", help="Lab file (YAML); default: the shipped simulated lab."
)
PARAM_OPTION = typer.Option(
    [], "--param", "-p", help="A parameter as key=value (JSON values; a,b for lists)."
)
ROLE_OPTION = typer.Option("manager", "--role", help="Run as this role (lab role rules).")
MAX_COLUMNS = 8


# -- the live view -------------------------------------------------------------------------------
def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | str | bool) or (
        hasattr(value, "shape") and getattr(value, "shape", None) == ()
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class LiveView(CallbackBase):
    """A rich table of the primary stream's readings and a progress bar, live."""

    def __init__(self, live: Live, title: str):
        super().__init__()
        self.live, self.title = live, title
        self.table = Table(title=title)
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("points", total=None)
        self.columns: list[str] | None = None
        self.hinted: list[str] = []
        self.primary: set[str] = set()
        self.extra: list[tuple[str, dict]] = []
        self.exit_status = ""

    def render(self) -> Group:
        return Group(self.table, self.progress)

    def start(self, doc):
        self.progress.update(self.task, total=doc.get("num_points"))

    def descriptor(self, doc):
        if doc.get("name") != "primary":
            return
        self.primary.add(doc["uid"])
        hinted = [f for hint in doc.get("hints", {}).values() for f in hint.get("fields", [])]
        self.hinted = [f for f in hinted if f in doc["data_keys"]]

    def event(self, doc):
        data = doc["data"]
        if doc["descriptor"] not in self.primary:
            self.extra.append((doc["descriptor"], data))
            return
        if self.columns is None:
            keys = self.hinted or [k for k, v in data.items() if _scalar(v)]
            self.columns = [k for k in keys if _scalar(data.get(k))][:MAX_COLUMNS]
            self.table.add_column("#", justify="right")
            for key in self.columns:
                self.table.add_column(key, justify="right")
        self.table.add_row(str(doc["seq_num"]), *(_fmt(data.get(k, "")) for k in self.columns))
        self.progress.advance(self.task)
        self.live.refresh()

    def stop(self, doc):
        self.exit_status = doc.get("exit_status", "")


#: the RunEngines whose plan Ctrl-C interrupted
_INTERRUPTED: weakref.WeakSet[RunEngine] = weakref.WeakSet()


@contextmanager
def abort_on_sigint(engine: RunEngine) -> Iterator[None]:
    """While a plan runs, Ctrl-C aborts it at once (cleanup runs, exit status ``abort``).

    Use as a RunEngine context manager: ``RunEngine({}, context_managers=[abort_on_sigint])``.
    """

    def handler(signum, frame):
        _INTERRUPTED.add(engine)
        if not engine.state.is_idle:
            with suppress(Exception):
                engine.abort("interrupted by the user (Ctrl-C)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _root_cause(exc: BaseException) -> BaseException:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RemotelabError):
            return seen
        inner = getattr(seen, "args", ())
        status_exc = None
        if inner and hasattr(inner[0], "exception"):
            try:
                status_exc = inner[0].exception()
            except Exception:
                status_exc = None
        seen = status_exc or seen.__cause__ or seen.__context__
    return exc


def execute(lab: Lab, plan, engine: RunEngine) -> tuple[str, BaseException | None]:
    """Run ``plan``; on a failure or Ctrl-C abort the run and bring the lab to its safe state.

    Returns ``("success" | "abort" | "fail", error)``.
    """
    _INTERRUPTED.discard(engine)
    try:
        engine(plan)
    except RunEngineInterrupted:
        if not engine.state.is_idle:
            with suppress(Exception):
                engine.abort("interrupted by the user")
        lab.safe_state()
        return "abort", None
    except (Exception, KeyboardInterrupt) as exc:
        try:
            if engine.state != "idle":
                engine.halt()
        finally:
            lab.safe_state()
        return "fail", _root_cause(exc)
    if engine in _INTERRUPTED:
        lab.safe_state()
        return "abort", None
    return "success", None


# -- commands ------------------------------------------------------------------------------------
def _describe_params(schema: dict) -> str:
    lines = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        bits = []
        if name in required:
            bits.append("required")
        elif "default" in prop:
            bits.append(f"default {json.dumps(prop['default'])}")
        if prop.get("unit"):
            bits.append(prop["unit"])
        if prop.get("device_kind"):
            bits.append(f"device: {prop['device_kind']}")
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")):
            if key in prop:
                bits.append(f"{sign} {prop[key]}")
        lines.append(f"{name} ({', '.join(bits)})" if bits else name)
    return "\n".join(lines)


def plans(
    lab_file: Path | None,
    name: str | None,
    *,
    role: str | None,
    as_json: bool,
    simulate: bool = False,
) -> None:
    """The lab's plans with their parameters (one plan: its JSON Schema)."""
    lab = load_lab(lab_file, connect=False, simulate=simulate)
    try:
        registry = registry_for(lab)
    finally:
        lab.close()
    if name is not None:
        console.print_json(json.dumps(registry.schema(name)))
        return
    found = registry.describe()
    if role is not None:
        allowed = set(registry.allowed(role))
        found = [p for p in found if p["name"] in allowed]
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table(title=f"plans of lab {lab.name}", show_lines=True)
    table.add_column("plan", style="bold")
    table.add_column("what it does")
    table.add_column("parameters")
    for entry in found:
        table.add_row(entry["name"], entry["description"], _describe_params(entry["schema"]))
    console.print(table)


def _open_store():
    """The run store of the settings' data directory (``REMOTELAB_DATA_DIR``).

    No plot is drawn at run end (that would add seconds to every run); ``remotelab plot``
    draws one when asked.
    """
    from remotelab.data import RunStore

    return RunStore(plots=False)


def _report_runs(experiment_id: str, run_uids: list[str], store: Any) -> None:
    """Print the experiment id, the run uids and how to get the data out."""
    console.print(f"[bold]experiment[/] {experiment_id}")
    for uid in run_uids:
        console.print(f"[bold]run[/] {uid}")
    if store is None:
        console.print("not stored (--no-store)")
    elif run_uids:
        console.print(f"stored in {store.path}")
        console.print(f"export it: remotelab export {run_uids[0]} --format csv")


@app.command("run")
def run_plan(
    plan_name: str = typer.Argument(
        "measure", metavar="PLAN", help="Plan to run (default: measure)."
    ),
    param: list[str] = PARAM_OPTION,
    lab_file: Path | None = LAB_OPTION,
    seed: int | None = typer.Option(None, "--seed", help="Seed of the simulated world."),
    speed: float = typer.Option(
        1.0, "--speed", help="Simulated clock speed (1.0 = real time; 100 = 100× faster)."
    ),
    role: RoleName = ROLE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the run's readings as JSON."),
    store_runs: bool = typer.Option(
        True,
        "--store/--no-store",
        help="Keep the run in the run store (runs.sqlite in REMOTELAB_DATA_DIR).",
    ),
    keep_state: bool = typer.Option(
        False,
        "--keep-state",
        help="Leave the devices as the plan left them (default: the lab's safe state).",
    ),
    simulate: SIMULATE = False,
) -> None:
    """Validate PLAN and run it on this machine's lab (default: `measure`, simulated lab).

    Shows a live table of the readings with a progress bar, keeps the run in the run
    store (see `remotelab runs`, `remotelab export`), prints the experiment id and run
    uid, and brings the lab to its safe state at the end (heater to its safe setpoint,
    stirrer stopped, arm parked…) unless --keep-state. Ctrl-C aborts the run.
    """
    with user_errors():
        if not speed > 0:
            raise PlanValidationError(plan_name, [{"param": "--speed", "message": "must be > 0"}])
        lab = load_lab(lab_file, seed=seed, speed=speed, simulate=simulate)
    store = None
    engine: RunEngine | None = None
    try:
        with user_errors():
            registry = registry_for(lab)
            params = parse_params(param, registry.schema(plan_name), plan=plan_name)
            validated = registry.validate(plan_name, params, lab=lab, role=role)
            experiment_id = f"local-{uuid.uuid4().hex[:12]}"
            plan = registry.build(validated, lab, md={"experiment_id": experiment_id})
            if store_runs:
                store = _open_store()
        # the outcome is reported below; keep bluesky's own tracebacks of aborts off the screen
        logging.getLogger("bluesky").addHandler(logging.NullHandler())
        engine = RunEngine({}, context_managers=[abort_on_sigint])
        install_local_holds(engine)
        docs: list[tuple[str, dict]] = []
        attach(engine, store=store)
        engine.subscribe(lambda name, doc: docs.append((name, doc)))
        if as_json:
            outcome, error = execute(lab, plan, engine)
            if outcome == "success" and not keep_state:
                lab.safe_state()
            events = [d for n, d in docs if n == "event"]
            print(
                json.dumps(
                    json_safe(
                        {
                            "plan": validated.name,
                            "params": validated.params,
                            "experiment_id": experiment_id,
                            "outcome": outcome,
                            "error": str(error) if error else None,
                            "run_uids": [d["uid"] for n, d in docs if n == "start"],
                            "store": str(store.path) if store is not None else None,
                            "events": [
                                {"seq_num": e["seq_num"], "data": e["data"]} for e in events
                            ],
                        }
                    )
                )
            )
        else:
            kind = " (simulated twin)" if lab.twin else " (simulated)" if lab.world else ""
            title = f"{validated.name} on {lab.name}{kind}"
            with Live(console=console, auto_refresh=False) as live:
                view = LiveView(live, title)
                live.update(view.render(), refresh=True)
                engine.subscribe(view)
                outcome, error = execute(lab, plan, engine)
                live.update(view.render(), refresh=True)
            if not console.is_terminal:
                console.line()
            for _descriptor, data in view.extra:
                console.print(
                    "  ".join(f"[bold]{k}[/] {_fmt(v)}" for k, v in data.items() if _scalar(v))
                )
            _report_runs(experiment_id, [d["uid"] for n, d in docs if n == "start"], store)
            if outcome == "success" and not keep_state:
                lab.safe_state()
        if outcome == "abort":
            err_console.print(
                "[bold yellow]interrupted:[/] run aborted; the lab is in its safe state"
            )
            raise typer.Exit(130)
        if outcome == "fail":
            err_console.print(
                f"[bold red]failed:[/] {escape(str(error))}; the lab is in its safe state"
            )
            raise typer.Exit(1)
    except SafeStateError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(3) from None
    finally:
        try:
            if store is not None:
                store.close()
        finally:
            if engine is not None:
                close_engine(engine)
            lab.close()
