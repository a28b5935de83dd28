"""Serial backends: the :class:`~remotelab.devices.Backend` of each device class over its protocol.

- :class:`ScpiBackend` (sensors, temperature controller, stirrer): queries answer
  at once, settings are sent as ``<command> <value>;*OPC?``, a measurement is one
  ``MEAS?`` that answers when the measurement is done.
- :class:`AsciiBackend` (syringe pump, sample arm, liquid handler): an action
  command starts the operation and is answered ``OK`` at once; the backend then
  polls ``STA?`` (``BUSY`` / ``IDLE`` / ``FAULT <message>``) until it is over, so
  no single command waits longer than its timeout however long a dispense takes.

Error replies raise :class:`~remotelab.errors.InstrumentError`; an operation the
instrument reports as failed raises :class:`~remotelab.errors.DeviceFault`.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from typing import Any

from remotelab.devices.backend import Backend, Clock, RealClock
from remotelab.devices.serial.protocols import (
    InstrumentProtocol,
    decode_value,
    encode_value,
    protocol_for,
)
from remotelab.devices.serial.transport import Aborted, SerialTransport
from remotelab.errors import DeviceFault, InstrumentError, ProtocolError

#: the shortest real time between two status polls
MIN_POLL_WALL = 0.002
#: real seconds an operation may stay busy after a stop before the backend gives up on it
STOP_GRACE = 10.0


class SerialBackend(Backend):
    """What the SCPI and ASCII backends share: a transport, a protocol, a clock."""

    #: the simulated instrument at the other end of the line, when a simulated lab serves
    #: one (set by the lab; used to arm simulator faults); None for real hardware
    simulator: Any = None

    def __init__(
        self,
        name: str,
        protocol: InstrumentProtocol,
        transport: SerialTransport,
        *,
        clock: Clock | None = None,
        measure_timeout: float = 60.0,
        poll_interval: float = 0.5,
    ):
        self.name = name
        self.protocol = protocol
        self.transport = transport
        self.clock = clock or RealClock()
        #: clock seconds a blocking operation (a measurement, a tare) may take
        self.measure_timeout = float(measure_timeout)
        #: clock seconds between status polls of a running operation
        self.poll_interval = float(poll_interval)
        self._stopping = threading.Event()
        transport.open()

    @property
    def port(self) -> str:
        return self.transport.url

    # -- request/response with the family's error replies --------------------------------
    @abstractmethod
    def error_code(self, reply: str) -> str | None:
        """The error code if ``reply`` is an error reply, else None (per protocol family)."""

    def ask(self, command: str, *, timeout: float | None = None, idempotent: bool = False) -> str:
        reply = self.transport.query(command, timeout=timeout, idempotent=idempotent)
        code = self.error_code(reply)
        if code is not None:
            raise InstrumentError(self.name, self.port, command, code, reply)
        return reply

    def garbled(self, command: str, reply: str, why: str) -> ProtocolError:
        self.transport.mark_unsynchronised()
        message = f"unexpected reply {reply!r} to {command!r}: {why}"
        return ProtocolError(self.name, self.port, message, reply.encode())

    def decode(self, command: str, reply: str, quantity: str) -> Any:
        try:
            return decode_value(reply, self.protocol.kind(quantity))
        except ValueError as exc:
            raise self.garbled(command, reply, str(exc)) from None

    @staticmethod
    def argument(name: str, value: Any) -> str:
        text = encode_value(value)
        if not text or any(c.isspace() or not c.isprintable() or c in ";," for c in text):
            raise DeviceFault(name, f"cannot send {value!r} over the line (blank or separator)")
        return text

    # -- the Backend interface -------------------------------------------------------------
    def identify(self) -> str:
        return self.ask(self.protocol.identity_query, idempotent=True)

    def read(self, quantity: str) -> Any:
        query = self.protocol.queries.get(quantity)
        if query is None:
            raise DeviceFault(self.name, f"the {self.protocol.device_class} has no {quantity!r}")
        return self.decode(query, self.ask(query, idempotent=True), quantity)

    def write(self, quantity: str, value: Any) -> None:
        command = self.protocol.settings.get(quantity)
        if command is None:
            kind = self.protocol.device_class
            raise DeviceFault(self.name, f"the {kind} cannot set {quantity!r}")
        self.command(f"{command} {self.argument(self.name, value)}")

    @abstractmethod
    def command(self, command: str, timeout: float | None = None) -> None:
        """Send a setting or action and check the instrument accepted it (per protocol family)."""

    def close(self) -> None:
        self.transport.close()

    def blocking_timeout(self) -> float:
        """Real seconds to wait for an operation that answers when it is done."""
        return self.transport.timeout + self.clock.wall(self.measure_timeout)


class ScpiBackend(SerialBackend):
    """A SCPI (IEEE 488.2) instrument: ``ERR <code>,"<message>"`` is an error reply."""

    def error_code(self, reply: str) -> str | None:
        if reply.startswith("ERR "):
            return reply[4:].split(",", 1)[0].strip()
        return None

    def command(self, command: str, timeout: float | None = None) -> None:
        line = f"{command};*OPC?"
        reply = self.ask(line, timeout=timeout)
        if reply != "1":
            raise self.garbled(line, reply, "*OPC? answers 1")

    def run(self, action: str, **params: Any) -> Any:
        self._stopping.clear()
        try:
            if action == "measure" and self.protocol.measured:
                return self._measure()
            spec = self.protocol.actions.get(action)
            if spec is None:
                raise DeviceFault(self.name, f"the {self.protocol.device_class} cannot {action!r}")
            args = " ".join(self.argument(self.name, params[p]) for p, _ in spec.params)
            self.command(f"{spec.command} {args}".strip(), timeout=self.blocking_timeout())
            return None
        except Aborted:
            raise DeviceFault(self.name, f"{action} stopped") from None

    def _measure(self) -> dict[str, Any]:
        query = self.protocol.measure_query
        reply = self.ask(query, timeout=self.blocking_timeout())
        measured = self.protocol.measured
        if len(measured) == 1:
            return {measured[0]: self.decode(query, reply, measured[0])}
        parts = reply.split(",")
        if len(parts) != len(measured):
            raise self.garbled(query, reply, f"expected {len(measured)} values")
        return {q: self.decode(query, p, q) for q, p in zip(measured, parts, strict=True)}

    def stop(self) -> None:
        self._stopping.set()
        line = f"{self.protocol.stop_command};*OPC?"
        reply = self.transport.interrupt(line)
        if reply is not None and reply != "1":
            code = self.error_code(reply)
            if code is not None:
                raise InstrumentError(self.name, self.port, line, code, reply)
            raise self.garbled(line, reply, "*OPC? answers 1")

    def reset(self) -> None:
        """``*RST``: stop and return to the power-on state; ``*CLS`` clears the error queue."""
        self.command("*RST")

    def next_error(self) -> str:
        """``SYST:ERR?``: the oldest queued error (``0,"No error"`` when there is none)."""
        return self.transport.query("SYST:ERR?", idempotent=False)


def _scpi_on_connect(transport: SerialTransport) -> None:
    reply = transport.query("*CLS;*OPC?")
    if reply != "1":
        transport.mark_unsynchronised()
        raise ProtocolError(
            transport.device, transport.url, f"*CLS;*OPC? answered {reply!r}", reply.encode()
        )


class AsciiBackend(SerialBackend):
    """A vendor-style ASCII instrument: ``ER <code> <message>`` is an error reply."""

    def error_code(self, reply: str) -> str | None:
        if reply.startswith("ER "):
            return reply[3:].split(" ", 1)[0]
        return None

    def command(self, command: str, timeout: float | None = None) -> None:
        reply = self.ask(command, timeout=timeout)
        if reply != "OK":
            raise self.garbled(command, reply, "expected OK")

    def run(self, action: str, **params: Any) -> Any:
        spec = self.protocol.actions.get(action)
        if spec is None:
            raise DeviceFault(self.name, f"the {self.protocol.device_class} cannot {action!r}")
        missing = [p for p, _ in spec.params if p not in params]
        if missing:
            raise DeviceFault(self.name, f"{action} needs {', '.join(missing)}")
        args = " ".join(self.argument(self.name, params[p]) for p, _ in spec.params)
        self._stopping.clear()
        try:
            self.command(f"{spec.command} {args}".strip())
        except Aborted:
            # stopped while starting: wait for whatever did start to end, then fail
            self._await_idle(action)
            raise DeviceFault(self.name, f"{action} stopped") from None
        self._await_idle(action)
        return None

    def _await_idle(self, action: str) -> None:
        query = self.protocol.status_query
        pause = max(self.clock.wall(self.poll_interval), MIN_POLL_WALL)
        stop_deadline: float | None = None
        while True:
            try:
                status = self.ask(query, idempotent=True)
            except Aborted:
                continue
            if status == "IDLE":
                return
            if status.startswith("FAULT"):
                raise DeviceFault(self.name, status[5:].strip() or f"{action} failed")
            if status != "BUSY":
                raise self.garbled(query, status, "expected IDLE, BUSY or FAULT <message>")
            if not self._stopping.is_set():
                self._stopping.wait(pause)  # a stop wakes the poll at once
                continue
            if stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_GRACE
            elif time.monotonic() > stop_deadline:
                raise DeviceFault(
                    self.name, f"{action} still busy {STOP_GRACE:g} s after it was stopped"
                )
            time.sleep(pause)

    def stop(self) -> None:
        self._stopping.set()
        reply = self.transport.interrupt(self.protocol.stop_command)
        if reply is not None and reply != "OK":
            code = self.error_code(reply)
            if code is not None:
                raise InstrumentError(self.name, self.port, self.protocol.stop_command, code, reply)
            raise self.garbled(self.protocol.stop_command, reply, "expected OK")


#: the driver options :func:`make_serial_backend` takes besides the port and baudrate
SERIAL_OPTIONS = {
    "timeout": "real seconds a command may wait for its reply (default 1)",
    "retries": "how often an idempotent query is retried (default 2)",
    "reconnect_attempts": "reopen attempts after a dropped line (default 4)",
    "measure_timeout": "clock seconds a measurement or tare may take (default 60)",
    "poll_interval": "clock seconds between status polls of an operation (default 0.5)",
    "terminator": "override the protocol's line terminator",
}


def make_serial_backend(
    name: str,
    device_class: str,
    port: str,
    *,
    baudrate: int = 9600,
    clock: Clock | None = None,
    timeout: float = 1.0,
    retries: int = 2,
    reconnect_attempts: int = 4,
    measure_timeout: float = 60.0,
    poll_interval: float = 0.5,
    terminator: str | None = None,
) -> SerialBackend:
    """Open ``port`` and return the serial backend of a ``device_class`` instrument.

    ``port`` is any ``serial.serial_for_url`` URL; the keyword options are described in
    :data:`SERIAL_OPTIONS`. Raises :class:`ValueError` for a bad option value and
    :class:`~remotelab.errors.Disconnected` if the line cannot be opened.
    """
    protocol = protocol_for(device_class)
    transport = SerialTransport(
        name,
        port,
        terminator=protocol.terminator if terminator is None else terminator,
        identity_query=protocol.identity_query,
        baudrate=baudrate,
        timeout=timeout,
        retries=retries,
        reconnect_attempts=reconnect_attempts,
        on_connect=_scpi_on_connect if protocol.family == "scpi" else None,
    )
    cls = ScpiBackend if protocol.family == "scpi" else AsciiBackend
    return cls(
        name,
        protocol,
        transport,
        clock=clock,
        measure_timeout=measure_timeout,
        poll_interval=poll_interval,
    )
