"""``remotelab server`` and ``remotelab worker``: the lab's server side and its worker.

What ``submit``, ``queue``, ``cancel``, ``lab hold``… do on this machine's lab is
:class:`remotelab.cli.local.LocalBackend`."""

from __future__ import annotations

import importlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import typer

from remotelab.cli.app import app, console, user_errors
from remotelab.cli.target import SIMULATE
from remotelab.errors import QueueError

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


def _load(
    lab_file: Path | None,
    speed: float | None = None,
    *,
    connect: bool = True,
    simulate: bool = False,
):
    from remotelab.lab import load_lab

    return load_lab(lab_file, speed=speed, connect=connect, simulate=simulate)


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
    database: str | None = typer.Option(
        None,
        "--database",
        help="Prefect's database: postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB (its schema "
        "is created or migrated at start); default REMOTELAB_PREFECT_DATABASE, else SQLite "
        "under the data directory.",
    ),
    gateway: bool = typer.Option(
        True, "--gateway/--no-gateway", help="Also serve the remote gateway (HTTP API)."
    ),
    gateway_host: str = typer.Option("127.0.0.1", help="Address the gateway listens on."),
    gateway_port: int = typer.Option(8000, help="Port the gateway listens on."),
    simulate: SIMULATE = False,
) -> None:
    """The lab's server side: Prefect, the labs' queues and deployments, and the gateway.

    The embedded Prefect server (SQLite under remotelab's data directory; with --api, an
    existing Prefect API instead), the labs' work pools, queues and deployments, and the
    remote gateway (HTTP API and dashboard) in front of them (--no-gateway: not)."""
    from remotelab.cli.gateway import build_gateway, serve_gateway
    from remotelab.queue import PrefectServer, connect, ensure_lab
    from remotelab.queue.server import AUTH_FILE
    from remotelab.settings import data_dir, get_settings

    with user_errors():
        files: list[Path | None] = list(lab_files) or [None]
        labs = [_load(f, connect=False, simulate=simulate) for f in files]
        embedded = None
        if api is None:
            embedded = PrefectServer(
                home or data_dir() / "prefect",
                host=host,
                port=port,
                database=database or get_settings().prefect_database,
            )
            console.print(
                f"starting Prefect server (database: {embedded.database_label}) …",
                markup=False,
                highlight=False,
            )
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
                console.print(
                    f"its auth string (for workers on other hosts, and the UI's login) is in "
                    f"{embedded.home / AUTH_FILE}: export PREFECT_API_AUTH_STRING=…",
                    markup=False,
                )
            if gateway:
                app_, names = build_gateway(lab_files or None, api, None, simulate=simulate)
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
    simulate: SIMULATE = False,
    lost_after: float | None = typer.Option(
        None,
        min=0.1,
        help="Mark a peer worker of the lab lost after its heartbeat stopped this many "
        "seconds; default: REMOTELAB_WORKER_LOST_AFTER (60).",
    ),
) -> None:
    """Serve a lab: keep its devices and one RunEngine, run its experiments one at a time."""
    from remotelab.worker import build_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "prefect", "bluesky"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from remotelab.data import RunStore
    from remotelab.settings import get_settings
    from remotelab.stream import StreamPublisher

    settings = get_settings()
    with user_errors():
        lab = _load(lab_file, speed, simulate=simulate)
        run_store = RunStore(settings.store_path) if store else None
        address = stream or settings.stream_in
        publisher = None if address == "none" else StreamPublisher(address, lab=lab.name)
        w = build_worker(
            lab,
            api_url=api,
            store=run_store,
            publisher=publisher,  # documents, and paused / running in the status
            subscribers=[_import(s)(lab) for s in subscriber],
            registry=_import(registry)(lab) if registry else None,
            control_bind=control,
            poll_interval=poll,
            grace=grace,
            data_url=data_url,
            outbox=settings.outbox_path(lab.name),
            lost_after=lost_after,
        )
        if publisher is not None:
            console.print(f"publishing documents and status to {address}")
        if run_store is not None:
            console.print(f"run store {run_store.path}")
        try:
            crashed = w.start()
            for exp in crashed:
                console.print(f"experiment {exp.id} was left running by a dead worker: crashed")
            where = "none"
            if w.control is not None:
                where = f"{w.control.endpoint}, CurveZMQ key {w.control.address.key}"
            console.print(
                f"worker {w.id} serving lab {lab.name} (pid {os.getpid()}, control {where})",
                markup=False,
                highlight=False,
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
