"""A lab: named devices built from a YAML lab file, its samples, and its safe state.

``load_lab()`` with no path loads the simulated lab shipped inside remotelab.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ophyd.status import wait as wait_status

from remotelab.devices import DEVICE_CLASSES, BackendDevice, LiquidHandler, SampleArm
from remotelab.devices.backend import Backend, Clock, RealClock
from remotelab.devices.samples import SampleTracker
from remotelab.errors import DeviceError, LabFileError, SafeStateError, UnknownDeviceError
from remotelab.lab.backends import build_backend, offline_backend, twin_backend
from remotelab.lab.schema import DeviceSpec, LabSpec, parse_lab, read_lab_file

#: the lab files shipped with remotelab, by short name
SHIPPED_LABS = {"sim": "sim.yaml", "serial-sim": "serial-sim.yaml"}


def shipped_lab_text(name: str = "sim") -> str:
    """The text of a lab file shipped inside the package."""
    if name not in SHIPPED_LABS:
        raise LabFileError(f"no shipped lab {name!r}; shipped: {', '.join(SHIPPED_LABS)}")
    return resources.files("remotelab.labs").joinpath(SHIPPED_LABS[name]).read_text()


class Lab:
    """Devices by name, the sample tracker, and ``safe_state()`` for the whole lab.

    With ``connect=False`` the devices are built over :class:`OfflineBackend`: nothing is
    opened (no serial port, no simulator), any I/O raises
    :class:`~remotelab.errors.NotConnectedError`, and the lab serves to validate
    submissions and describe itself exactly as the connected lab would.

    With ``simulate=True`` the lab is the file's *simulated twin*: the same devices, limits,
    samples and safe states, every device on the in-process simulator of its class over
    the lab's simulated world, whatever backend the file names (no port, pty or simulator
    server is opened); ``twin`` says so.
    """

    def __init__(
        self,
        spec: LabSpec,
        *,
        seed: int | None = None,
        speed: float | None = None,
        source: str = "",
        connect: bool = True,
        simulate: bool = False,
    ):
        self.spec = spec
        #: whether this is the lab file's simulated twin (every device on its simulator)
        self.twin = simulate
        self.name = spec.name
        self.source = source
        self.connected = connect
        self.world = None
        self.clock: Clock = RealClock()
        #: simulated instruments served on ptys/ports for ``simulate`` serial devices
        self.simulators: list[Any] = []
        if connect and self.simulated:
            self.world = self.build_world(spec, seed, speed)
            self.clock = self.world.clock
        self.tracker = SampleTracker.build(
            spec.locations.names(), {s: v.location for s, v in spec.samples.items()}
        )
        self.devices: dict[str, BackendDevice] = {}
        try:
            for name, device_spec in spec.devices.items():
                self.devices[name] = self._build_device(name, device_spec)
        except Exception:
            self.close()
            raise

    @staticmethod
    def build_world(spec: LabSpec, seed: int | None = None, speed: float | None = None):
        """The simulated world of a lab file: its clock and its samples (``seed`` and
        ``speed`` override the file's)."""
        from remotelab.sim import SimClock, World

        sim = spec.simulation
        world = World(
            seed=sim.seed if seed is None else seed,
            clock=SimClock(speed or sim.speed),
            ambient=sim.ambient,
        )
        for sample_id, sample in spec.samples.items():
            hidden = sim.samples.get(sample_id)
            world.add_sample(
                sample_id,
                sample.location,
                hidden.composition if hidden else {},
                sample.volume_ml,
                sample.container_g,
            )
        for labware, lw in spec.labware.items():
            hidden = sim.labware.get(labware)
            for well in lw.well_names(labware):
                world.add_well(
                    well, lw.volume_ul, lw.capacity_ul, hidden.composition if hidden else {}
                )
        return world

    @property
    def concurrency(self) -> int:
        """How many experiments the lab may run at once (the lab file's ``concurrency``)."""
        return self.spec.concurrency

    @property
    def visibility(self) -> str:
        """Who sees an experiment through the gateway (the lab file's ``visibility``):
        ``lab``, everyone with a role on the lab; ``own``, only its submitter and managers."""
        return self.spec.visibility

    @property
    def shared_devices(self) -> frozenset[str]:
        """Devices stations share for moments (``shared: true``): plans hold them in blocks."""
        return frozenset(n for n, d in self.spec.devices.items() if d.shared)

    @property
    def simulated(self) -> bool:
        """Whether the lab is simulated: a twin, or a lab file whose devices (or some) are."""
        return self.twin or any(
            d.backend == "sim" or bool(d.options.get("simulate"))
            for d in self.spec.devices.values()
        )

    def _build_device(self, name: str, spec: DeviceSpec) -> BackendDevice:
        cls = DEVICE_CLASSES[spec.class_]
        backend: Backend
        if not self.connected:
            backend = offline_backend(name, spec, twin=self.twin)
        elif self.twin:
            assert self.world is not None  # a twin is simulated: it has a world
            backend = twin_backend(name, spec, self.world)
        else:
            backend = build_backend(name, spec, self.world, self.simulators)
        kwargs: dict[str, Any] = {
            "backend": backend,
            "limits": spec.limits,
            "safe_state": spec.safe_state,
            "config": spec.config,
            "timeout": spec.timeout,
        }
        if issubclass(cls, SampleArm):
            kwargs["tracker"] = self.tracker
        if issubclass(cls, LiquidHandler):
            kwargs["wells"] = {
                well: (lw.volume_ul, lw.capacity_ul)
                for labware, lw in self.spec.labware.items()
                for well in lw.well_names(labware)
            }
        try:
            return cls(name, **kwargs)
        except DeviceError as exc:
            backend.close()
            raise LabFileError(f"{self.source or 'lab file'}: devices.{exc}") from None
        except Exception:
            backend.close()
            raise

    # -- access ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> BackendDevice:
        if name not in self.devices:
            raise UnknownDeviceError(name, list(self.devices))
        return self.devices[name]

    def __contains__(self, name: object) -> bool:
        return name in self.devices

    def __iter__(self) -> Iterator[str]:
        return iter(self.devices)

    def by_role(self, role: str) -> dict[str, BackendDevice]:
        """Devices whose role is ``sensor``, ``actuator`` or ``robot``."""
        return {n: d for n, d in self.devices.items() if d.role == role}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary of the lab: devices (class, role, limits, safe state), samples."""
        return {
            "name": self.name,
            "description": self.spec.description,
            "simulated": self.simulated,
            "twin": self.twin,
            "concurrency": self.concurrency,
            "visibility": self.visibility,
            "devices": {
                n: {
                    "class": type(d).__name__,
                    "role": d.role,
                    "backend": self.spec.devices[n].backend,
                    "limits": {k: list(v) for k, v in d.limits.items()},
                    "safe_state": d.safe_settings,
                    "shared": self.spec.devices[n].shared,
                }
                for n, d in self.devices.items()
            },
            "samples": self.tracker.snapshot(),
        }

    # -- safety ------------------------------------------------------------------------------
    def _chosen(self, devices: Iterable[str] | None) -> dict[str, BackendDevice]:
        if devices is None:
            return dict(self.devices)
        return {name: self[name] for name in devices}

    def stop(self, devices: Iterable[str] | None = None) -> dict[str, str]:
        """Stop every device (or only ``devices``) now, all at once (one unresponsive device
        delays no other).

        Returns device → error for each device whose stop failed.
        """
        failures: dict[str, str] = {}
        chosen = self._chosen(devices)

        def stop_one(name: str, device: BackendDevice) -> None:
            try:
                device.stop()
            except Exception as exc:
                failures[name] = str(exc) or type(exc).__name__

        threads = [
            threading.Thread(target=stop_one, args=item, name=f"stop {item[0]}", daemon=True)
            for item in chosen.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return failures

    def safe_state(
        self, timeout: float = 60.0, devices: Iterable[str] | None = None
    ) -> dict[str, str]:
        """Stop everything (or only ``devices``), then bring each to its declared safe state.

        Returns device → "safe"; raises :class:`SafeStateError` naming each device that
        did not get there within ``timeout`` real seconds (one deadline for all).
        """
        chosen = self._chosen(devices)
        self.stop(chosen)
        statuses, failures = {}, {}
        for name, device in chosen.items():
            try:
                statuses[name] = device.go_safe()
            except Exception as exc:
                failures[name] = str(exc) or type(exc).__name__
        deadline = time.monotonic() + timeout
        for name, status in statuses.items():
            try:
                wait_status(status, timeout=max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                failures[name] = str(exc) or type(exc).__name__
        if failures:
            raise SafeStateError(failures)
        return dict.fromkeys(chosen, "safe")

    def unsafe_devices(self, devices: Iterable[str] | None = None) -> dict[str, str]:
        """Device → why it is not at its declared safe state, for every device (or only
        ``devices``) that is not; read from the instruments, nothing changed (compare
        :meth:`safe_state`, which brings them there)."""
        found = {}
        for name, device in self._chosen(devices).items():
            try:
                problem = device.safe_problem()
            except Exception as exc:
                problem = f"cannot tell: {exc or type(exc).__name__}"
            if problem:
                found[name] = problem
        return found

    def close(self) -> None:
        for device in self.devices.values():
            try:
                device.backend.close()
            except Exception:
                continue
        while self.simulators:
            self.simulators.pop().close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_lab(
    path: str | Path | None = None,
    *,
    seed: int | None = None,
    speed: float | None = None,
    connect: bool = True,
    simulate: bool = False,
) -> Lab:
    """Build the lab a lab file describes; with no path, the shipped simulated lab.

    ``seed`` and ``speed`` override the file's simulation settings. ``connect=False``
    opens no instrument (nor simulator): the lab validates submissions and describes its
    devices, and any device I/O raises :class:`~remotelab.errors.NotConnectedError`. The
    gateway and the queue commands load labs so, leaving the ports to the lab's worker.
    ``simulate=True`` builds the file's simulated twin (see :class:`Lab`); a device whose
    class has no simulator is a :class:`~remotelab.errors.LabFileError` naming it.
    """
    return Lab(
        lab_spec(path),
        seed=seed,
        speed=speed,
        source=_lab_source(path),
        connect=connect,
        simulate=simulate,
    )


def _lab_source(path: str | Path | None) -> str:
    name = "sim" if path is None else str(path)
    return f"remotelab:{name}" if name in SHIPPED_LABS else name


def lab_spec(path: str | Path | None = None) -> LabSpec:
    """The validated lab file at ``path``, or the shipped lab of that name (default ``sim``)."""
    name = "sim" if path is None else str(path)
    if name in SHIPPED_LABS:
        return parse_lab(shipped_lab_text(name), _lab_source(name))
    return read_lab_file(name)


__all__ = [
    "SHIPPED_LABS",
    "DeviceSpec",
    "Lab",
    "LabSpec",
    "lab_spec",
    "load_lab",
    "parse_lab",
    "shipped_lab_text",
]
