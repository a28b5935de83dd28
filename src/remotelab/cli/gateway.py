"""``remotelab gateway`` (the HTTP gateway on its own) and ``remotelab demo`` (everything)."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from remotelab.cli.app import app, console, user_errors
from remotelab.cli.target import SIMULATE

HOST = Annotated[str, typer.Option(help="Address to listen on.")]


@app.command("gateway")
def gateway(
    lab_files: Annotated[
        list[Path] | None,
        typer.Option("--lab", "-l", help="Lab file(s) to serve; default: the simulated lab."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option("--api", help="The Prefect API; default: REMOTELAB_PREFECT_API_URL."),
    ] = None,
    host: HOST = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    stream: Annotated[
        str | None,
        typer.Option(help="The stream proxy's out address; default: REMOTELAB_STREAM_OUT."),
    ] = None,
    simulate: SIMULATE = False,
    lost_after: Annotated[
        float | None,
        typer.Option(
            help="Mark a worker lost after its heartbeat stopped this many seconds; "
            "default: REMOTELAB_WORKER_LOST_AFTER (60).",
            min=0.1,
        ),
    ] = None,
) -> None:
    """Serve the remote gateway (HTTP API under /api/v1) for the labs' queues and data."""
    with user_errors():
        app_, names = build_gateway(
            lab_files, api, stream, simulate=simulate, lost_after=lost_after
        )
    serve_gateway(app_, host, port, names)


def build_gateway(
    lab_files: list[Path] | None,
    api: str | None,
    stream: str | None,
    *,
    simulate: bool = False,
    lost_after: float | None = None,
):
    """The gateway app for these lab files (their simulated twins if ``simulate``) on this
    Prefect API, and the labs' names; it marks workers lost after ``lost_after`` s of
    silence (default: the setting)."""
    from remotelab.api import AuthStore, LabService, create_app
    from remotelab.data import RunStore
    from remotelab.lab import load_lab
    from remotelab.queue import ExperimentQueue
    from remotelab.settings import get_settings

    settings = get_settings()
    files: list[Path | None] = list(lab_files) if lab_files else [None]
    labs = [load_lab(f, connect=False, simulate=simulate) for f in files]  # the worker's ports
    services = []
    for lab in labs:
        queue = ExperimentQueue(lab, api_url=api)
        queue.ensure()
        services.append(LabService(lab, queue))
    store = RunStore(settings.store_path, plots=False)
    app_ = create_app(
        auth=AuthStore(),
        labs=services,
        store=store,
        stream=stream or settings.stream_out,
        lost_after=lost_after,
    )
    return app_, [s.name for s in services]


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def serve_gateway(app_, host: str, port: int, names: list[str]) -> None:
    """Serve ``app_`` until SIGINT or SIGTERM, then return (exit status 0)."""
    import uvicorn

    from remotelab.api.dashboard import dashboard_url

    console.print(f"gateway on http://{host}:{port}/api/v1 (OpenAPI: /docs) for {', '.join(names)}")
    console.print(f"dashboard: {dashboard_url(f'http://{host}:{port}')}")
    # uvicorn shuts down gracefully on a signal, then raises it again for the handler that
    # was there before: make that handler a clean exit, not a death by signal
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    console.print("gateway stopped")


def stream_lines(in_address: str, out_address: str, key: str | None = None) -> list[str]:
    """What ``remotelab demo`` says about its stream proxy: where to publish, where to listen,
    and the CURVE key its clients trust."""
    lines = [
        f"stream in:        {in_address}   (publishers, as REMOTELAB_STREAM_IN)",
        f"stream out:       {out_address}   (watchers, as REMOTELAB_STREAM_OUT; "
        "bluesky: remotelab.stream.remote_dispatcher)",
    ]
    if key:
        lines.append(f"stream key:       {key}   (CurveZMQ; see remotelab keys list)")
    return lines


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="Port of the gateway.")] = 8000,
    prefect_port: Annotated[
        int | None, typer.Option(help="Port of Prefect's server and UI; default: a free one.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Where the demo keeps its data; default: <data dir>/demo."),
    ] = None,
    lab_file: Annotated[
        Path | None, typer.Option("--lab", "-l", help="Lab file; default: the simulated lab.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated clock speed factor.")] = 10.0,
    examples: Annotated[
        bool, typer.Option("--examples/--no-examples", help="Submit a few example experiments.")
    ] = True,
    stream_in: Annotated[
        str | None,
        typer.Option(
            help="Address the stream proxy takes documents in on; default: "
            "REMOTELAB_STREAM_IN if set, else a free port."
        ),
    ] = None,
    stream_out: Annotated[
        str | None,
        typer.Option(
            help="Address the stream proxy sends documents out on (watchers, bluesky's "
            "RemoteDispatcher); default: REMOTELAB_STREAM_OUT if set, else a free port."
        ),
    ] = None,
    simulate: SIMULATE = False,
) -> None:
    """Everything on this machine in one command, on loopback; Ctrl-C stops it all.

    A Prefect server (SQLite), the gateway with its dashboard, the stream proxy and a worker
    on the simulated lab."""
    from remotelab.embedded import Embedded
    from remotelab.settings import demo_data_dir

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with user_errors():
        console.print("starting Prefect server, stream proxy, worker and gateway …")
        site = Embedded(
            data or demo_data_dir(),
            lab_file=lab_file,
            port=port,
            prefect_port=prefect_port,
            speed=speed,
            stream_in=stream_in,
            stream_out=stream_out,
            simulate=simulate,
        )
        try:
            site.start()
            ids = site.submit_examples() if examples else []
            manager, researcher = site.tokens["demo-manager"], site.tokens["demo-researcher"]
            kind = "simulated twin" if site.lab.twin else "simulated"
            console.print(f"lab:              {site.lab.name} ({kind}, speed ×{speed:g})")
            console.print(
                f"dashboard:        {site.dashboard_url}   (sign in with the manager token)",
                soft_wrap=True,
            )
            console.print(
                f"gateway:          {site.url}/api/v1   (API explorer: {site.url}/docs)",
                soft_wrap=True,
            )
            from remotelab.queue.server import AUTH_FILE

            console.print(f"Prefect UI:       {site.prefect.ui_url}")
            console.print(
                f"Prefect auth:     {site.prefect.home / AUTH_FILE}   (the auth string the UI "
                "asks for)",
                markup=False,
                soft_wrap=True,
            )
            proxy = site.proxy
            for line in stream_lines(proxy.in_address, proxy.out_address, proxy.public_key):
                console.print(line, soft_wrap=True, markup=False, highlight=False)
            console.print(f"manager token:    {manager}", soft_wrap=True)
            console.print(f"researcher token: {researcher}", soft_wrap=True)
            if ids:
                console.print(
                    f"submitted {len(ids)} example experiments: {', '.join(ids)}", soft_wrap=True
                )
            console.print(
                "try:  export REMOTELAB_URL=" + site.url + " REMOTELAB_TOKEN=<researcher token>",
                soft_wrap=True,
            )
            console.print(
                "      remotelab queue; remotelab submit measure "
                "-p detectors=thermometer -p num=3 --watch; remotelab export <id>",
                soft_wrap=True,
            )
            console.print("ready; Ctrl-C stops everything", soft_wrap=True)
            while not stop.wait(0.5):
                pass
            console.print("stopping …")
        finally:
            site.stop()
    console.print("stopped")
