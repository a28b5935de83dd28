"""What the commands print, the same whichever side answered: JSON for scripts, tables and
one-line summaries for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from remotelab.cli.app import console

#: columns that hold an experiment id or a run uid: never wrapped (a folded id cannot be
#: copied); the other columns fold around them
ID_COLUMNS = frozenset({"id", "uid", "experiment", "holder", "held by"})


def add_columns(table: Table, names: Sequence[str]) -> None:
    """Add columns that fold long text, but those of :data:`ID_COLUMNS`, kept whole."""
    for name in names:
        if name in ID_COLUMNS:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold")


def dump(data: Any) -> None:
    """Print a model, a list of models or plain data as JSON."""
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    console.print_json(json.dumps(data, default=str))


def when(value: Any) -> str:
    """A time (datetime or epoch seconds) as ``YYYY-mm-dd HH:MM:SS`` (UTC), or ``""``."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def experiments_table(items: list, title: str) -> Table:
    """Experiments, one a row (why one waits, in its own column, if any does)."""
    table = Table(title=title)
    waits = any(getattr(e, "waiting_for", None) for e in items)
    columns = ["id", "plan", "submitter", "priority", "state", "devices", "created", "message"]
    add_columns(table, columns + (["waiting for"] if waits else []))
    for e in items:
        row = [e.id, e.plan, e.submitter, e.priority.value, e.state.value]
        row += [", ".join(getattr(e, "devices", None) or []), when(e.created), e.message]
        table.add_row(*row, *([e.waiting_for or ""] if waits else []))
    return table


def print_queue(items: list, total: int, *, lab: str, held: bool) -> None:
    """The lab's queue (or a page of it) as a table titled with the lab and whether held."""
    title = f"lab {lab}{' — HELD' if held else ''}: {len(items)} of {total}"
    console.print(experiments_table(items, title))


