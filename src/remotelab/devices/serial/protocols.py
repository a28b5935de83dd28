"""The wire protocols of remotelab's instruments, written down as data.

Each device class has an :class:`InstrumentProtocol`: which family it belongs to
(``scpi`` — IEEE 488.2 / SCPI — or ``ascii``, a vendor-style mnemonic protocol),
its line terminator, and which command or query carries each quantity and action.
The serial drivers speak from these tables and the simulated instruments answer
from them; ``docs/protocols.md`` describes the same commands for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Family = Literal["scpi", "ascii"]
#: how a value travels: a number, a comma-separated list of numbers, a word, a 1/0 flag
ValueKind = Literal["number", "array", "text", "flag"]


@dataclass(frozen=True)
class Action:
    """An operation: the command that starts it and its parameters (name, kind) in order."""

    command: str
    params: tuple[tuple[str, ValueKind], ...] = ()


@dataclass(frozen=True)
class InstrumentProtocol:
    """How one device class is driven over a serial line."""

    device_class: str
    family: Family
    #: line terminator, both directions
    terminator: str
    #: quantity → query (``MEAS:TEMP?``, ``DIS?``)
    queries: Mapping[str, str] = field(default_factory=dict)
    #: quantity → setting command (``SOUR:TEMP``), sent as ``<command> <value>``
    settings: Mapping[str, str] = field(default_factory=dict)
    #: quantities one ``MEAS?`` returns, in order (SCPI sensors)
    measured: tuple[str, ...] = ()
    #: action → command; SCPI actions complete before the reply, ASCII ones are polled
    actions: Mapping[str, Action] = field(default_factory=dict)
    #: value kinds of quantities that are not plain numbers
    kinds: Mapping[str, ValueKind] = field(default_factory=dict)

    @property
    def identity_query(self) -> str:
        return "*IDN?" if self.family == "scpi" else "IDN"

    @property
    def stop_command(self) -> str:
        return "ABOR" if self.family == "scpi" else "STP"

    @property
    def status_query(self) -> str:
        """(ASCII) the query that says IDLE, BUSY or FAULT <message>."""
        return "STA?"

    @property
    def measure_query(self) -> str:
        return "MEAS?"

    def kind(self, quantity: str) -> ValueKind:
        return self.kinds.get(quantity, "number")


def encode_value(value: Any) -> str:
    """A value as it travels on the wire: floats at full precision (``repr``), flags as 1/0."""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, np.ndarray | list | tuple):
        return ",".join(repr(float(v)) for v in np.asarray(value, dtype=float).ravel())
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(float(value))
    return str(value)


def decode_value(text: str, kind: ValueKind) -> Any:
    """Parse a value sent by :func:`encode_value`; raises ``ValueError`` on anything else."""
    text = text.strip()
    if kind == "number":
        return float(text)
    if kind == "array":
        return np.array([float(v) for v in text.split(",")], dtype=float)
    if kind == "flag":
        if text not in ("0", "1"):
            raise ValueError(f"a flag is 0 or 1, not {text!r}")
        return text == "1"
    if not text or not text.isprintable():
        raise ValueError(f"not a printable word: {text!r}")
    return text


_SCPI_SENSOR_COMMON: dict[str, Any] = {"family": "scpi", "terminator": "\n"}

PROTOCOLS: dict[str, InstrumentProtocol] = {
    "Thermometer": InstrumentProtocol(
        "Thermometer", measured=("temperature",), **_SCPI_SENSOR_COMMON
    ),
    "PHMeter": InstrumentProtocol("PHMeter", measured=("ph", "temperature"), **_SCPI_SENSOR_COMMON),
    "Balance": InstrumentProtocol(
        "Balance",
        measured=("mass",),
        actions={"tare": Action("TARE")},
        **_SCPI_SENSOR_COMMON,
    ),
    "Spectrometer": InstrumentProtocol(
        "Spectrometer",
        measured=("absorbance",),
        queries={"wavelength": "SENS:WAV?"},
        kinds={"absorbance": "array", "wavelength": "array"},
        **_SCPI_SENSOR_COMMON,
    ),
    "TemperatureController": InstrumentProtocol(
        "TemperatureController",
        queries={
            "temperature": "MEAS:TEMP?",
            "setpoint": "SOUR:TEMP?",
            "ramp_rate": "SOUR:TEMP:RAMP?",
        },
        settings={"setpoint": "SOUR:TEMP", "ramp_rate": "SOUR:TEMP:RAMP"},
        **_SCPI_SENSOR_COMMON,
    ),
    "Stirrer": InstrumentProtocol(
        "Stirrer",
        queries={"speed": "MEAS:SPE?", "setpoint": "SOUR:SPE?"},
        settings={"setpoint": "SOUR:SPE"},
        **_SCPI_SENSOR_COMMON,
    ),
    "SyringePump": InstrumentProtocol(
        "SyringePump",
        family="ascii",
        terminator="\r",
        queries={"dispensed": "DIS?", "remaining": "REM?", "rate": "RAT?", "capacity": "CAP?"},
        settings={"rate": "RAT"},
        actions={"dispense": Action("DSP", (("volume", "number"),)), "refill": Action("FIL")},
    ),
    "SampleArm": InstrumentProtocol(
        "SampleArm",
        family="ascii",
        terminator="\r\n",
        queries={"location": "POS?", "holding": "GRP?"},
        actions={
            "goto": Action("MOV", (("location", "text"),)),
            "pick": Action("PCK"),
            "place": Action("PLC"),
        },
        kinds={"location": "text", "holding": "flag"},
    ),
    "LiquidHandler": InstrumentProtocol(
        "LiquidHandler",
        family="ascii",
        terminator="\r",
        queries={"tip_volume": "TIP?"},
        actions={
            "aspirate": Action("ASP", (("well", "text"), ("volume", "number"))),
            "dispense": Action("DSP", (("well", "text"), ("volume", "number"))),
            "eject": Action("EJT"),
        },
    ),
}


def protocol_for(device_class: str) -> InstrumentProtocol:
    """The protocol of a device class; ``KeyError`` names the classes that have one."""
    try:
        return PROTOCOLS[device_class]
    except KeyError:
        raise KeyError(
            f"no serial protocol for {device_class!r}; known: {', '.join(PROTOCOLS)}"
        ) from None
