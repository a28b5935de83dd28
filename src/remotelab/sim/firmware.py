"""The firmware of a simulated instrument: one command line in, one reply line (or none) out.

A :class:`CommandHandler` speaks one protocol family of
:mod:`remotelab.devices.serial.protocols` over a :class:`~remotelab.sim.instruments.SimInstrument`:
:class:`ScpiHandler` for IEEE 488.2 / SCPI instruments, :class:`AsciiHandler` for vendor
ASCII ones. :func:`make_handler` picks the one a protocol needs.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any

from remotelab.devices.serial.protocols import (
    Action,
    InstrumentProtocol,
    decode_value,
    encode_value,
)
from remotelab.errors import DeviceError
from remotelab.sim.instruments import SimInstrument


def _message(instrument: SimInstrument, exc: BaseException) -> str:
    text = str(exc).removeprefix(f"{instrument.name}: ")
    return text.replace('"', "'").replace("\r", " ").replace("\n", " ")


class CommandHandler(ABC):
    """The instrument's firmware: turns one command line into one reply line (or none)."""

    def __init__(self, instrument: SimInstrument, protocol: InstrumentProtocol):
        self.instrument, self.protocol = instrument, protocol

    @abstractmethod
    def is_stop(self, line: str) -> bool:
        """True for commands obeyed at once, even while an earlier command is running."""

    @abstractmethod
    def handle(self, line: str, stopped: bool = False, superseded: bool = False) -> str | None:
        """The reply to ``line``; ``stopped``: it is a stop already obeyed; ``superseded``:
        a stop arrived after it, so an operation it asks for is refused."""

    @abstractmethod
    def injected_error(self) -> str:
        """The error reply an injected ``error`` wire fault sends."""

    @abstractmethod
    def failure(self, message: str) -> str:
        """The error reply to a command the firmware itself failed on."""


class _ScpiError(Exception):
    def __init__(self, code: int, message: str):
        self.code, self.message = code, message


class ScpiHandler(CommandHandler):
    """IEEE 488.2 / SCPI: ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``SYST:ERR?``, ``ABOR`` …"""

    def __init__(self, instrument: SimInstrument, protocol: InstrumentProtocol):
        super().__init__(instrument, protocol)
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self.queries = {h.upper(): q for q, h in protocol.queries.items()}
        self.settings = {h.upper(): q for q, h in protocol.settings.items()}
        self.actions = {a.command.upper(): name for name, a in protocol.actions.items()}

    def is_stop(self, line: str) -> bool:
        return any(p.strip().upper() in ("ABOR", "*RST") for p in line.split(";"))

    def injected_error(self) -> str:
        return 'ERR -300,"Device-specific error; injected fault"'

    def failure(self, message: str) -> str:
        message = message.replace('"', "'")
        self.errors.append((-300, f"Device-specific error; {message}"))
        return f'ERR -300,"Device-specific error; {message}"'

    def handle(self, line: str, stopped: bool = False, superseded: bool = False) -> str | None:
        replies = []
        for part in line.split(";"):
            header, _, arg = part.strip().partition(" ")
            if not header:
                continue
            try:
                reply = self._one(header.upper(), arg.strip(), stopped, superseded)
            except _ScpiError as exc:
                self.errors.append((exc.code, exc.message))
                return f'ERR {exc.code},"{exc.message}"'
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except DeviceError as exc:
            raise _ScpiError(-200, f"Execution error; {_message(self.instrument, exc)}") from None

    def _one(self, header: str, arg: str, stopped: bool, superseded: bool) -> str | None:
        inst = self.instrument
        if header == "*IDN?":
            return inst.identify()
        if header == "*OPC?":
            return "1"
        if header == "*CLS":
            self.errors.clear()
            return None
        if header in ("*RST", "ABOR"):
            if not stopped:
                inst.stop()
            if header == "*RST":
                self.errors.clear()
            return None
        if header in ("SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?"):
            if not self.errors:
                return '0,"No error"'
            code, message = self.errors.popleft()
            return f'{code},"{message}"'
        operation = header in self.actions or (
            header == self.protocol.measure_query and self.protocol.measured
        )
        if operation and superseded:
            raise _ScpiError(-200, "Execution error; aborted before it started")
        if header == self.protocol.measure_query and self.protocol.measured:
            values = self._call(lambda: inst.run("measure"))
            return ",".join(encode_value(values[q]) for q in self.protocol.measured)
        if header in self.queries:
            return encode_value(self._call(lambda: inst.read(self.queries[header])))
        if header in self.settings:
            if not arg:
                raise _ScpiError(-109, "Missing parameter")
            try:
                value = float(arg)
            except ValueError:
                raise _ScpiError(-104, f"Data type error; {arg}") from None
            self._call(lambda: inst.write(self.settings[header], value))
            return None
        if header in self.actions:
            self._call(lambda: inst.run(self.actions[header]))
            return None
        raise _ScpiError(-113, f"Undefined header; {header}")


