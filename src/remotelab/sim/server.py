"""Simulated instruments on the wire: a simulator answering its protocol on a pty or TCP port.

An :class:`InstrumentServer` puts one :class:`~remotelab.sim.instruments.SimInstrument`
behind the serial protocol of its device class (:mod:`remotelab.devices.serial.protocols`),
on a pseudo-terminal (the driver opens it exactly as it would open ``/dev/ttyUSB0``)
or on a loopback TCP port (``socket://127.0.0.1:PORT``). Every command is one call
of the same simulator object the direct sim backend uses, on the same world, so a
plan reads the same values whichever way it reaches the instrument.

Wire faults (:class:`WireFault`) are injected with :meth:`InstrumentServer.inject`:
no reply, a late reply, garbage bytes, an error reply, or the line dropped mid-reply.

The parts: :mod:`~remotelab.sim.firmware` (what the instrument answers),
:mod:`~remotelab.sim.links` (the pty or TCP line and a connection's session on it),
:mod:`~remotelab.sim.wire_faults` (what the line does to replies).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import tempfile
import threading
from collections import deque
from typing import Any

from remotelab.devices.serial.protocols import InstrumentProtocol, protocol_for
from remotelab.sim.firmware import make_handler
from remotelab.sim.instruments import SIM_INSTRUMENTS, SimInstrument
from remotelab.sim.links import Link, PtyLink, Session, SocketLink
from remotelab.sim.wire_faults import GARBAGE_BYTES, FaultTable, WireFault
from remotelab.sim.world import World

log = logging.getLogger("remotelab.sim.server")


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
        self._faults = FaultTable()
        self._lock = threading.Lock()
        self._exec = threading.Lock()
        self._sessions: list[Session] = []
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
        link = PtyLink()
        self.pty_path = link.path
        temporary = f"{self.port}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(link.path, temporary)
        os.replace(temporary, self.port)
        self._add_session(link)

    def _add_session(self, link: Link) -> None:
        session = Session(link, self.handler, self._serve)
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
                self._add_session(SocketLink(conn))

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
        self._faults.arm(fault, match, delay, times)

    def clear_faults(self) -> None:
        """Disarm every wire fault."""
        self._faults.clear()

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, session: Session, line: str, stopped: bool, superseded: bool) -> None:
        self.received.append(line)
        armed = self._faults.take(line)
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

    def _drop(self, session: Session) -> None:
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


__all__ = ["GARBAGE_BYTES", "InstrumentServer", "WireFault", "serve_instrument"]
