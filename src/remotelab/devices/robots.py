"""Robots: a sample-handling arm with named locations, and a liquid handler.

Both keep the lab's records (where each sample is, how much liquid each well
holds) true to the physical state: a record changes only after the backend has
confirmed the step, and after a failure the records are reconciled with what
the robot's own sensors report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Kind, Signal
from ophyd.status import Status

from remotelab.devices.base import BackendDevice, Quantity, Readback
from remotelab.devices.samples import GRIPPER, SampleTracker
from remotelab.errors import DeviceError, LimitError, SampleError

HOME = "home"


class SampleArm(BackendDevice):
    """A sample-handling arm that moves vials between named locations.

    ``set((source, destination))`` — or ``{"source": …, "destination": …}``, or
    ``{"sample": id, "destination": …}`` — picks the sample at ``source`` and
    places it at ``destination``; the status completes when it has been released.
    Locations are rack slots (``rack_a/3``), instrument stations and ``home`` (the
    park position, where no sample can be put). Backend: ``location`` and
    ``holding`` (read); actions ``goto(location)``, ``pick``, ``place``.
    Safe state: parked at ``home``.
    """

    role: ClassVar[str] = "robot"
    operation_timeout = 300.0

    location = Cpt(Readback, kind=Kind.hinted)
    holding = Cpt(Readback)
    sample = Cpt(Quantity, value="")

    def __init__(self, name: str, *, tracker: SampleTracker, **kwargs: Any):
        self.tracker = tracker
        super().__init__(name, **kwargs)

    @property
    def position(self) -> str:
        return str(self.location.get())

    @property
    def locations(self) -> tuple[str, ...]:
        return (*self.tracker.locations, HOME)

    def parse_move(self, value: Any) -> tuple[str, str, str]:
        """(sample, source, destination) of a move request; raises before anything moves."""
        if isinstance(value, str) and "->" in value:
            value = tuple(part.strip() for part in value.split("->", 1))
        if isinstance(value, Mapping):
            destination = value.get("destination")
            source = value.get("source")
            if source is None and "sample" in value:
                source = self.tracker.where(str(value["sample"]))
        elif isinstance(value, tuple | list) and len(value) == 2:
            source, destination = value
        else:
            raise SampleError(
                f"{self.name}: a move is (source, destination) or "
                f"{{'sample': id, 'destination': location}}, not {value!r}"
            )
        source = self._reachable("source", source)
        destination = self._reachable("destination", destination)
        sample = self.tracker.at(source)
        if sample is None:
            raise SampleError(f"{self.name}: there is no sample at {source}")
        occupant = self.tracker.at(destination)
        if occupant is not None and destination != source:
            raise SampleError(f"{self.name}: {destination} already holds sample {occupant}")
        return sample, source, destination

    def _reachable(self, label: str, loc: object) -> str:
        if not isinstance(loc, str) or loc not in (*self.tracker.locations, GRIPPER):
            raise SampleError(
                f"{self.name}: {label} {loc!r} is not a location it can reach; "
                f"known: {', '.join(self.tracker.locations)}"
            )
        return loc

    def set(self, value: Any, **_: Any) -> Status:
        sample, source, destination = self.parse_move(value)
        return self.operate(
            f"move {sample} from {source} to {destination}",
            lambda: self._move(sample, source, destination),
        )

    def move_sample(self, sample: str, destination: str) -> Status:
        """Move ``sample`` from wherever it is to ``destination``."""
        return self.set({"sample": sample, "destination": destination})

    def _move(self, sample: str, source: str, destination: str) -> None:
        self.sample.put(sample)
        try:
            if source != GRIPPER:
                self.backend_run("goto", location=source)
                self._check_stopped()
                self.backend_run("pick")
                self.tracker.move(sample, GRIPPER, note=f"picked by {self.name} at {source}")
                self._check_stopped()
            self.backend_run("goto", location=destination)
            self._check_stopped()
            self.backend_run("place")
            self.tracker.move(sample, destination, note=f"placed by {self.name}")
        except Exception:
            self.reconcile(sample)
            raise
        finally:
            self.sample.put("")

    def _check_stopped(self) -> None:
        if self.stopped():
            raise DeviceError(self.name, "stopped mid-move")

    def reconcile(self, sample: str) -> None:
        """After a failure, make the tracker agree with the gripper sensor."""
        try:
            holding = bool(self.backend_read("holding"))
            here = str(self.backend_read("location"))
        except DeviceError:
            return
        tracked = self.tracker.where(sample)
        if tracked == GRIPPER and not holding:
            self.tracker.mark_lost(sample, note=f"{self.name} lost its grip near {here}")
        elif tracked != GRIPPER and holding and self.tracker.at(GRIPPER) is None:
            self.tracker.move(sample, GRIPPER, note=f"{self.name} holds it after a failure")

    def safe_problem(self) -> str | None:
        """A sample left in the gripper (the arm may rest anywhere with an empty one)."""
        if bool(self.backend_read("holding")):
            return f"holds a sample in its gripper at {self.backend_read('location')}"
        return None

    def go_safe(self) -> Status:
        """Park at ``home``, keeping hold of any sample in the gripper."""
        return self.operate("park", lambda: self.backend_run("goto", location=HOME))


class LiquidHandler(BackendDevice):
    """A single-channel pipetting robot over labware wells (``plate/A1``, ``reservoir/1``).

    ``transfer(source, destination, volume)`` aspirates then dispenses ``volume`` µL;
    ``set({"source": …, "destination": …, "volume": …})`` does the same from a plan.
    The handler keeps a ledger of every well's volume, changed only by confirmed
    steps; a refused request (more than the well holds, more than fits, more than the
    tip takes) fails before anything moves. Backend: ``tip_volume`` (read); actions
    ``aspirate(well, volume)``, ``dispense(well, volume)``, ``eject``.
    Safe state: tip emptied to waste.
    """

    role: ClassVar[str] = "robot"
    operation_timeout = 300.0
    default_limits = {"volume": (1.0, 1000.0)}

    tip_volume = Cpt(Readback, units="uL", precision=1, kind=Kind.hinted)
    last_transfer = Cpt(Signal, value="", kind=Kind.normal)

    def __init__(
        self,
        name: str,
        *,
        wells: Mapping[str, tuple[float, float]],
        **kwargs: Any,
    ):
        #: well → [volume µL, capacity µL]
        self.wells: dict[str, list[float]] = {
            w: [float(v), float(c)] for w, (v, c) in wells.items()
        }
        super().__init__(name, **kwargs)

    @property
    def position(self) -> str:
        return str(self.last_transfer.get())

    def volume(self, well: str) -> float:
        return self._well(well)[0]

    def _well(self, well: str) -> list[float]:
        if well not in self.wells:
            raise SampleError(f"{self.name}: unknown well {well!r}; known: {', '.join(self.wells)}")
        return self.wells[well]

    def check_transfer(self, source: str, destination: str, volume: float) -> None:
        self.check_limit("volume", volume, "uL")
        have, _ = self._well(source)
        held, capacity = self._well(destination)
        if volume > have + 1e-9:
            raise LimitError(self.name, f"volume from {source}", volume, 0, have, "uL")
        room = capacity - held + (volume if source == destination else 0.0)
        if volume > room + 1e-9:
            raise LimitError(self.name, f"volume into {destination}", volume, 0, room, "uL")

    def transfer(self, source: str, destination: str, volume: float) -> Status:
        """Move ``volume`` µL from ``source`` to ``destination``."""
        volume = float(volume)
        self.check_transfer(source, destination, volume)
        return self.operate(
            f"transfer {volume:g} uL {source} -> {destination}",
            lambda: self._transfer(source, destination, volume),
        )

    def set(self, value: Any, **_: Any) -> Status:
        if not isinstance(value, Mapping) or not {"source", "destination", "volume"} <= set(value):
            raise SampleError(
                f"{self.name}: a transfer is {{'source': well, 'destination': well, "
                f"'volume': uL}}, not {value!r}"
            )
        return self.transfer(str(value["source"]), str(value["destination"]), value["volume"])

    def _transfer(self, source: str, destination: str, volume: float) -> None:
        self.backend_run("aspirate", well=source, volume=volume)
        self.wells[source][0] -= volume
        try:
            self.backend_run("dispense", well=destination, volume=volume)
        except Exception:
            left = float(self.backend_read("tip_volume"))
            self.wells[destination][0] += volume - left
            raise
        self.wells[destination][0] += volume
        self.last_transfer.put(f"{volume:g} uL {source} -> {destination}")

    def safe_problem(self) -> str | None:
        """Liquid left in the tip."""
        left = float(self.backend_read("tip_volume"))
        return f"{left:g} uL left in its tip" if left > 1e-9 else None

    def go_safe(self) -> Status:
        return self.operate("eject tip to waste", lambda: self.backend_run("eject"))
