"""The lab file: a pydantic schema for the YAML that describes a lab.

Validation errors name the key path and the line of the offending entry.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from remotelab.errors import LabFileError, NotificationError
from remotelab.notify.events import SUBSCRIBABLE, EventKind
from remotelab.notify.targets import check_url


def simulator_options(simulator: type) -> list[str]:
    """The options a simulator class takes (its keyword parameters after world and name)."""
    params = list(inspect.signature(simulator).parameters.values())[2:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DeviceSpec(_Strict):
    """One device: its class, its backend and connection, soft limits and safe state."""

    class_: str = Field(alias="class", description="device class, e.g. Thermometer")
    backend: Literal["sim", "serial"] = "sim"
    port: str | None = Field(None, description="serial port URL (backend: serial)")
    baudrate: int = 9600
    options: dict[str, Any] = Field(default_factory=dict, description="backend options")
    config: dict[str, Any] = Field(default_factory=dict, description="device configuration")
    limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    safe_state: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, description="operation timeout, clock seconds")
    shared: bool = Field(
        False,
        description="stations share it for moments (a sample arm): plans hold it for blocks "
        "of their steps, never for a whole run",
    )
    twin: dict[str, Any] | None = Field(
        None,
        description="options of the device's simulator in the lab's simulated twin "
        "(load_lab(simulate=True)); default: the sim options or options.simulate",
    )
    description: str = ""

    @field_validator("class_")
    @classmethod
    def _known_class(cls, value: str) -> str:
        from remotelab.devices import DEVICE_CLASSES

        if value not in DEVICE_CLASSES:
            raise ValueError(f"unknown device class {value!r}; known: {', '.join(DEVICE_CLASSES)}")
        return value

    @field_validator("limits")
    @classmethod
    def _ordered(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for key, (lo, hi) in value.items():
            if lo > hi:
                raise ValueError(f"limits of {key}: low {lo} is above high {hi}")
        return value

    @field_validator("twin")
    @classmethod
    def _known_twin_options(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        device_class = info.data.get("class_")
        if value is None or device_class is None:
            return value
        from remotelab.sim.instruments import SIM_INSTRUMENTS

        simulator = SIM_INSTRUMENTS.get(device_class)
        if simulator is None:
            raise ValueError(f"class {device_class} has no simulator to take twin options")
        known = simulator_options(simulator)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown twin option(s) {', '.join(unknown)} for the simulated "
                f"{device_class}; known: {', '.join(known) or 'none'}"
            )
        return value

    def twin_options(self) -> tuple[str, dict[str, Any]]:
        """(key, options) of this device's simulator in the lab's simulated twin.

        ``twin:`` if given; else a sim device's ``options``, or a ``simulate`` serial
        device's ``options.simulate`` mapping (its ``transport`` left out); else none.
        """
        if self.twin is not None:
            return "twin", dict(self.twin)
        if self.backend == "sim":
            return "options", dict(self.options)
        simulate = self.options.get("simulate")
        if isinstance(simulate, dict):
            return "options.simulate", {k: v for k, v in simulate.items() if k != "transport"}
        return "twin", {}

    @model_validator(mode="after")
    def _port_for_serial(self) -> DeviceSpec:
        if self.backend == "serial" and not self.port and not self.options.get("simulate"):
            raise ValueError("a serial device needs a port (e.g. /dev/ttyUSB0, socket://host:port)")
        return self


class SampleSpec(_Strict):
    location: str
    description: str = ""
    volume_ml: float = Field(0.0, ge=0)
    container_g: float = Field(10.0, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class LabwareSpec(_Strict):
    """A labware item for the liquid handler: its wells share a capacity and a start volume."""

    wells: int | list[str]
    capacity_ul: float = Field(gt=0)
    volume_ul: float = Field(0.0, ge=0)

    def well_names(self, name: str) -> list[str]:
        names = (
            [str(i + 1) for i in range(self.wells)] if isinstance(self.wells, int) else self.wells
        )
        return [f"{name}/{w}" for w in names]


class LocationsSpec(_Strict):
    racks: dict[str, int] = Field(default_factory=dict, description="rack name → slot count")
    stations: list[str] = Field(default_factory=list)

    def names(self) -> list[str]:
        slots = [f"{rack}/{i + 1}" for rack, n in self.racks.items() for i in range(n)]
        return [*slots, *self.stations]


class SimulatedSample(_Strict):
    composition: dict[str, float] = Field(default_factory=dict)


class SimulationSpec(_Strict):
    """What only a simulator knows: hidden compositions, the seed and the clock speed."""

    seed: int = 0
    speed: float = Field(1.0, gt=0)
    ambient: float = 22.0
    samples: dict[str, SimulatedSample] = Field(default_factory=dict)
    labware: dict[str, SimulatedSample] = Field(default_factory=dict)


class PlansSpec(_Strict):
    """Which plan modules the lab adds, and which plans each role may run."""

    modules: list[str] = Field(default_factory=list)
    roles: dict[str, list[str]] = Field(default_factory=dict)
    approval: dict[Literal["roles", "plans"], list[str]] = Field(
        default_factory=dict,
        description="submissions that wait for a manager: by these roles, or of these plans",
    )


class NotifyTarget(_Strict):
    """One target of the lab's notifications: an apprise URL and the events it receives."""

    url: str = Field(description="an apprise URL, e.g. mailto://user:pass@smtp.example.org")
    events: list[EventKind] = Field(
        default_factory=lambda: list(SUBSCRIBABLE), description="default: every event"
    )

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: str) -> str:
        try:
            return check_url(value)
        except NotificationError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("events")
    @classmethod
    def _subscribable(cls, value: list[EventKind]) -> list[EventKind]:
        if EventKind.test in value:
            raise ValueError("'test' is not an event to subscribe to")
        return value