def show_experiment(exp: Any) -> None:
    """One experiment, field by field (with its edits)."""
    table = Table(show_header=False, title=f"experiment {exp.id}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("plan", "params", "lab", "submitter", "priority", "state", "message"):
        value = getattr(exp, key)
        value = getattr(value, "value", value)
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    for key in ("created", "started", "ended"):
        table.add_row(key, when(getattr(exp, key)))
    table.add_row("devices", ", ".join(getattr(exp, "devices", None) or []))
    if getattr(exp, "waiting_for", None):
        table.add_row("waiting for", exp.waiting_for)
    table.add_row("runs", ", ".join(exp.run_uids))
    for edit in getattr(exp, "edits", None) or []:
        table.add_row(
            "edited",
            f"{edit.get('at', '')} by {edit.get('by')}; before: {json.dumps(edit.get('previous'))}",
        )
    console.print(table)


def experiment(exp: Any, as_json: bool) -> None:
    """One experiment: JSON, or its table."""
    dump(exp) if as_json else show_experiment(exp)


def experiment_line(exp: Any, as_json: bool) -> None:
    """One experiment after an action on it: JSON, or one line (id, state, message)."""
    if as_json:
        dump(exp)
    else:
        console.print(f"experiment {exp.id}: {exp.state.value} {exp.message}", markup=False)


def submitted(exp: Any) -> None:
    """The line that says an experiment was submitted."""
    console.print(f"submitted experiment [bold]{exp.id}[/] ({exp.state.value})")


def done(action: str, lab: str, detail: Any = None, experiment: str | None = None) -> str:
    """The line that says what a lab command (hold, pause…) did: the worker's word for it if
    it said one (``paused``, ``pause requested: pending…``), else ``done``."""
    what = f"{action} of {experiment}" if experiment else action
    said = worker_said(detail)
    if said:
        return f"lab {lab}: {what}: {said}"
    return f"lab {lab}: {what} done" + (
        f" ({detail})" if detail and not isinstance(detail, dict) else ""
    )


def worker_said(reply: Any) -> str:
    """What a worker's reply (or the replies of several experiments) says happened."""
    if not isinstance(reply, dict):
        return ""
    if isinstance(reply.get("experiments"), dict):
        return "; ".join(
            f"{k}: {worker_said(v) or 'done'}" for k, v in reply["experiments"].items()
        )
    return str(reply.get("note") or reply.get("error") or "")


def _since(value: Any) -> str:
    """A reservation's ``since`` (ISO text or epoch seconds) as ``HH:MM:SS`` (UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return when(value)[11:] if value is not None else ""


def activity(view: dict[str, Any], experiments: Sequence[Any] = ()) -> list[Table]:
    """Tables of what runs, the reservations (resource → holder, waiters since) and why
    experiments wait, from a lab's reservations view; ``experiments`` (models or dicts) fill
    in a running one's plan and submitter if its worker did not say them."""
    known = {}
    for e in experiments:
        e = e.model_dump(mode="json") if hasattr(e, "model_dump") else dict(e)
        known[e["id"]] = e
    running = Table(title=f"running ({len(view.get('running', []))})")
    add_columns(running, ("experiment", "plan", "submitter", "state", "devices", "since", "worker"))
    for r in view.get("running", []):
        exp = known.get(r["id"], {})
        running.add_row(
            r["id"],
            r.get("plan") or exp.get("plan") or "",
            r.get("submitter") or exp.get("submitter") or "",
            r.get("re_state") or exp.get("state") or "",
            ", ".join(r.get("devices") or exp.get("devices") or []),
            _since(r.get("started") or exp.get("started")),
            r.get("worker") or "",
        )
    book = Table(title="reservations")
    add_columns(book, ("resource", "holder", "since", "waiters"))
    for resource, held in sorted((view.get("reservations") or {}).items()):
        waiters = ", ".join(
            f"{w.get('experiment')} since {_since(w.get('since'))}" for w in held.get("waiters", [])
        )
        holder = (held.get("holder") or "free") + (" (block)" if held.get("block") else "")
        book.add_row(resource, holder, _since(held.get("since")), waiters)
    waiting = Table(title="waiting")
    add_columns(waiting, ("experiment", "why"))
    for exp_id, why in (view.get("waiting") or {}).items():
        waiting.add_row(exp_id, why)
    return [running, book, waiting]


def progress_text(progress: dict[str, Any] | None) -> str:
    """A run's progress as ``done/total`` (events of its primary stream), or ``n event(s)``
    when the plan does not say how many (or did more than it said)."""
    progress = progress or {}
    done, total = progress.get("done") or 0, progress.get("total")
    if isinstance(total, int) and total > 0 and done <= total:
        return f"{done}/{total}"
    return f"{done} event{'s' if done != 1 else ''}"


def _reading(value: Any) -> str:
    """One value of an event as a short text: numbers to 6 digits, arrays by their shape."""
    if isinstance(value, list):
        return f"[{len(value)} values]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def status_line(status: dict[str, Any]) -> str:
    """A worker's live status in one line: each running experiment's own state (running,
    paused) and progress, else the worker's state."""
    running = status.get("running") or {}
    if isinstance(running, dict) and running:
        each = [
            f"{key} {entry.get('state', '?')} {progress_text(entry.get('progress'))}"
            for key, entry in running.items()
        ]
        return "worker: " + "; ".join(each)
    line = f"worker {status.get('state')} {status.get('experiment_id') or ''}".rstrip()
    if status.get("run_uid"):
        line += f" {progress_text(status.get('progress'))}"
    return line


class EventPrinter:
    """Prints a gateway's live updates, one line each (a document, the worker's status, the
    end); a status line only when it says something new."""

    def __init__(self) -> None:
        self.last_status: str | None = None

    def __call__(self, event: Any) -> None:
        if event.kind == "document":
            self.document(*event.document)
        elif event.kind == "status":
            line = status_line(event.data)
            if line != self.last_status:
                self.last_status = line
                console.print(line, style="dim", markup=False, highlight=False)
        elif event.kind == "end":
            exp = event.data
            line = f"experiment {exp['id']} {exp['state']}"
            if exp.get("message"):
                line += f": {exp['message']}"
            console.print(line, style="bold", markup=False, highlight=False)

    def document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            line = f"start run {doc['uid']} plan {doc.get('plan_name')}"
        elif name == "event":
            data = ", ".join(f"{k}={_reading(v)}" for k, v in doc["data"].items())
            line = f"event {doc.get('seq_num')}: {data}"
        elif name == "event_page":
            line = f"event page {doc.get('seq_num')}"
        elif name == "stop":
            line = f"stop {doc.get('exit_status')} {doc.get('reason') or ''}".rstrip()
        else:
            line = name
        console.print(line, markup=False, highlight=False)


def print_event(event: Any) -> None:
    """One live update from a gateway, printed without memory (see :class:`EventPrinter`)."""
    EventPrinter()(event)


def plans_table(data: list[dict[str, Any]], title: str) -> Table:
    """A gateway's plans and whether the token may submit them."""
    table = Table(title=title)
    add_columns(table, ("plan", "description", "you may submit", "needs approval"))
    for p in data:
        table.add_row(p["name"], p["description"], str(p["allowed"]), str(p["needs_approval"]))
    return table


def devices_table(data: list[dict[str, Any]], title: str) -> Table:
    """Devices with their live status (as a gateway describes them)."""
    table = Table(title=title)
    columns = ("device", "class", "role", "online", "busy", "holder", "limits", "safe state")
    add_columns(table, columns)
    for d in data:
        limits = ", ".join(f"{k} {lo:g}…{hi:g}" for k, (lo, hi) in d["limits"].items())
        safe = ", ".join(f"{k}={v}" for k, v in d.get("safe_state", {}).items())
        holder = d.get("experiment") or ""
        if d.get("waiters"):
            holder += f" (+{len(d['waiters'])} waiting)"
        table.add_row(
            d["name"], d["class"], d["role"], str(d["online"]), str(d["busy"]), holder, limits, safe
        )
    return table


def lab_summary(summary: dict[str, Any]) -> str:
    """One line on a lab as a gateway sums it up: held, workers, waiting, running; then a
    line for each open alert and each worker found lost."""
    current = summary.get("current")
    running = summary.get("running") or ([current] if current else [])
    lines = [
        f"lab [bold]{summary['name']}[/]"
        + (" (simulated)" if summary["simulated"] else "")
        + (" [bold red]HELD[/]" if summary["held"] else "")
        + f": {summary['workers']} worker(s), {summary['queued']} waiting"
        + (", running " + ", ".join(_running(e) for e in running) if running else "")
    ]
    lines += [alert_line(a) for a in summary.get("alerts") or []]
    lines += [lost_line(r) for r in summary.get("lost") or []]
    return "\n".join(lines)


def _running(exp: dict[str, Any]) -> str:
    """A running experiment in the lab's summary line: its id, plan and state if not running."""
    state = exp.get("state")
    return f"{exp['id']} ({exp['plan']}{'' if state in (None, 'running') else f', {state}'})"


def lost_line(record: dict[str, Any]) -> str:
    """One worker found lost: since when, by whom, what was marked crashed."""
    crashed = ", ".join(record.get("experiments") or []) or "none"
    return (
        f"  [bold red]worker {escape(str(record['id']))} lost[/] at {record.get('at', '?')[:19]} "
        f"(no heartbeat for {record.get('silent_for', 0):.0f} s; host {record.get('host') or '?'})"
        f", marked by {escape(str(record.get('by', '?')))}; crashed: {crashed}"
    )


def alert_line(alert: dict[str, Any]) -> str:
    """An open alert of a worker, as one line (its text escaped: it is not markup)."""
    try:
        since = when(datetime.fromisoformat(str(alert["since"])))
    except (KeyError, ValueError):
        since = "?"
    return f"[bold red]![/] {escape(str(alert.get('message', '')))} (since {since})"


def verification(result: dict[str, Any]) -> None:
    """A run checked against its recorded content hash: OK or FAILED, and both hashes."""
    ok = result["ok"]
    console.print(
        f"[{'green' if ok else 'red'}]{'OK' if ok else 'FAILED'}[/] "
        f"{escape(str(result['uid']))}: {escape(str(result['detail']))}"
    )
    console.print(f"  recorded sha256 {result.get('expected') or '-'}", markup=False)
    console.print(f"  computed sha256 {result['actual']}", markup=False)


def samples_table(data: list[dict[str, Any]]) -> Table:
    """The lab's samples: where each is, who holds it, whether it is used up (and why)."""
    said = any(s.get("live") for s in data)
    table = Table(title="samples" + ("" if said else " (where the lab file puts them)"))
    add_columns(table, ("sample", "location", "held by", "used up", "description"))
    for s in data:
        used = s.get("why_consumed") or ("yes" if s.get("consumed") else "")
        row = (s["id"], s.get("location", ""), s.get("held_by") or "", used, s.get("description"))
        table.add_row(*(escape(str(v or "")) for v in row))
    return table


def runs_table(data: list[dict[str, Any]]) -> Table:
    """Stored runs as a gateway lists them."""
    table = Table(title=f"{len(data)} run(s)")
    add_columns(table, ("uid", "plan", "experiment", "submitter", "start", "events", "exit"))
    for r in data:
        table.add_row(
            r["uid"],
            r["plan_name"] or "",
            r["experiment_id"] or "",
            r["submitter"] or "",
            when(r["time"]),
            str(r["num_events"]),
            r["exit_status"] or "incomplete",
        )
    return table


__all__ = [
    "ID_COLUMNS",
    "EventPrinter",
    "activity",
    "add_columns",
    "devices_table",
    "done",
    "dump",
    "experiment",
    "experiment_line",
    "experiments_table",
    "lab_summary",
    "plans_table",
    "print_event",
    "print_queue",
    "progress_text",
    "runs_table",
    "samples_table",
    "show_experiment",
    "status_line",
    "submitted",
    "verification",
    "when",
    "worker_said",
]
