"""``remotelab lab``: show a lab file's devices and samples."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from remotelab.cli.app import app, console, user_errors
from remotelab.lab import load_lab

LAB_OPTION = typer.Option(
    None, "--lab", "-l", help="Lab file (YAML); default: the shipped simulated lab."
)


@app.command("lab")
def show_lab(
    lab_file: Path | None = LAB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show the lab's devices (class, role, limits, safe state) and where each sample is."""
    with user_errors():
        lab = load_lab(lab_file, connect=False)
        try:
            info = lab.describe()
        finally:
            lab.close()
    if as_json:
        console.print_json(json.dumps(info))
        return
    table = Table(title=f"lab {info['name']}" + (" (simulated)" if info["simulated"] else ""))
    for column in ("device", "class", "role", "backend", "limits", "safe state"):
        table.add_column(column)
    for name, dev in info["devices"].items():
        limits = ", ".join(f"{k} {lo:g}…{hi:g}" for k, (lo, hi) in dev["limits"].items())
        safe = ", ".join(f"{k}={v}" for k, v in dev["safe_state"].items())
        table.add_row(name, dev["class"], dev["role"], dev["backend"], limits, safe)
    console.print(table)
    samples = Table(title="samples")
    samples.add_column("sample")
    samples.add_column("location")
    for sample, where in info["samples"].items():
        samples.add_row(sample, where)
    console.print(samples)
