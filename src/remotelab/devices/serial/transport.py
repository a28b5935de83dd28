"""A request/response serial connection to one instrument, over ``serial.serial_for_url``.

``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port`` and ``loop://``
all work. One command is in flight at a time (a lock keeps concurrent callers
from interleaving bytes); every reply is one line; a reply that did not arrive
in time, or arrived garbled, leaves the line *unsynchronised*, and the next
command first resynchronises it (drains stale bytes up to a fresh identity
reply) so a late or half-read reply never answers the wrong command. A dropped
line is reopened with exponential back-off. Every byte is logged at DEBUG level
on the ``remotelab.devices.serial`` logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from remotelab.errors import Disconnected, ProtocolError, SerialTimeout

_TTY_ERRORS: tuple[type[Exception], ...]
try:  # termios raises its own error (not an OSError) on a hung-up tty
    from termios import error as termios_error

    _TTY_ERRORS = (termios_error,)
except ImportError:  # pragma: no cover - not a POSIX system
    _TTY_ERRORS = ()

#: what pyserial raises when a line goes away
LINE_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError, *_TTY_ERRORS)
#: what opening a line raises: pyserial refuses a malformed URL with a ValueError
OPEN_ERRORS: tuple[type[Exception], ...] = (*LINE_ERRORS, ValueError)

log = logging.getLogger("remotelab.devices.serial")

#: the longest a single blocking read waits before the transport checks deadlines and aborts
READ_SLICE = 0.02


class Aborted(Exception):
    """A pending read was abandoned because :meth:`SerialTransport.interrupt` was called."""


class SerialTransport:
    """One instrument's line: ``query(command)`` sends a line and returns the reply line.

    ``timeout`` is in real seconds per command. ``retries`` applies only to queries the
    caller marks idempotent. ``identity_query`` is asked on every (re)connect and to
    resynchronise; ``on_connect`` runs further set-up commands after a connect.
    """

    def __init__(
        self,
        device: str,
        url: str,
        *,
        terminator: str = "\n",
        identity_query: str = "*IDN?",
        baudrate: int = 9600,
        timeout: float = 1.0,
        retries: int = 2,
        reconnect_attempts: int = 4,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        encoding: str = "ascii",
        on_connect: Callable[[SerialTransport], None] | None = None,
    ):
        if timeout <= 0:
            raise ValueError(f"the command timeout must be positive, not {timeout!r}")
        self.device, self.url = device, url
        self.terminator = terminator.encode(encoding)
        self.identity_query = identity_query
        self.baudrate = baudrate
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.reconnect_attempts = int(reconnect_attempts)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.encoding = encoding
        self.on_connect = on_connect
        self.identity: str | None = None
        #: how many times the line was (re)opened
        self.connects = 0
        self._unreachable = False
        self._port: serial.SerialBase | None = None
        self._rx = bytearray()
        self._dirty = False
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._abort = threading.Event()

    # -- connection -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the line (with back-off between failed attempts) and greet the instrument."""
        with self._lock:
            if self._port is None:
                self._connect()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        port, self._port = self._port, None
        self._rx.clear()
        self._dirty = False
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a dead line can fail; it is gone either way
                log.debug("%s %s: error closing the port", self.device, self.url, exc_info=True)

    def _connect(self) -> None:
        delay, last = self.backoff, ""
        for attempt in range(self.reconnect_attempts + 1):
            if attempt:
                log.info("%s: reconnecting to %s in %.3g s", self.device, self.url, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            try:
                self._port = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=READ_SLICE, write_timeout=self.timeout
                )
                self._port.reset_input_buffer()
                self._rx.clear()
                self._dirty = False
                self._greet()
                self.connects += 1
                self._unreachable = False
                log.info("%s: connected to %s (%s)", self.device, self.url, self.identity)
                return
            except OPEN_ERRORS as exc:
                last = str(exc) or type(exc).__name__
            except (SerialTimeout, ProtocolError, Disconnected) as exc:
                last = str(exc)
            self._drop()
        self._unreachable = True  # no use retrying a query: every reopen attempt failed
        raise Disconnected(
            self.device,
            self.url,
            f"cannot open the line after {self.reconnect_attempts + 1} attempts: {last}",
        )

    def _greet(self) -> None:
        """Ask the identity (draining anything stale before it), then run ``on_connect``."""
        self._sync(self.timeout * 3)
        if self.on_connect is not None:
            self.on_connect(self)

    def _sync(self, window: float) -> None:
        """Send the identity query and discard lines until the identity comes back.

        Any interrupt written before this point is answered before the identity, so
        its pending abort is cleared; one written later sets it again.
        """
        self._abort.clear()
        self._discard_input()
        self._write(self.identity_query)
        deadline = time.monotonic() + window
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            # not abortable: whatever comes before the identity is discarded anyway
            line = self._read_line(left, self.identity_query, abortable=False)
            if self.identity is None or line == self.identity:
                if self.identity is None:
                    self.identity = line
                self._dirty = False
                return
            log.debug("%s %s: discarded stale reply %r", self.device, self.url, line)

    def _ensure_ready(self) -> None:
        if self._port is None:
            self._connect()
        elif self._dirty:
            try:
                self._sync(max(self.timeout * 3, 1.0))
            except (SerialTimeout, ProtocolError, Disconnected):
                log.info("%s: could not resynchronise %s; reopening it", self.device, self.url)
                self._drop()
                self._connect()

    # -- traffic ----------------------------------------------------------------------------
    def query(self, command: str, *, timeout: float | None = None, idempotent: bool = False) -> str:
        """Send ``command``; return its reply line (without the terminator).

        Raises :class:`SerialTimeout`, :class:`ProtocolError` or :class:`Disconnected`;
        an ``idempotent`` query is retried (after resynchronising or reconnecting) up to
        ``retries`` times first.
        """
        attempts = 1 + (self.retries if idempotent else 0)
        with self._lock:
            for attempt in range(attempts):
                try:
                    self._ensure_ready()
                    return self._exchange(command, self.timeout if timeout is None else timeout)
                except (SerialTimeout, ProtocolError, Disconnected) as exc:
                    if attempt + 1 >= attempts or self._unreachable:
                        raise
                    log.info("%s: retrying %r after: %s", self.device, command, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def interrupt(self, command: str) -> str | None:
        """Send ``command`` now, even while another command waits for its reply.

        For stop/abort commands, so it never resynchronises or reopens the line first
        (that can take several command timeouts on an instrument that stopped
        answering): a closed line raises :class:`Disconnected` at once.

        If the line is free and in step, this is one exchange (no retry) and returns
        the reply. If it is free but unsynchronised, the command is written and its
        reply left to the next command's resynchronisation. If another command is in
        flight, the command is written at once (between whole commands, never inside
        one), the pending read gives up (raising :class:`Aborted` in its thread), and
        the reply is likewise left to the next command. Those two return None.
        """
        if self._lock.acquire(blocking=False):
            try:
                if self._port is None:
                    raise Disconnected(
                        self.device, self.url, f"the line is closed; {command!r} was not sent"
                    )
                if self._dirty:
                    self._write(command)
                    self._dirty = True  # its reply (and any late one) is drained next time
                    return None
                return self._exchange(command, self.timeout)
            finally:
                self._lock.release()
        self._write(command, interrupting=True)
        return None

    def mark_unsynchronised(self) -> None:
        """The last reply could not be used: resynchronise before the next command."""
        self._dirty = True

    def _exchange(self, command: str, timeout: float) -> str:
        # (an abort still set here belongs to a stop written after this command: keep it)
        self._discard_input()
        self._write(command)
        return self._read_line(timeout, command)

    def _discard_input(self) -> None:
        if self._rx:
            log.debug("%s %s: discarded %r", self.device, self.url, bytes(self._rx))
        self._rx.clear()
        port = self._port
        if port is None:
            return
        try:
            port.reset_input_buffer()
        except LINE_ERRORS as exc:
            self._lost(exc)

    def _write(self, command: str, *, interrupting: bool = False) -> None:
        data = command.encode(self.encoding) + self.terminator
        with self._write_lock:
            port = self._port
            if port is None:
                raise Disconnected(self.device, self.url, "the line is closed")
            if interrupting:
                # before the bytes go out: a command written after this one must not take
                # the interrupt's reply for its own, so its read gives up and resynchronises
                self._dirty = True
                self._abort.set()
            log.debug("%s %s > %r", self.device, self.url, data)
            try:
                port.write(data)
                port.flush()
            except serial.SerialTimeoutException:
                self._dirty = True
                raise SerialTimeout(
                    self.device, self.url, f"could not send {command!r} within {self.timeout:g} s"
                ) from None
            except LINE_ERRORS as exc:
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        self._drop()
        raise Disconnected(self.device, self.url, f"the line dropped: {exc}") from None

    def _read_line(self, timeout: float, command: str, *, abortable: bool = True) -> str:
        deadline = time.monotonic() + timeout
        term = self.terminator
        while True:
            # checked first: after an interrupt the next line may be the interrupt's reply
            if abortable and self._abort.is_set():
                self._abort.clear()
                self._dirty = True
                raise Aborted(f"{command!r} abandoned: the device was stopped")
            end = self._rx.find(term)
            if end >= 0:
                raw = bytes(self._rx[:end])
                del self._rx[: end + len(term)]
                log.debug("%s %s < %r", self.device, self.url, raw + term)
                try:
                    text = raw.decode(self.encoding)
                except UnicodeDecodeError:
                    self._dirty = True
                    raise ProtocolError(
                        self.device, self.url, f"garbled reply to {command!r}: {raw!r}", raw
                    ) from None
                if not text.isprintable():
                    self._dirty = True
                    raise ProtocolError(
                        self.device, self.url, f"garbled reply to {command!r}: {raw!r}", raw
                    )
                return text
            if time.monotonic() >= deadline:
                self._dirty = True
                got = f"; received only {bytes(self._rx)!r}" if self._rx else ""
                raise SerialTimeout(
                    self.device,
                    self.url,
                    f"no reply to {command!r} within {timeout:.3g} s{got}",
                    bytes(self._rx),
                )
            port = self._port
            if port is None:
                raise Disconnected(self.device, self.url, "the line is closed")
            try:
                chunk = port.read(max(1, port.in_waiting))
            except LINE_ERRORS as exc:
                self._lost(exc)
            self._rx += chunk
