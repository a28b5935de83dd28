"""The line a served instrument talks over, and one connection's session on it.

A :class:`PtyLink` is the instrument's end of a pseudo-terminal, a :class:`SocketLink` one
accepted TCP connection. A :class:`Session` reads command lines off a link: a reader thread
obeys stop commands at once (as real firmware does), a worker thread serves the commands
in order.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import socket
import threading
import tty
from collections.abc import Callable

from remotelab.sim.firmware import CommandHandler

#: the longest command line the simulated firmware buffers
MAX_LINE = 65536

_LINE_END = re.compile(rb"[\r\n]")


class PtyLink:
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


class SocketLink:
    """One accepted TCP connection."""

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


Link = PtyLink | SocketLink

#: serves one command: ``serve(session, line, stopped, superseded)``
Serve = Callable[["Session", str, bool, bool], None]


class Session:
    """One connection: a reader thread (obeys stop commands at once) and a worker thread.

    Each command line goes to ``serve``; ``stopped`` says it is a stop already obeyed,
    ``superseded`` that a stop came after it.
    """

    def __init__(self, link: Link, handler: CommandHandler, serve: Serve):
        self.link, self.handler, self.serve = link, handler, serve
        self.queue: queue.Queue[tuple[str, bool, int] | None] = queue.Queue()
        #: how many stop commands were read so far
        self.stops = 0
        self.closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        name = handler.instrument.name
        self.reader = threading.Thread(target=self._read, name=f"sim:{name}:rx", daemon=True)
        self.worker = threading.Thread(target=self._work, name=f"sim:{name}:tx", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.worker.start()

    def _read(self) -> None:
        buffer = b""
        handler = self.handler
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
                    handler.instrument.stop()
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
            self.serve(self, line, stopped, superseded)

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


__all__ = ["MAX_LINE", "Link", "PtyLink", "Session", "SocketLink"]
