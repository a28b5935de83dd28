"""The gateway side of the commands: ``remotelab login``, ``whoami``, and what ``submit``,
``queue``, ``show``, ``watch``, ``plans``, ``runs``, ``export``, ``lab``… do through a gateway
(:class:`RemoteBackend`, the :class:`~remotelab.cli.backend.Backend` of that side).

They talk to it through :class:`remotelab.Client`. The gateway and token come from
``--url``/``--token``, else ``REMOTELAB_URL``/``REMOTELAB_TOKEN``, else the config file
written by ``remotelab login`` (``REMOTELAB_CONFIG``, default
``~/.config/remotelab/client.toml``); :mod:`remotelab.cli.target` decides which side a
command works on. Tables for humans; ``--json`` for scripts.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import platformdirs
import typer
from rich.markup import escape

from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.cli.backend import Done
from remotelab.cli.render import (
    EventPrinter,
    activity,
    devices_table,
    dump,
    experiments_table,
    lab_summary,
    plans_table,
    print_event,
    runs_table,
    samples_table,
    show_experiment,
    when,
)
from remotelab.cli.target import JSON, TOKEN, URL
from remotelab.errors import ApiError, ApiNotFound, ExportError, RunNotFound

if TYPE_CHECKING:
    from remotelab.client import Client

LAB = Annotated[
    str | None, typer.Option("--lab", "-l", help="The lab; default: the gateway's only lab.")
]


def config_path() -> Path:
    """The client config file ``remotelab login`` writes (``REMOTELAB_CONFIG`` overrides)."""
    env = os.environ.get("REMOTELAB_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("remotelab", appauthor=False)) / "client.toml"


def read_config() -> dict[str, Any]:
    """The client config file's settings (none if it is missing or unreadable)."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        err_console.print(f"[yellow]warning:[/] ignoring {escape(str(path))}: {escape(str(exc))}")
        return {}


def client(url: str | None, token: str | None, lab: str | None = None) -> Client:
    """A client from the options, the environment or the config file (in that order).

    The config file's token and lab are used only with the gateway it was saved for: a
    token is never sent to another gateway given by ``--url`` or ``REMOTELAB_URL``."""
    from remotelab.client import Client

    cfg = read_config()
    url = url or os.environ.get("REMOTELAB_URL") or cfg.get("url")
    if url and str(cfg.get("url", "")).rstrip("/") != url.rstrip("/"):
        cfg = {}
    token = token or os.environ.get("REMOTELAB_TOKEN") or cfg.get("token")
    lab = lab or os.environ.get("REMOTELAB_LAB") or cfg.get("lab")
    if not url:
        raise ApiError(0, "no gateway: pass --url, set REMOTELAB_URL or run 'remotelab login'")
    return Client(url, token, lab=lab)


