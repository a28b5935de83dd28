"""``remotelab server``, ``remotelab worker`` and ``remotelab queue ...``: the experiment queue."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from remotelab.cli.app import app, console, user_errors
from remotelab.errors import QueueError

queue_app = typer.Typer(
    help="Submit, list, order and steer a lab's experiments.", no_args_is_help=True
)
app.add_typer(queue_app, name="queue")

LAB = typer.Option(None, "--lab", "-l", help="Lab file (YAML); default: the shipped simulated lab.")
API = typer.Option(
    None, "--api", help="Prefect API URL; default: $REMOTELAB_PREFECT_API_URL or $PREFECT_API_URL."
)


LABS = typer.Option(
    [], "--lab", "-l", help="Lab file(s) to set up (work pool, queues, deployment); repeatable."
)
SUBSCRIBERS = typer.Option(
    [],
    help="module:factory; factory(lab) returns a (name, doc) callback for every document. "
    "Repeatable.",
)
SERVER_API = typer.Option(
    None,
    "--api",
    help="Use this existing Prefect API (e.g. PostgreSQL-backed) instead of starting one.",
)
SERVER_HOME = typer.Option(
    None, help="PREFECT_HOME of the embedded server; default: <data dir>/prefect."
)
PARAMS = typer.Option([], "--param", "-p", help="name=value (JSON value); repeatable.")


def _load(lab_file: Path | None, speed: float | None = None, *, connect: bool = True):
    from remotelab.lab import load_lab

    return load_lab(lab_file, speed=speed, connect=connect)


def _queue(lab_file: Path | None, api: str | None):
    from remotelab.queue import ExperimentQueue

    # validation needs only the lab file: leave the instruments to the lab's worker
    return ExperimentQueue(_load(lab_file, connect=False), api_url=api)


def _import(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not attr:
        raise QueueError(f"{spec!r}: give it as module:attribute")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise QueueError(f"cannot load {spec!r}: {exc}") from None


@app.command("server")
def server(
    lab_files: list[Path] = LABS,
    api: str | None = SERVER_API,
    host: str = typer.Option("127.0.0.1", help="Address of the embedded server."),
    port: int = typer.Option(4200, help="Port of the embedded server."),
    home: Path | None = SERVER_HOME,
    gateway: bool = typer.Option(
        True, "--gateway/--no-gateway", help="Also serve the remote gateway (HTTP API)."
    ),
    gateway_host: str = typer.Option("127.0.0.1", help="Address the gateway listens on."),
    gateway_port: int = typer.Option(8000, help="Port the gateway listens on."),
) -> None:
    """The lab's server side: the embedded Prefect server (SQLite under remotelab's data
    directory; with --api, an existing Prefect API instead), the labs' work pools, queues and
    deployments, and the remote gateway (HTTP API) in front of them (--no-gateway: not)."""
    from remotelab.cli.gateway import build_gateway, serve_gateway
    from remotelab.queue import PrefectServer, connect, ensure_lab
    from remotelab.settings import data_dir

    with user_errors():
        labs = [_load(f, connect=False) for f in lab_files] or [_load(None, connect=False)]
        embedded = None
        if api is None:
            embedded = PrefectServer(home or data_dir() / "prefect", host=host, port=port)
            console.print(f"starting Prefect server (database in {embedded.home}) …")
            embedded.start()
            api = embedded.api_url
        try:
            client = connect(api)
            for lab in labs:
                ensure_lab(client, lab.name)
                console.print(
                    f"lab [bold]{lab.name}[/]: work pool remotelab-{lab.name}, "
                    "queues urgent/normal/low, deployment ready"
                )
                lab.close()
            client.__exit__(None, None, None)
            if embedded is not None:
                console.print(f"Prefect API {api}  (UI {embedded.ui_url})")
                console.print(f"export REMOTELAB_PREFECT_API_URL={api}")
            if gateway:
                app_, names = build_gateway(lab_files or None, api, None)
                serve_gateway(app_, gateway_host, gateway_port, names)  # until SIGINT/SIGTERM
                return
            if embedded is None:
                return

            def _terminate(signum: int, _frame: object) -> None:
                raise SystemExit(0)  # leave through `finally`, which stops the server

            signal.signal(signal.SIGTERM, _terminate)
            embedded.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if embedded is not None:
                embedded.stop()


@app.command("worker")
def worker(
    lab_file: Path | None = LAB,
    api: str | None = API,
    speed: float | None = typer.Option(None, help="Simulated lab: clock speed factor."),
    control: str = typer.Option(
        "tcp://127.0.0.1:0", help="zmq address of the control channel (port 0: any free port)."
    ),
    poll: float = typer.Option(1.0, help="Seconds between fallback polls of Prefect."),
    grace: float = typer.Option(
        0.0, help="On SIGTERM, let the current experiment run this many seconds before aborting it."
    ),
    subscriber: list[str] = SUBSCRIBERS,
    store: bool = typer.Option(
        True,
        "--store/--no-store",
        help="Keep every document in the run store (REMOTELAB_DATA_DIR).",
    ),
    stream: str | None = typer.Option(
        None,
        help="Publish documents and status to this stream proxy input "
        "(default REMOTELAB_STREAM_IN; 'none' to publish nothing).",
    ),
    data_url: str | None = typer.Option(
        None, help="Link to a run's data in summaries, with {uid}, e.g. http://lab:8000/runs/{uid}."
    ),
    registry: str | None = typer.Option(
        None,
        help="module:factory of the plan registry (factory(lab)); default: the lab's registry.",
    ),
) -> None:
    """Serve a lab: keep its devices and one RunEngine, run its experiments one at a time."""
    from remotelab.worker import LabWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "prefect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from remotelab.data import RunStore
    from remotelab.settings import get_settings
    from remotelab.stream import StreamPublisher

    settings = get_settings()
    with user_errors():
        lab = _load(lab_file, speed)
        run_store = RunStore(settings.store_path) if store else None
        address = stream or settings.stream_in
        publisher = None if address == "none" else StreamPublisher(address, lab=lab.name)
        # the store first: a document is durable before any other callback sees it
        subs = [cb for cb in (run_store, publisher) if cb is not None]
        subs += [_import(s)(lab) for s in subscriber]
        reg = _import(registry)(lab) if registry else None
        w = LabWorker(
            lab,
            api_url=api,
            registry=reg,
            subscribers=subs,
            control_bind=control,
            poll_interval=poll,
            grace=grace,
            data_url=data_url,
        )
        if publisher is not None:
            w.RE.state_hook = publisher.on_engine_state  # paused / running in the status
            console.print(f"publishing documents and status to {address}")
        if run_store is not None:
            console.print(f"run store {run_store.path}")
        try:
            crashed = w.start()
            for exp in crashed:
                console.print(f"experiment {exp.id} was left running by a dead worker: crashed")
            console.print(
                f"worker {w.id} serving lab {lab.name} (pid {os.getpid()}, "
                f"control {w.control.endpoint})"
            )
            w.run_forever()
        finally:
            w.close()
            lab.close()
            if publisher is not None:
                publisher.close()
            if run_store is not None:
                run_store.close()
        console.print(f"worker {w.id} stopped")


def _parse_params(params: str | None, param: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if params:
        try:
            out.update(json.loads(params))
        except json.JSONDecodeError as exc:
            raise QueueError(f"--params is not JSON: {exc}") from None
    for item in param:
        key, sep, value = item.partition("=")
        if not sep:
            raise QueueError(f"--param {item!r}: write it as name=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@queue_app.command("submit")
def submit(
    plan: str,
    lab_file: Path | None = LAB,
    api: str | None = API,
    params: str | None = typer.Option(None, help="Parameters as one JSON object."),
    param: list[str] = PARAMS,
    submitter: str = typer.Option(os.environ.get("USER", "someone"), help="Who submits."),
    role: str = typer.Option("researcher", help="The submitter's role."),
    priority: str = typer.Option("normal", help="urgent, normal or low."),
) -> None:
    """Submit an experiment: a plan and its parameters."""
    with user_errors():
        q = _queue(lab_file, api)
        exp = q.submit(
            plan, _parse_params(params, param), submitter=submitter, role=role, priority=priority
        )
        console.print(f"{exp.id} {exp.state.value}")


@queue_app.command("list")
def list_queue(
    lab_file: Path | None = LAB,
    api: str | None = API,
    history: bool = typer.Option(False, help="Show finished experiments instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The lab's queue in the order it will run (or its history)."""
    with user_errors():
        q = _queue(lab_file, api)
        items = q.history() if history else q.list()
        held = q.is_held()
    if as_json:
        console.print_json(
            json.dumps({"held": held, "experiments": [e.model_dump(mode="json") for e in items]})
        )
        return
    table = Table(title=f"lab {q.name}" + (" — HELD" if held else ""))
    for col in ("id", "state", "priority", "plan", "submitter", "message"):
        table.add_column(col)
    for e in items:
        table.add_row(e.id, e.state.value, e.priority.value, e.plan, e.submitter, e.message)
    console.print(table)