class UnattendedSpec(_Strict):
    """How the lab looks after itself when nobody watches it (faults, stalls)."""

    hold_after_failures: int = Field(
        3,
        ge=0,
        le=1000,
        description="experiments in a row failing with the same error before the lab is held "
        "(0: never)",
    )
    low_disk_mib: int = Field(
        500, ge=0, description="free MiB on the run store's disk below which an alert is raised"
    )
    stall_factor: float = Field(
        3.0,
        gt=1,
        description="a plan running this many times its expected duration raises an alert",
    )
    question_timeout_s: float = Field(
        1800.0, gt=0, description="an operator question unanswered this long raises an alert"
    )
    queue_stall_s: float = Field(
        600.0,
        gt=0,
        description="experiments waiting, a lane free, the lab not held, and none started for "
        "this long: an alert",
    )


class LabSpec(_Strict):
    """A whole lab file."""

    name: str
    description: str = ""
    locations: LocationsSpec = Field(default_factory=LocationsSpec)
    samples: dict[str, SampleSpec] = Field(default_factory=dict)
    labware: dict[str, LabwareSpec] = Field(default_factory=dict)
    devices: dict[str, DeviceSpec]
    concurrency: int = Field(1, ge=1, le=64, description="experiments the lab may run at once")
    visibility: Literal["lab", "own"] = Field(
        "lab",
        description="who sees an experiment through the gateway: everyone with a role on the "
        "lab (lab), or only its submitter and the lab's managers (own)",
    )
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)
    plans: PlansSpec = Field(default_factory=PlansSpec)
    unattended: UnattendedSpec = Field(default_factory=UnattendedSpec)
    notify: list[NotifyTarget] = Field(
        default_factory=list, description="who the lab's notifications go to (apprise URLs)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LabSpec:
        places = set(self.locations.names())
        for sample, spec in self.samples.items():
            if spec.location not in places:
                raise ValueError(f"sample {sample}: unknown location {spec.location!r}")
        taken: dict[str, str] = {}
        for sample, spec in self.samples.items():
            if spec.location in taken:
                raise ValueError(
                    f"samples {taken[spec.location]} and {sample} are both at {spec.location}"
                )
            taken[spec.location] = sample
        for sample in self.simulation.samples:
            if sample not in self.samples:
                raise ValueError(f"simulation.samples.{sample}: no such sample in samples")
        return self


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Key path → 1-based line number, from the YAML node tree."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                index[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


def parse_lab(text: str, source: str = "<lab file>") -> LabSpec:
    """Validate a lab file's text; :class:`LabFileError` names the key and line of each problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabFileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LabFileError(f"{source}: a lab file is a mapping with at least 'name' and 'devices'")
    try:
        return LabSpec.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)
        problems = []
        for err in exc.errors():
            path = tuple(str(p) for p in err["loc"])
            key = ".".join(p for p in path if p) or "(top level)"
            line = next(
                (lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None
            )
            where = f" (line {line})" if line else ""
            problems.append(f"{key}{where}: {err['msg']}")
        raise LabFileError(f"{source}: " + "; ".join(problems)) from None


def read_lab_file(path: str | Path) -> LabSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabFileError(f"cannot read lab file {path}: {exc.strerror}") from None
    return parse_lab(text, str(path))