@app.command("login")
def login(
    url: Annotated[str, typer.Argument(help="The gateway, e.g. https://lab.example.org")],
    token: Annotated[str, typer.Option("--token", prompt=True, hide_input=True)],
    lab: LAB = None,
) -> None:
    """Check a token against a gateway and save both in the client config file."""
    with user_errors(), client(url, token, lab) as c:
        who = c.whoami()
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"url = {json.dumps(url)}", f"token = {json.dumps(token)}"]
    if lab:
        lines.append(f"lab = {json.dumps(lab)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    console.print(f"logged in as {who['user']} ({who['role']}); saved in {path}", markup=False)


@app.command("whoami")
def whoami(url: URL = None, token: TOKEN = None, as_json: JSON = False) -> None:
    """Who the token belongs to, and their role."""
    with user_errors(), client(url, token) as c:
        who = c.whoami()
    if as_json:
        dump(who)
    else:
        console.print(
            f"{who['user']} ({who['role']}), labs: {', '.join(who['labs']) or 'all'}", markup=False
        )


class RemoteBackend:
    """A gateway, through a :class:`remotelab.Client` (closed with this backend)."""

    def __init__(self, client: Client):
        self.client = client

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lab_name(self) -> str:
        return self.client.lab_name()

    # -- experiments --------------------------------------------------------------------------
    def schema(self, plan: str) -> dict[str, Any]:
        return self.client.plan(plan)["schema"]

    def submit(self, plan: str, params: dict[str, Any], *, priority: str) -> Any:
        return self.client.submit(plan, params, priority=priority)

    def experiment(self, experiment_id: str) -> Any:
        return self.client.experiment(experiment_id)

    def wait(self, experiment_id: str) -> Any:
        return self.client.experiment(experiment_id).wait()

    def follow(self, experiment_id: str, *, as_json: bool) -> None:
        """The experiment's live documents (Server-Sent Events) until it ends."""
        show = EventPrinter()
        for event in self.client.events(experiment=experiment_id):
            if not as_json:
                show(event)

    def edit(self, experiment_id: str, params: dict[str, Any]) -> Any:
        return self.client.edit(experiment_id, params)

    def experiments(
        self,
        *,
        states: list[str] | None,
        submitter: str | None,
        plan: str | None,
        limit: int,
        mine: bool = False,
    ) -> tuple[list[Any], int]:
        if mine:
            submitter = self.client.whoami()["user"]
        return self.client.experiments(
            state=list(states) if states else None, submitter=submitter, plan=plan, limit=limit
        )

    def is_held(self) -> bool:
        return bool(self.client.lab()["held"])

    def cancel(self, experiment_id: str, *, reason: str = "") -> Any:
        return self.client.cancel(experiment_id, reason=reason)

    def move(self, experiment_id: str, *, to: str | None = None, behind: str | None = None) -> Any:
        return self.client.move(experiment_id, to=to, behind=behind)

    def prioritise(self, experiment_id: str, priority: str) -> Any:
        return self.client.prioritise(experiment_id, priority)

    def approve(self, experiment_id: str) -> Any:
        return self.client.approve(experiment_id)

    def reject(self, experiment_id: str, *, reason: str = "") -> Any:
        return self.client.reject(experiment_id, reason=reason)

    def answer(self, experiment_id: str, value: Any) -> Any:
        return self.client.answer(experiment_id, value)

    # -- notifications ------------------------------------------------------------------------
    def subscriptions(self) -> list[dict[str, Any]]:
        return self.client.subscriptions()

    def subscribe(self, url: str, events: list[str]) -> dict[str, Any]:
        return self.client.subscribe(url, events)

    def unsubscribe(self, subscription_id: str) -> dict[str, Any]:
        return self.client.unsubscribe(subscription_id)

    def notify_test(self, subscription_id: str | None) -> list[dict[str, Any]]:
        return self.client.notify_test(subscription_id)

    # -- the lab --------------------------------------------------------------------------------
    def hold(self) -> Done:
        return Done(self.client.hold()["lab"])

    def release(self) -> Done:
        return Done(self.client.release()["lab"])

    def pause(self, *, immediate: bool = False, experiment: str | None = None) -> Done:
        answer = self.client.pause(immediate=immediate, experiment=experiment)
        return Done(answer["lab"], answer.get("worker"), answer.get("experiment"))

    def resume(self, *, experiment: str | None = None) -> Done:
        answer = self.client.resume(experiment=experiment)
        return Done(answer["lab"], answer.get("worker"), answer.get("experiment"))

    def stop(self, *, experiment: str | None = None) -> Done:
        answer = self.client.stop(experiment=experiment)
        return Done(answer["lab"], answer.get("worker"), answer.get("experiment"))

    def abort(self, reason: str = "", *, experiment: str | None = None) -> Done:
        answer = self.client.abort(reason, experiment=experiment)
        return Done(answer["lab"], answer.get("worker"), answer.get("experiment"))

    # -- what this side shows -----------------------------------------------------------------
    def watch(self, experiment_id: str | None, *, timeout: float | None, as_json: bool) -> None:
        """The lab's live documents and worker status, or one experiment's until it ends."""
        show = EventPrinter()
        try:
            for event in self.client.events(experiment=experiment_id, timeout=timeout):
                if as_json:
                    print(json.dumps({"event": event.kind, "data": event.data}, default=str))
                else:
                    show(event)
        except KeyboardInterrupt:
            pass

    def plans(self, name: str | None, *, as_json: bool) -> None:
        """The gateway's plans and whether you may submit them; one plan: its JSON Schema."""
        if name:
            dump(self.client.plan(name))
            return
        data = self.client.plans()
        if as_json:
            dump(data)
            return
        console.print(plans_table(data, f"plans of lab {self.client.lab_name()}"))

    def devices(self, *, as_json: bool) -> None:
        """The lab's devices and their live status."""
        data = self.client.devices()
        if as_json:
            dump(data)
            return
        console.print(devices_table(data, f"devices of lab {self.client.lab_name()}"))

    def show_lab(self, *, as_json: bool) -> None:
        """The lab: held or not, workers, queue length, the running experiments, the devices
        with their holders, the samples, the reservations and why experiments wait."""
        summary, data = self.client.lab(), self.client.devices()
        view, samples = self.client.reservations(), self.client.samples()
        if as_json:
            dump({**summary, "devices": data, "samples": samples, "reservations": view})
            return
        console.print(lab_summary(summary))
        console.print(devices_table(data, "devices"))
        console.print(samples_table(samples))
        for table in activity(view, summary.get("running") or []):
            console.print(table)

    def runs(
        self,
        *,
        experiment: str | None,
        sample: str | None,
        plan: str | None,
        submitter: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        data = self.client.runs(
            experiment=experiment, plan=plan, submitter=submitter, sample=sample, limit=limit
        )
        if as_json:
            dump(data)
            return
        console.print(runs_table(data))

    def export(self, uid: str, fmt: str, out: Path, *, stream: str | None = None) -> list[Path]:
        """Download a run's data (an experiment id: each of its runs), as local export writes
        it: the same files (a CSV of each array signal too) and names."""
        from remotelab.data.export import FORMATS

        if fmt.lower() not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        try:
            uids = [self.client.run(uid)["uid"]]
        except ApiNotFound:
            uids = [r["uid"] for r in self.client.experiment_runs(uid)]
            if not uids:
                raise RunNotFound(f"no run or experiment with runs {uid!r}") from None
        paths: list[Path] = []
        for run_uid in uids:
            paths += self.client.export_files(run_uid, fmt.lower(), out, stream=stream or "primary")
        return paths

    def plot(self, uid: str, output: Path | None, *, redraw: bool = False) -> Path:
        """The gateway's summary plot of a run, written as local plot writes it."""
        from remotelab.data.export import write_bytes

        full = self.client.run(uid)["uid"]
        return write_bytes(
            output or Path(f"run-{full[:8]}.png"), self.client.plot(full, redraw=redraw)
        )

    def verify(self, uid: str) -> dict[str, Any]:
        return self.client.verify(uid)


__all__ = [
    "RemoteBackend",
    "client",
    "config_path",
    "devices_table",
    "dump",
    "experiments_table",
    "print_event",
    "read_config",
    "show_experiment",
    "when",
]
