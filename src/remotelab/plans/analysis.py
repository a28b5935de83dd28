"""Small analyses the plans run on their own readings (pure functions, no devices)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def equivalence_volume(volumes: Sequence[float], ph: Sequence[float]) -> float | None:
    """The volume at the steepest rise of a titration curve (the equivalence point).

    The derivative dpH/dV is taken between consecutive points; the steepest interval's
    midpoint is refined by a parabola through it and its neighbours' slopes. ``None``
    with fewer than three points.
    """
    v = np.asarray(volumes, dtype=float)
    p = np.asarray(ph, dtype=float)
    if v.size < 3:
        return None
    order = np.argsort(v, kind="stable")
    v, p = v[order], p[order]
    keep = np.concatenate(([True], np.diff(v) > 1e-12))
    v, p = v[keep], p[keep]
    if v.size < 3:
        return None
    slope = np.diff(p) / np.diff(v)
    mid = 0.5 * (v[1:] + v[:-1])
    i = int(np.argmax(slope))
    if 0 < i < slope.size - 1:
        x = mid[i - 1 : i + 2]
        y = slope[i - 1 : i + 2]
        a, b, _ = np.polyfit(x, y, 2)
        if a < 0:
            vertex = -b / (2 * a)
            if x[0] <= vertex <= x[2]:
                return float(vertex)
    return float(mid[i])
