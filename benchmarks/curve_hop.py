"""What CurveZMQ costs one zmq hop: latency and throughput with and without it.

Two PAIR sockets on loopback in one process, as plain zmq and as remotelab's CURVE server and
client (its keypairs and its ZAP handler, ``remotelab.keys.curve``, in a temporary keys
directory). Prints, for each message size, the median one-way latency (half a round trip) and
the messages per second one socket pushes to the other.

Run: ``python benchmarks/curve_hop.py [--messages N] [--round-trips N] [--sizes 300,2000,65536]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remotelab.keys.curve import CONTROL, CurveKeys, Gatekeeper  # noqa: E402


def hop(keys: CurveKeys | None, size: int, messages: int, round_trips: int) -> tuple[float, float]:
    """(median one-way latency in µs, messages per second) of one hop."""
    ctx: zmq.Context = zmq.Context()
    gate = Gatekeeper(ctx, keys) if keys is not None else None
    server, client = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    for sock in (server, client):
        sock.sndhwm = sock.rcvhwm = 0
        sock.linger = 0
        sock.rcvtimeo = 10_000
    if keys is not None:
        keys.keypair("bench-server").serve(server, CONTROL)
        keys.keypair("bench-client").client(client, keys.keypair("bench-server").public)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client.connect(f"tcp://127.0.0.1:{port}")
    payload = b"x" * size
    try:
        client.send(b"hello")
        server.recv()  # the handshake is done
        one_way = []
        for _ in range(round_trips):
            t = time.perf_counter()
            client.send(payload)
            server.recv()
            server.send(payload)
            client.recv()
            one_way.append((time.perf_counter() - t) / 2)
        t = time.perf_counter()
        for _ in range(messages):
            client.send(payload)
        for _ in range(messages):
            server.recv()
        return statistics.median(one_way) * 1e6, messages / (time.perf_counter() - t)
    finally:
        server.close()
        client.close()
        if gate is not None:
            gate.stop()
        ctx.term()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000, help="messages of the throughput")
    ap.add_argument("--round-trips", type=int, default=2_000, help="round trips of the latency")
    ap.add_argument("--sizes", default="300,2000,65536", help="message sizes (bytes)")
    args = ap.parse_args()
    print(f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, one hop on loopback")
    with tempfile.TemporaryDirectory() as tmp:
        keys = CurveKeys(Path(tmp) / "curve")
        for size in (int(s) for s in args.sizes.split(",")):
            for label, k in (("plain", None), ("CURVE", keys)):
                latency, rate = hop(k, size, args.messages, args.round_trips)
                print(
                    f"{size:6d} B {label}: one-way latency median {latency:6.1f} µs, "
                    f"{rate:9.0f} messages/s"
                )


if __name__ == "__main__":
    main()
