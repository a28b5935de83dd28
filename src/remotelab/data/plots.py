"""A PNG summary of each run, drawn with matplotlib (Agg, no display needed).

One panel of the measured signals against the scanned axis (the start document's
``motors``) or against time; one panel per array-valued signal (a spectrum per event,
drawn as curves over the device's axis, e.g. ``spectrometer_wavelength``); and, for a
closed-loop optimisation (a start document naming its ``objective`` field), the objective
per iteration with the best value so far.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from remotelab.data.store import EventTable, RunStore

#: at most this many scalar signals get a panel (hinted fields first)
MAX_SIGNAL_PANELS = 6
#: at most this many spectra are drawn in one panel (evenly picked over the run)
MAX_CURVES = 40


def render_run(store: RunStore, uid: str, *, dpi: int = 100) -> bytes:
    """Draw a run's summary and return it as PNG bytes."""
    uid = store.resolve(uid)
    start = store.start_doc(uid)
    summary = store.run(uid)
    streams = store.streams(uid)
    table = store.table(uid, "primary" if "primary" in streams else streams[0]) if streams else None
    panels = _panels(start, table)
    fig = Figure(figsize=(8, 3.2 * max(1, len(panels))), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    title = f"{start.get('plan_name', 'run')} · {uid[:8]}"
    if start.get("experiment_id"):
        title += f" · experiment {start['experiment_id']}"
    title += f" · {summary.status}"
    fig.suptitle(title, fontsize=10)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no events recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (kind, arg) in zip(axes, panels, strict=True):
            assert table is not None
            if kind == "signal":
                _draw_signal(ax, start, table, arg)
            elif kind == "spectra":
                _draw_spectra(ax, table, arg)
            else:
                _draw_objective(ax, start, table, arg)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def motor_fields(start: dict[str, Any], table: EventTable) -> list[str]:
    """The columns of the scanned axes.

    The plan's ``hints["dimensions"]`` (bluesky's convention) when they name columns of
    the table, else each motor's hinted readback (or its own column).
    """
    fields: list[str] = []
    for dim in (start.get("hints") or {}).get("dimensions", []) or []:
        try:
            names, stream = dim
        except (TypeError, ValueError):
            continue
        if stream == table.stream:
            fields += [f for f in names if f in table.columns]
    if fields:
        return list(dict.fromkeys(fields))
    for motor in start.get("motors", []):
        hinted = table.hints.get(motor, {}).get("fields", [])
        named = [motor] if motor in table.columns else []
        prefixed = [k for k in table.columns if k.startswith(f"{motor}_")]
        fields += [k for k in (hinted or named or prefixed) if k in table.columns]
    return list(dict.fromkeys(fields))


def objective_of(start: dict[str, Any]) -> tuple[str | None, str]:
    """The optimised field and its direction (``max``/``min``) named in a start document.

    Read from ``objective``/``goal`` at the top level or from the ``optimizer`` mapping
    (``objective``, ``direction``) that remotelab's optimisation plan records.
    """
    recorded = start.get("optimizer")
    opt: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    objective = start.get("objective") or opt.get("objective")
    goal = str(start.get("goal") or opt.get("direction") or "max").lower()
    return (objective if isinstance(objective, str) else None), (
        "min" if goal.startswith("min") else "max"
    )


def _panels(start: dict[str, Any], table: EventTable | None) -> list[tuple[str, Any]]:
    if table is None or len(table) == 0:
        return []
    panels: list[tuple[str, Any]] = []
    motors = set(motor_fields(start, table))
    for motor in start.get("motors", []):
        motors.update(k for k in table.columns if k == motor or k.startswith(f"{motor}_"))
    signals = [
        k
        for k in table.scalar_columns()
        if k not in motors and np.issubdtype(table.columns[k].dtype, np.number)
    ]
    hinted = [k for k in _hinted(table) if k in signals]
    for key in (hinted or signals)[:MAX_SIGNAL_PANELS]:
        panels.append(("signal", key))
    for key in table.array_columns():
        if table.columns[key].ndim == 2:
            panels.append(("spectra", key))
    objective, _ = objective_of(start)
    if objective is not None and objective in signals:
        panels.append(("objective", objective))
    return panels


def _hinted(table: EventTable) -> list[str]:
    """The fields the descriptors' hints name (what the devices mark as worth plotting)."""
    return [f for hint in table.hints.values() for f in hint.get("fields", [])]


def _x_axis(start: dict[str, Any], table: EventTable) -> tuple[np.ndarray, str]:
    motors = motor_fields(start, table)
    if motors:
        key = motors[0]
        return table.columns[key], _label(key, table.data_keys.get(key, {}))
    return table.time - table.time[0], "time since first event (s)"


def _label(key: str, info: dict[str, Any]) -> str:
    units = info.get("units")
    return f"{key} ({units})" if units else key


def _draw_signal(ax: Any, start: dict[str, Any], table: EventTable, key: str) -> None:
    x, xlabel = _x_axis(start, table)
    ax.plot(x, table.columns[key], marker="o", markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(key, table.data_keys[key]))
    ax.grid(alpha=0.3)


def spectral_axis(table: EventTable, key: str, n: int) -> tuple[np.ndarray, str]:
    """The axis of an array signal: a same-length numeric configuration value of its device."""
    device = table.data_keys[key].get("object_name") or key.split("_", 1)[0]
    for conf in table.configuration.values():
        for ckey, value in conf.get("data", {}).items():
            if ckey.startswith(device) and ckey != key:
                arr = np.asarray(value)
                if arr.shape == (n,) and np.issubdtype(arr.dtype, np.number):
                    info = conf.get("data_keys", {}).get(ckey, {})
                    return arr.astype(float), _label(ckey, info)
    return np.arange(n, dtype=float), "index"


def _draw_spectra(ax: Any, table: EventTable, key: str) -> None:
    data = table.columns[key]
    x, xlabel = spectral_axis(table, key, data.shape[1])
    picks = np.unique(np.linspace(0, len(data) - 1, min(len(data), MAX_CURVES)).astype(int))
    colours = _colours(len(picks))
    for colour, i in zip(colours, picks, strict=True):
        ax.plot(x, data[i], color=colour, linewidth=1, label=f"event {table.seq_num[i]}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(key, table.data_keys[key]))
    ax.grid(alpha=0.3)
    if len(picks) <= 8:
        ax.legend(fontsize=8)


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(v) for v in np.linspace(0.0, 0.9, max(n, 1))][:n]


def _draw_objective(ax: Any, start: dict[str, Any], table: EventTable, key: str) -> None:
    values = np.asarray(table.columns[key], dtype=float)
    _, goal = objective_of(start)
    best = np.fmin.accumulate(values) if goal == "min" else np.fmax.accumulate(values)
    it = np.arange(1, len(values) + 1)
    ax.plot(it, values, "o", markersize=4, label=key)
    ax.step(it, best, where="post", label=f"best so far ({goal})")
    ax.set_xlabel("iteration")
    ax.set_ylabel(_label(key, table.data_keys[key]))
    ax.set_title("optimisation progress", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


__all__ = [
    "MAX_CURVES",
    "MAX_SIGNAL_PANELS",
    "motor_fields",
    "objective_of",
    "render_run",
    "spectral_axis",
]
