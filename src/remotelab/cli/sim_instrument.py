"""``remotelab sim-instrument``: serve one simulated instrument on a pty or a TCP port."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from remotelab.cli.app import app, console, user_errors
from remotelab.errors import LabFileError


def _pick_device(spec, kind: str) -> tuple[str, str, dict]:
    """(device name, class, simulator options) of ``kind``: a device name or a class name."""
    from remotelab.sim.instruments import SIM_INSTRUMENTS

    def sim_options(device) -> dict:
        simulate = device.options.get("simulate")
        if isinstance(simulate, dict):
            return {k: v for k, v in simulate.items() if k != "transport"}
        return dict(device.options) if device.backend == "sim" else {}

    if kind in spec.devices:
        device = spec.devices[kind]
        return kind, device.class_, sim_options(device)
    wanted = kind.replace("-", "").replace("_", "").lower()
    for name, device in spec.devices.items():
        if device.class_.lower() == wanted:
            return name, device.class_, sim_options(device)
    for cls in SIM_INSTRUMENTS:
        if cls.lower() == wanted:
            return kind.lower(), cls, {}
    known = sorted({*spec.devices, *SIM_INSTRUMENTS})
    raise LabFileError(f"no instrument {kind!r}; try one of: {', '.join(known)}")


LAB_OPTION = typer.Option(
    None,
    "--lab",
    "-l",
    help="Lab file or shipped lab name (sim, serial-sim) whose world and options to use; "
    "default: the sim lab.",
)


@app.command("sim-instrument")
def sim_instrument(
    kind: str = typer.Argument(
        ..., help="A device of the lab file (thermometer, heater, pump, arm…) or a device class."
    ),
    pty: bool = typer.Option(False, "--pty", help="Serve on a pseudo-terminal (the default)."),
    tcp: int | None = typer.Option(
        None, "--tcp", metavar="PORT", help="Serve on a loopback TCP port (0: any free port)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on with --tcp."),
    lab_file: Path | None = LAB_OPTION,
    seed: int | None = typer.Option(None, "--seed", help="Noise seed (default: the lab file's)."),
    speed: float | None = typer.Option(None, "--speed", help="Clock speed factor (default 1)."),
) -> None:
    """Start a simulated instrument speaking its serial protocol and print its port.

    Open the port with any serial client (pyserial, socat, a terminal program) or
    with a lab file entry (backend: serial, port: …). Stop with Ctrl-C.
    """
    from remotelab.lab import Lab, lab_spec
    from remotelab.sim.server import serve_instrument

    with user_errors():
        if pty and tcp is not None:
            raise LabFileError("choose one of --pty and --tcp PORT")
        spec = lab_spec(lab_file)
        name, device_class, options = _pick_device(spec, kind)
        world = Lab.build_world(spec, seed, speed)
        try:
            server = serve_instrument(
                world,
                name,
                device_class,
                options,
                transport="pty" if tcp is None else "tcp",
                host=host,
                tcp_port=tcp or 0,
            )
        except (TypeError, OSError) as exc:
            raise LabFileError(f"cannot serve {name}: {exc}") from None
    protocol = server.protocol
    where = f" -> {server.pty_path}" if server.pty_path else ""
    console.print(f"port: {server.port}{where}", highlight=False, soft_wrap=True)
    console.print(
        f"{name}: {device_class} ({server.instrument.identify()}), {protocol.family} protocol, "
        f"terminator {protocol.terminator!r}; Ctrl-C stops it",
        highlight=False,
        soft_wrap=True,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
