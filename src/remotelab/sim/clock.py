"""A simulated clock that can run faster than real time and keeps results repeatable.

Clock time only advances when an operation sleeps on it, so what a simulated
instrument reports depends on the sequence of operations, never on how fast the
host ran them: the speed factor changes wall time, not results. Each thread
keeps its own time while it sleeps (operations running side by side each see
their own elapsed time); the shared time is the latest time any of them reached.

A measurement takes its time on its own thread only (``shared=False``): it does not
move the shared clock, so detectors triggered side by side see the same world
whatever order the host happens to finish them in. The world moves with the
actuators and robots, whose operations a plan waits for.
"""

from __future__ import annotations

import math
import threading
import time


class SimClock:
    """Clock seconds that pass ``speed`` times faster than real seconds."""

    def __init__(self, speed: float = 1.0, start: float = 0.0):
        if not speed > 0:
            raise ValueError(f"the clock speed must be positive, not {speed!r}")
        self.speed = float(speed)
        self._now = float(start)
        self._lock = threading.Lock()
        self._local = threading.local()

    def time(self) -> float:
        local = getattr(self._local, "now", None)
        return self._now if local is None else max(local, self._now)

    def wall(self, seconds: float) -> float:
        return 0.0 if math.isinf(self.speed) else max(seconds, 0.0) / self.speed

    def _advance(self, target: float, shared: bool) -> None:
        self._local.now = target
        if not shared:
            return
        with self._lock:
            if target > self._now:
                self._now = target

    def sleep(self, seconds: float, *, shared: bool = True) -> None:
        """Let ``seconds`` pass; ``shared=False`` keeps the passing to this thread."""
        start = self.time()
        if seconds > 0:
            time.sleep(self.wall(seconds))
        self._advance(start + max(seconds, 0.0), shared)

    def wait(self, event: threading.Event, seconds: float, *, shared: bool = True) -> bool:
        """Wait up to ``seconds`` for ``event``; True if it was set (time passes only so far)."""
        start = self.time()
        began = time.monotonic()
        if event.wait(self.wall(seconds)):
            elapsed = (time.monotonic() - began) * self.speed
            self._advance(start + min(elapsed, max(seconds, 0.0)), shared)
            return True
        self._advance(start + max(seconds, 0.0), shared)
        return False

    def release_thread(self) -> None:
        """Forget this thread's own time (call when a thread finishes an operation)."""
        self._local.now = None