class AsciiHandler(CommandHandler):
    """Vendor ASCII: mnemonic commands answered ``OK``, a value, or ``ER <code> <message>``.

    Actions run in the background; ``STA?`` says ``BUSY``, ``IDLE`` or ``FAULT <message>``
    (the fault stays until the next action starts).
    """

    def __init__(self, instrument: SimInstrument, protocol: InstrumentProtocol):
        super().__init__(instrument, protocol)
        self.queries = {h.upper(): q for q, h in protocol.queries.items()}
        self.settings = {h.upper(): q for q, h in protocol.settings.items()}
        self.actions = {a.command.upper(): (name, a) for name, a in protocol.actions.items()}
        self._op: threading.Thread | None = None
        self._fault: str | None = None

    def is_stop(self, line: str) -> bool:
        words = line.split()
        return bool(words) and words[0].upper() == "STP"

    def injected_error(self) -> str:
        return "ER 9 injected fault"

    def failure(self, message: str) -> str:
        return f"ER 9 {message}"

    @property
    def busy(self) -> bool:
        return self._op is not None and self._op.is_alive()

    def handle(self, line: str, stopped: bool = False, superseded: bool = False) -> str | None:
        words = line.split()
        if not words:
            return None
        mnemonic, args = words[0].upper(), words[1:]
        inst = self.instrument
        try:
            if mnemonic == "IDN":
                return inst.identify()
            if mnemonic == self.protocol.status_query:
                if self.busy:
                    return "BUSY"
                return f"FAULT {self._fault}" if self._fault else "IDLE"
            if mnemonic == "STP":
                if not stopped:
                    inst.stop()
                return "OK"
            if mnemonic in self.queries:
                if args:
                    return f"ER 2 {mnemonic} takes no argument"
                return encode_value(inst.read(self.queries[mnemonic]))
            if mnemonic in self.settings:
                if len(args) != 1:
                    return f"ER 2 {mnemonic} takes one number"
                try:
                    value = float(args[0])
                except ValueError:
                    return f"ER 2 not a number: {args[0]}"
                if self.busy:
                    return "ER 3 busy"
                inst.write(self.settings[mnemonic], value)
                return "OK"
            if mnemonic in self.actions:
                if superseded:
                    return "ER 5 stopped before it started"
                return self._start(*self.actions[mnemonic], args)
        except DeviceError as exc:
            return f"ER 4 {_message(inst, exc)}"
        return f"ER 1 unknown command {mnemonic}"

    def _start(self, name: str, action: Action, args: list[str]) -> str:
        if len(args) != len(action.params):
            wanted = " ".join(p for p, _ in action.params) or "no argument"
            return f"ER 2 {action.command} takes {wanted}"
        params: dict[str, Any] = {}
        for (param, kind), text in zip(action.params, args, strict=True):
            try:
                params[param] = decode_value(text, kind)
            except ValueError:
                return f"ER 2 bad {param}: {text}"
        if self.busy:
            return "ER 3 busy"
        self._fault = None
        inst = self.instrument

        def operate() -> None:
            try:
                inst.run(name, **params)
            except DeviceError as exc:
                self._fault = _message(inst, exc)
            except Exception as exc:
                self._fault = f"{name} failed: {exc}"

        self._op = threading.Thread(target=operate, name=f"sim:{inst.name}:{name}", daemon=True)
        self._op.start()
        return "OK"


def make_handler(instrument: SimInstrument, protocol: InstrumentProtocol) -> CommandHandler:
    """The handler of ``protocol``'s family, answering for ``instrument``."""
    return (ScpiHandler if protocol.family == "scpi" else AsciiHandler)(instrument, protocol)


__all__ = ["AsciiHandler", "CommandHandler", "ScpiHandler", "make_handler"]
