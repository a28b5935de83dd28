"""Build the backend a lab file names for a device: a simulator or a serial driver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remotelab.devices.backend import Backend, OfflineBackend
from remotelab.errors import LabFileError

if TYPE_CHECKING:
    from remotelab.devices.serial import SerialBackend
    from remotelab.lab.schema import DeviceSpec
    from remotelab.sim.instruments import SimInstrument
    from remotelab.sim.world import World


def build_backend(
    name: str, spec: DeviceSpec, world: World | None, simulators: list[Any] | None = None
) -> Backend:
    """The backend of device ``name`` as its lab-file entry ``spec`` describes it.

    A serial device with ``options.simulate`` gets a simulated instrument served on a
    pty (or TCP port) over ``world``; the server is appended to ``simulators`` so the
    lab can stop it when it closes.
    """
    if spec.backend == "sim":
        from remotelab.sim.instruments import SIM_INSTRUMENTS

        if world is None:  # pragma: no cover - Lab always makes a world for sim devices
            raise LabFileError(f"devices.{name}: a simulated device needs a simulated world")
        try:
            return SIM_INSTRUMENTS[spec.class_](world, name, **spec.options)
        except TypeError as exc:
            raise LabFileError(f"devices.{name}.options: {exc}") from None
    if spec.backend == "serial":
        if spec.options.get("simulate"):
            return _simulated_serial(name, spec, world, simulators)
        return serial_backend(name, spec, world)
    raise LabFileError(f"devices.{name}.backend: unknown backend {spec.backend!r}")


def twin_backend(name: str, spec: DeviceSpec, world: World) -> Backend:
    """Device ``name``'s simulator in the lab's simulated twin, whatever backend the file names.

    The in-process simulator of its class over ``world``: no port, pty or server is opened.
    Its options are :meth:`DeviceSpec.twin_options`; a serial device's driver options are
    still checked as for the hardware.
    """
    if spec.backend == "serial":
        _serial_options(name, spec)
    simulator = _simulator_of(name, spec)
    key, options = spec.twin_options()
    try:
        return simulator(world, name, **options)
    except TypeError as exc:
        raise LabFileError(f"devices.{name}.{key}: {exc}") from None


def _simulator_of(name: str, spec: DeviceSpec) -> type[SimInstrument]:
    """The simulator class of device ``name``'s class; :class:`LabFileError` if it has none."""
    from remotelab.sim.instruments import SIM_INSTRUMENTS

    simulator = SIM_INSTRUMENTS.get(spec.class_)
    if simulator is None:
        raise LabFileError(
            f"devices.{name}: class {spec.class_} has no simulator; "
            "the simulated twin cannot be built"
        )
    return simulator


def offline_backend(name: str, spec: DeviceSpec, *, twin: bool = False) -> OfflineBackend:
    """A backend for device ``name`` that opens nothing (``load_lab(..., connect=False)``).

    The entry is checked as far as that can be done without the instrument: a serial
    device's options and port; for a ``twin`` (a device of the lab's simulated twin), that
    its class has a simulator. Any I/O through it raises
    :class:`~remotelab.errors.NotConnectedError`.
    """
    if spec.backend == "serial":
        _serial_options(name, spec)
    if twin:
        _simulator_of(name, spec)
        where = "simulated twin"
    elif spec.backend == "serial":
        where = "simulated serial" if spec.options.get("simulate") else f"serial {spec.port}"
    else:
        where = "simulated"
    return OfflineBackend(name, where)


def _serial_options(name: str, spec: DeviceSpec) -> dict[str, Any]:
    """The driver options of a serial device's entry (unknown ones and a missing port refused)."""
    try:
        from remotelab.devices.serial import SERIAL_OPTIONS
    except ImportError:
        raise LabFileError(
            f"devices.{name}: the serial backend is not available in this installation"
        ) from None
    options = dict(spec.options)
    known = [*SERIAL_OPTIONS, "simulate"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise LabFileError(
            f"devices.{name}.options: unknown serial option(s) {', '.join(unknown)}; "
            f"known: {', '.join(known)}"
        )
    if not spec.port and not options.get("simulate"):
        raise LabFileError(f"devices.{name}.port: a serial device needs a port")
    return options


def serial_backend(name: str, spec: DeviceSpec, world: World | None = None) -> SerialBackend:
    """The serial backend of lab-file device ``name`` (``backend: serial``).

    Checks the entry's ``port`` and ``options`` (the driver options of
    :data:`~remotelab.devices.serial.SERIAL_OPTIONS`, plus ``simulate``) and opens the
    line. A simulated device (``options.simulate``) runs on ``world``'s clock, a real
    one on the wall clock.
    """
    try:
        from remotelab.devices.serial import make_serial_backend
    except ImportError:
        raise LabFileError(
            f"devices.{name}: the serial backend is not available in this installation"
        ) from None
    options = _serial_options(name, spec)
    if not spec.port:
        raise LabFileError(f"devices.{name}.port: a serial device needs a port")
    simulated = bool(options.pop("simulate", False))
    clock = world.clock if simulated and world is not None else None
    try:
        return make_serial_backend(
            name, spec.class_, spec.port, baudrate=spec.baudrate, clock=clock, **options
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise LabFileError(f"devices.{name}.options: {exc}") from None


def _simulated_serial(
    name: str, spec: DeviceSpec, world: World | None, simulators: list[Any] | None
) -> Backend:
    """Start the simulated instrument of a ``simulate`` serial device; drive it over its port.

    ``options.simulate`` is ``true`` or a mapping of simulator options, where
    ``transport: pty|tcp`` picks the line (pty by default).
    """
    from remotelab.sim.server import serve_instrument

    if world is None:  # pragma: no cover - Lab always makes a world for simulated devices
        raise LabFileError(f"devices.{name}: a simulated device needs a simulated world")
    sim_options = spec.options["simulate"]
    sim_options = dict(sim_options) if isinstance(sim_options, dict) else {}
    transport = sim_options.pop("transport", "pty")
    if transport not in ("pty", "tcp"):
        raise LabFileError(
            f"devices.{name}.options.simulate.transport: 'pty' or 'tcp', not {transport!r}"
        )
    try:
        server = serve_instrument(world, name, spec.class_, sim_options, transport=transport)
    except TypeError as exc:
        raise LabFileError(f"devices.{name}.options.simulate: {exc}") from None
    if simulators is not None:
        simulators.append(server)
    options = {**spec.options, "simulate": True}
    try:
        backend = serial_backend(
            name, spec.model_copy(update={"port": server.port, "options": options}), world
        )
        backend.simulator = server.instrument  # so sim faults can be armed through the device
        return backend
    except Exception:
        server.close()
        if simulators is not None:
            simulators.remove(server)
        raise
