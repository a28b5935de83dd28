"""``remotelab check LAB.yaml``: check a lab file and its plans on the lab's simulated twin
(see :mod:`remotelab.plans.check`), as a table, JSON or JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from remotelab.cli.app import app, console, err_console
from remotelab.plans.check import CHECK_SPEED, CheckReport, check_lab


def junit(report: CheckReport) -> ET.ElementTree:
    """JUnit XML of a check: one ``<testcase>`` per plan (``<failure>`` naming the failed
    step, ``<skipped>`` for a plan with no example), and one per failed lab-file step."""
    failed_lab = [s for s in report.steps if not s.is_plan and not s.ok]
    cases: dict[str, list] = {}
    for s in report.steps:
        if s.is_plan:
            cases.setdefault(s.subject, []).append(s)
    for s in failed_lab:
        cases[f"{s.step} {s.subject}"] = [s]
    failures = sum(any(not s.ok for s in steps) for steps in cases.values())
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"remotelab check {report.lab}",
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped=str(sum(all(s.skipped for s in steps) for steps in cases.values())),
        time=f"{report.seconds:.3f}",
    )
    for name, steps in cases.items():
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"remotelab.check.{report.lab}",
            name=name,
            time=f"{sum(s.seconds for s in steps):.3f}",
        )
        bad = [s for s in steps if not s.ok]
        if bad:
            failure = ET.SubElement(case, "failure", message=f"{bad[0].step}: {bad[0].message}")
            failure.text = "\n".join(f"{s.step}: {s.message}" for s in bad)
        elif all(s.skipped for s in steps):
            ET.SubElement(case, "skipped", message=steps[0].message)
    return ET.ElementTree(suites)


def _table(report: CheckReport) -> Table:
    table = Table(title=f"remotelab check: lab {report.lab}")
    for column in ("plan", "step", "result", "message"):
        table.add_column(column)
    for s in report.steps:
        result = "[green]ok[/]" if s.ok else "[bold red]FAIL[/]"
        if s.skipped:
            result = "[yellow]skipped[/]"
        table.add_row(s.subject, s.step, result, s.message)
    return table


@app.command("check")
def check(
    lab_file: Annotated[
        str, typer.Argument(metavar="LAB", help="Lab file (YAML), or a shipped lab's name.")
    ],
    plans: Annotated[
        list[str] | None,
        typer.Option(
            "--plans", help="A plan module (dotted name or .py file) to check too; repeatable."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    junit_file: Annotated[
        Path | None, typer.Option("--junit", help="Also write the results as JUnit XML here.")
    ] = None,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate/--no-simulate",
            help="Run the plans on the lab file's simulated twin (default), or on the lab as "
            "the file describes it.",
        ),
    ] = True,
    speed: Annotated[float, typer.Option(help="Simulated clock speed of the runs.")] = CHECK_SPEED,
) -> None:
    """Check a lab file and its plans: parse it, import the plan modules, and for each plan's
    example validate it, walk it (no device touched), run it on the simulated twin and check
    that it succeeded and left every device at its safe state. Exit status 1 on any failure."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("checking plans", total=None)
    with progress:
        report = check_lab(
            lab_file,
            plans or [],
            simulate=simulate,
            speed=speed,
            on_plans=lambda names: progress.update(task, total=len(names)),
            on_plan=lambda name: progress.update(task, advance=1, description=name),
        )
    if junit_file is not None:
        junit(report).write(junit_file, encoding="utf-8", xml_declaration=True)
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        console.print(_table(report))
    failed = report.failures()
    summary = f"checked {len(report.plans)} plans in {report.seconds:.1f} s"
    if failed:
        summary += f": [bold red]{len(failed)} failed step(s)[/]"
    (err_console if as_json else console).print(summary)
    if failed:
        raise typer.Exit(1)