def _simple(name: str, help_text: str, call) -> None:
    @queue_app.command(name, help=help_text)
    def command(lab_file: Path | None = LAB, api: str | None = API) -> None:
        with user_errors():
            console.print(call(_queue(lab_file, api)) or "ok")


_simple("hold", "Hold the lab: finish the current experiment, start no more.", lambda q: q.hold())
_simple("release", "Release a held lab.", lambda q: q.release())
_simple("resume", "Resume the paused plan.", lambda q: q.resume())
_simple("stop", "End the running plan cleanly (it completes).", lambda q: q.stop())
_simple(
    "abort",
    "Abort the running plan (devices go safe; it ends cancelled).",
    lambda q: q.abort("aborted from the command line"),
)


@queue_app.command("pause")
def pause(
    lab_file: Path | None = LAB,
    api: str | None = API,
    now: bool = typer.Option(False, help="Pause now (rewind to the last checkpoint)."),
):
    """Pause the running plan at its next checkpoint."""
    with user_errors():
        console.print(_queue(lab_file, api).pause(immediate=now))


@queue_app.command("cancel")
def cancel(
    experiment: str,
    lab_file: Path | None = LAB,
    api: str | None = API,
    reason: str = typer.Option("", help="Why."),
    by: str = typer.Option(os.environ.get("USER", ""), help="Who cancels."),
) -> None:
    """Cancel an experiment (a running one is aborted, devices go safe)."""
    with user_errors():
        exp = _queue(lab_file, api).cancel(experiment, by=by, reason=reason)
        console.print(f"{exp.id} {exp.state.value}")


