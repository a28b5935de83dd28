"""Simulated instruments on the wire: a simulator answering its protocol on a pty or TCP port.

An :class:`InstrumentServer` puts one :class:`~remotelab.sim.instruments.SimInstrument`
behind the serial protocol of its device class (:mod:`remotelab.devices.serial.protocols`),
on a pseudo-terminal (the driver opens it exactly as it would open ``/dev/ttyUSB0``)
or on a loopback TCP port (``socket://127.0.0.1:PORT``). Every command is one call
of the same simulator object the direct sim backend uses, on the same world, so a
plan reads the same values whichever way it reaches the instrument.

Wire faults (:class:`WireFault`) are injected with :meth:`InstrumentServer.inject`:
no reply, a late reply, garbage bytes, an error reply, or the line dropped mid-reply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import select
import shutil
import socket
import tempfile
import threading
import tty
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from remotelab.devices.serial.protocols import (
    Action,
    InstrumentProtocol,
    decode_value,
    encode_value,
    protocol_for,
)
from remotelab.errors import DeviceError
from remotelab.sim.instruments import SIM_INSTRUMENTS, SimInstrument
from remotelab.sim.world import World

log = logging.getLogger("remotelab.sim.server")


class WireFault(StrEnum):
    """What the line does to the next matching command."""

    NO_REPLY = "no_reply"  #: the command is carried out, the reply never comes
    LATE = "late"  #: the reply comes ``delay`` real seconds late
    GARBAGE = "garbage"  #: the reply is replaced by line noise
    ERROR = "error"  #: the instrument refuses the command with an error reply
    DROP = "drop"  #: half the reply is sent, then the line drops (and comes back)


#: the bytes a GARBAGE fault sends instead of the reply
GARBAGE_BYTES = b"\xfe\x13\x87%\xff?\x00#\x9c"


@dataclass
class _Armed:
    fault: WireFault
    match: str | None
    delay: float
    times: int | None


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
    return (ScpiHandler if protocol.family == "scpi" else AsciiHandler)(instrument, protocol)


# -- the line: a pty or a TCP connection ------------------------------------------------------
class _PtyLink:
    """The instrument's end of a pseudo-terminal; the driver opens :attr:`path`."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass as they are
        self.path = os.ttyname(self._slave)

    def fileno(self) -> int:
        return self.master

    def recv(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _SocketLink:
    def __init__(self, conn: socket.socket):
        self.conn = conn

    def fileno(self) -> int:
        return self.conn.fileno()

    def recv(self) -> bytes:
        try:
            return self.conn.recv(4096)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.conn.close()


_LINE_END = re.compile(rb"[\r\n]")
#: the longest command line the simulated firmware buffers
MAX_LINE = 65536


class _Session:
    """One connection: a reader thread (obeys stop commands at once) and a worker thread."""

    def __init__(self, server: InstrumentServer, link: _PtyLink | _SocketLink):
        self.server, self.link = server, link
        self.queue: queue.Queue[tuple[str, bool, int] | None] = queue.Queue()
        #: how many stop commands were read so far
        self.stops = 0
        self.closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        name = server.instrument.name
        self.reader = threading.Thread(target=self._read, name=f"sim:{name}:rx", daemon=True)
        self.worker = threading.Thread(target=self._work, name=f"sim:{name}:tx", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.worker.start()

    def _read(self) -> None:
        buffer = b""
        handler = self.server.handler
        while not self.closed.is_set():
            ready, _, _ = select.select([self.link, self._wake_r], [], [])
            if self.closed.is_set():
                break
            if self.link not in ready:
                continue
            data = self.link.recv()
            if not data:
                break
            buffer += data
            *lines, buffer = _LINE_END.split(buffer)
            if len(buffer) > MAX_LINE:  # no terminator in sight: line noise, not a command
                buffer = b""
            for raw in lines:
                line = raw.decode("ascii", "replace").strip()
                if not line:
                    continue
                stopped = handler.is_stop(line)
                if stopped:
                    self.stops += 1
                    self.server.instrument.stop()
                self.queue.put((line, stopped, self.stops))
        self.queue.put(None)

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None or self.closed.is_set():
                return
            line, stopped, stops = item
            # an operation sent before a stop that has already been obeyed is not started
            superseded = not stopped and stops < self.stops
            self.server._serve(self, line, stopped, superseded)

    def send(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        with contextlib.suppress(OSError):
            self.link.send(data)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        os.write(self._wake_w, b"x")
        self.queue.put(None)
        me = threading.current_thread()
        for thread in (self.reader, self.worker):
            if thread is not me and thread.ident is not None:
                thread.join(timeout=5)
        self.link.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class InstrumentServer:
    """Serve ``instrument`` over its serial protocol on a pty (default) or a TCP port.

    After :meth:`start`, :attr:`port` is what a driver opens: for a pty a stable link
    to the current ``/dev/pts/N`` (:attr:`pty_path`), which survives a dropped line;
    for TCP ``socket://HOST:PORT``.
    """

    def __init__(
        self,
        instrument: SimInstrument,
        protocol: InstrumentProtocol | None = None,
        *,
        transport: str = "pty",
        host: str = "127.0.0.1",
        tcp_port: int = 0,
    ):
        if transport not in ("pty", "tcp"):
            raise ValueError(f"transport is 'pty' or 'tcp', not {transport!r}")
        if protocol is None:
            kinds = [k for k, cls in SIM_INSTRUMENTS.items() if isinstance(instrument, cls)]
            if not kinds:
                raise TypeError(
                    f"{type(instrument).__name__} is not a shipped simulator; pass its protocol"
                )
            protocol = protocol_for(kinds[0])
        self.instrument, self.protocol = instrument, protocol
        self.handler = make_handler(instrument, protocol)
        self.transport, self.host, self.tcp_port = transport, host, int(tcp_port)
        self.port = ""
        self.pty_path: str | None = None
        #: every command line received, oldest first (the last 10 000)
        self.received: deque[str] = deque(maxlen=10000)
        self._terminator = protocol.terminator.encode()
        self._faults: list[_Armed] = []
        self._lock = threading.Lock()
        self._exec = threading.Lock()
        self._sessions: list[_Session] = []
        self._closed = threading.Event()
        self._dir: str | None = None
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving; return the port URL a driver opens."""
        if self.transport == "pty":
            self._dir = tempfile.mkdtemp(prefix="remotelab-sim-")
            self.port = os.path.join(self._dir, self.instrument.name)
            self._new_pty()
        else:
            listener = socket.create_server((self.host, self.tcp_port))
            self._listener = listener
            self.tcp_port = listener.getsockname()[1]
            self.port = f"socket://{self.host}:{self.tcp_port}"
            self._accept_thread = threading.Thread(
                target=self._accept, name=f"sim:{self.instrument.name}:accept", daemon=True
            )
            self._accept_thread.start()
        return self.port

    def _new_pty(self) -> None:
        link = _PtyLink()
        self.pty_path = link.path
        temporary = f"{self.port}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(link.path, temporary)
        os.replace(temporary, self.port)
        self._add_session(link)

    def _add_session(self, link: _PtyLink | _SocketLink) -> None:
        session = _Session(self, link)
        with self._lock:
            self._sessions.append(session)
        session.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            watched: list[socket.socket | int] = [self._listener, self._wake_r]
            ready, _, _ = select.select(watched, [], [])
            if self._closed.is_set():
                return
            if self._listener in ready:
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    return
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._add_session(_SocketLink(conn))

    def close(self) -> None:
        """Stop serving and release the pty or port (the simulator itself is left as it is)."""
        if self._closed.is_set():
            return
        self._closed.set()
        os.write(self._wake_w, b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> InstrumentServer:
        if not self.port:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults -------------------------------------------------------------------------------
    def inject(
        self,
        fault: WireFault | str,
        *,
        match: str | None = None,
        delay: float = 1.0,
        times: int | None = 1,
    ) -> None:
        """Arm a wire fault for the next ``times`` commands (None: until cleared).

        ``match`` limits it to commands that start with that text (e.g. ``"MEAS?"``);
        ``delay`` is the real seconds a LATE reply waits.
        """
        with self._lock:
            self._faults.append(_Armed(WireFault(fault), match, float(delay), times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, line: str) -> _Armed | None:
        with self._lock:
            for armed in self._faults:
                if armed.match is None or line.upper().startswith(armed.match.upper()):
                    if armed.times is not None:
                        armed.times -= 1
                        if armed.times <= 0:
                            self._faults.remove(armed)
                    return armed
        return None

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, session: _Session, line: str, stopped: bool, superseded: bool) -> None:
        self.received.append(line)
        armed = self._take_fault(line)
        fault = armed.fault if armed is not None else None
        if fault is WireFault.ERROR:
            session.send(self.handler.injected_error().encode() + self._terminator)
            return
        with self._exec:
            try:
                reply = self.handler.handle(line, stopped, superseded)
            except Exception as exc:  # a simulator bug must not silence the instrument
                log.exception("%s: %r failed", self.instrument.name, line)
                reply = self.handler.failure(f"{type(exc).__name__}: {exc}")
            finally:
                self.instrument.clock.end()  # the server thread follows the shared time
        data = b"" if reply is None else reply.encode("ascii", "replace") + self._terminator
        if fault is WireFault.NO_REPLY:
            return
        if fault is WireFault.LATE:
            if session.closed.wait(armed.delay if armed is not None else 0.0):
                return
        elif fault is WireFault.GARBAGE:
            data = GARBAGE_BYTES + self._terminator
        elif fault is WireFault.DROP:
            session.send(data[: max(len(data) // 2, 1)])
            self._drop(session)
            return
        if data:
            session.send(data)

    def _drop(self, session: _Session) -> None:
        """The line drops: close this connection; a pty comes back on a new ``/dev/pts/N``."""
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.close()
        if self.transport == "pty" and not self._closed.is_set():
            self._new_pty()


def serve_instrument(
    world: World,
    name: str,
    device_class: str,
    options: dict[str, Any] | None = None,
    *,
    transport: str = "pty",
    host: str = "127.0.0.1",
    tcp_port: int = 0,
) -> InstrumentServer:
    """Make the simulator of ``device_class`` on ``world`` and serve it; return the server."""
    if device_class not in SIM_INSTRUMENTS:
        raise KeyError(f"no simulated {device_class!r}; known: {', '.join(SIM_INSTRUMENTS)}")
    instrument = SIM_INSTRUMENTS[device_class](world, name, **(options or {}))
    server = InstrumentServer(
        instrument, protocol_for(device_class), transport=transport, host=host, tcp_port=tcp_port
    )
    server.start()
    return server
