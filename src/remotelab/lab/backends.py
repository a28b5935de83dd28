"""Build the backend a lab file names for a device: a simulator or a serial driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from remotelab.devices.backend import Backend
from remotelab.errors import LabFileError

if TYPE_CHECKING:
    from remotelab.lab.schema import DeviceSpec
    from remotelab.sim.world import World


def build_backend(name: str, spec: DeviceSpec, world: World | None) -> Backend:
    """The backend of device ``name`` as its lab-file entry ``spec`` describes it."""
    if spec.backend == "sim":
        from remotelab.sim.instruments import SIM_INSTRUMENTS

        if world is None:  # pragma: no cover - Lab always makes a world for sim devices
            raise LabFileError(f"devices.{name}: a simulated device needs a simulated world")
        try:
            return SIM_INSTRUMENTS[spec.class_](world, name, **spec.options)
        except TypeError as exc:
            raise LabFileError(f"devices.{name}.options: {exc}") from None
    if spec.backend == "serial":
        try:
            from remotelab.devices.serial import build_serial_backend
        except ImportError:
            raise LabFileError(
                f"devices.{name}: the serial backend is not available in this installation"
            ) from None
        return build_serial_backend(name, spec, world)
    raise LabFileError(f"devices.{name}.backend: unknown backend {spec.backend!r}")
