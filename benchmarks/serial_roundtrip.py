"""Serial figures: query round trip over a pty and over TCP, and the bench plan on both labs.

Run: ``python benchmarks/serial_roundtrip.py`` (with ``src`` on ``PYTHONPATH``). Prints figures;
asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from remotelab.devices.serial import make_serial_backend
from remotelab.sim import SimClock, World
from remotelab.sim.server import serve_instrument

N = 2000


def roundtrip(transport: str) -> list[float]:
    world = World(seed=1, clock=SimClock(1000))
    server = serve_instrument(world, "heater", "TemperatureController", transport=transport)
    backend = make_serial_backend("heater", "TemperatureController", server.port, clock=world.clock)
    times = []
    try:
        for _ in range(N):
            began = time.perf_counter()
            backend.read("setpoint")
            times.append(time.perf_counter() - began)
    finally:
        backend.close()
        server.close()
    return times


def main() -> None:
    for transport in ("pty", "tcp"):
        t = sorted(roundtrip(transport))
        print(
            f"{transport}: {N} queries 'SOUR:TEMP?': median {statistics.median(t) * 1e6:.0f} us, "
            f"p99 {t[int(0.99 * N)] * 1e6:.0f} us, {N / sum(t):.0f} queries/s"
        )
    from test_serial_lab import run_bench

    for lab in ("sim", "serial-sim"):
        began = time.perf_counter()
        events, state = run_bench(lab)
        print(
            f"bench plan on {lab!r}: {len(events)} events, {state['clock']:.0f} clock s, "
            f"{time.perf_counter() - began:.2f} s wall (speed 2000)"
        )


if __name__ == "__main__":
    main()