@queue_app.command("move")
def move(
    experiment: str,
    lab_file: Path | None = LAB,
    api: str | None = API,
    front: bool = typer.Option(False, help="To the front of the queue."),
    back: bool = typer.Option(False, help="To the back of the queue."),
    behind: str | None = typer.Option(None, help="Right behind this experiment."),
) -> None:
    """Move a queued experiment."""
    with user_errors():
        to = "front" if front else "back" if back else None
        exp = _queue(lab_file, api).move(experiment, to=to, behind=behind)
        console.print(f"{exp.id} {exp.priority.value}")


@queue_app.command("approve")
def approve(
    experiment: str,
    lab_file: Path | None = LAB,
    api: str | None = API,
    by: str = typer.Option(os.environ.get("USER", "manager"), help="Who approves."),
):
    """Approve an experiment that waits for a manager's approval."""
    with user_errors():
        exp = _queue(lab_file, api).approve(experiment, by=by)
        console.print(f"{exp.id} {exp.state.value}")


@queue_app.command("reject")
def reject(
    experiment: str,
    lab_file: Path | None = LAB,
    api: str | None = API,
    by: str = typer.Option(os.environ.get("USER", "manager")),
    reason: str = typer.Option(""),
):
    """Refuse an experiment that waits for approval."""
    with user_errors():
        exp = _queue(lab_file, api).reject(experiment, by=by, reason=reason)
        console.print(f"{exp.id} {exp.state.value}")


@queue_app.command("answer")
def answer(
    experiment: str,
    value: str = typer.Argument("true", help="The answer (JSON value)."),
    lab_file: Path | None = LAB,
    api: str | None = API,
):
    """Answer the question a running plan asked the operator."""
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    with user_errors():
        console.print(_queue(lab_file, api).answer(experiment, parsed))
