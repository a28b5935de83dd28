"""Serial figures: query round trip over a pty and over TCP, and the bench plan on both labs.

Run: ``python benchmarks/serial_roundtrip.py [--queries N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from remotelab.devices.serial import make_serial_backend  # noqa: E402
from remotelab.sim import SimClock, World  # noqa: E402
from remotelab.sim.server import serve_instrument  # noqa: E402


def roundtrip(transport: str, n: int) -> list[float]:
    world = World(seed=1, clock=SimClock(1000))
    server = serve_instrument(world, "heater", "TemperatureController", transport=transport)
    backend = make_serial_backend("heater", "TemperatureController", server.port, clock=world.clock)
    times = []
    try:
        for _ in range(n):
            began = time.perf_counter()
            backend.read("setpoint")
            times.append(time.perf_counter() - began)
    finally:
        backend.close()
        server.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000, help="round trips per transport")
    n = ap.parse_args().queries
    for transport in ("pty", "tcp"):
        t = sorted(roundtrip(transport, n))
        print(
            f"{transport}: {n} queries 'SOUR:TEMP?': median {statistics.median(t) * 1e6:.0f} us, "
            f"p99 {t[int(0.99 * n)] * 1e6:.0f} us, {n / sum(t):.0f} queries/s"
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
