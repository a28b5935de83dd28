"""What ``remotelab lab show`` and ``remotelab devices`` do on this machine: a lab file's
devices (class, role, limits, safe state) and samples — see :mod:`remotelab.cli.lab_commands`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from remotelab.cli import render
from remotelab.cli.app import console
from remotelab.lab import load_lab


def describe(lab_file: Path | None, *, simulate: bool = False) -> dict[str, Any]:
    """The lab file's description (``Lab.describe()``; of its simulated twin if ``simulate``)."""
    lab = load_lab(lab_file, connect=False, simulate=simulate)
    try:
        return lab.describe()
    finally:
        lab.close()


def _devices_table(info: dict[str, Any]) -> Table:
    kind = " (simulated twin)" if info.get("twin") else " (simulated)" if info["simulated"] else ""
    table = Table(title=f"lab {info['name']}{kind}")
    for column in ("device", "class", "role", "backend", "limits", "safe state"):
        table.add_column(column)
    for name, dev in info["devices"].items():
        limits = ", ".join(f"{k} {lo:g}…{hi:g}" for k, (lo, hi) in dev["limits"].items())
        safe = ", ".join(f"{k}={v}" for k, v in dev["safe_state"].items())
        table.add_row(name, dev["class"], dev["role"], dev["backend"], limits, safe)
    return table


#: what runs in the lab now: (reservations view, running experiments), or why it is unknown
Activity = Callable[[], tuple[dict[str, Any], list[Any]] | str]


def show(
    lab_file: Path | None,
    *,
    as_json: bool,
    activity: Activity | None = None,
    simulate: bool = False,
    samples: Callable[[], list[dict[str, Any]] | None] | None = None,
) -> None:
    """The lab's devices (class, role, limits, safe state) and its samples (``samples()``:
    as the queue knows them, else where the lab file puts them); with ``activity``, what
    runs, the reservations and why experiments wait (under ``"queue"``)."""
    info = describe(lab_file, simulate=simulate)
    now = activity() if activity is not None else None
    found = samples() if samples is not None else None
    listed = found if found is not None else file_samples(info)
    if as_json:
        if isinstance(now, tuple):
            view, running = now
            info["queue"] = {**view, "experiments": [e.model_dump(mode="json") for e in running]}
        info["samples"] = listed
        console.print_json(json.dumps(info, default=str))
        return
    console.print(_devices_table(info))
    console.print(render.samples_table(listed))
    if isinstance(now, tuple):
        for alert in now[0].get("alerts") or []:
            console.print(render.alert_line(alert))
        for table in render.activity(*now):
            console.print(table)
    elif now:
        console.print(f"no queue to show what runs: {now}", style="dim", markup=False)


def file_samples(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples of a lab's description, in the shape of the gateway's sample list."""
    return [
        {"id": sample, "location": where, "live": False, "lost": where == "lost"}
        for sample, where in info["samples"].items()
    ]


def devices(lab_file: Path | None, *, as_json: bool, simulate: bool = False) -> None:
    """The lab file's devices: class, role, backend, limits, safe state."""
    info = describe(lab_file, simulate=simulate)
    if as_json:
        console.print_json(
            json.dumps([{"name": name, **dev} for name, dev in info["devices"].items()])
        )
        return
    console.print(_devices_table(info))
