"""Real instruments over serial lines (pyserial): the transport, the protocols, the backends.

:func:`make_serial_backend` opens a port URL (``/dev/ttyUSB0``, ``socket://host:port``,
``rfc2217://host:port``, ``loop://``) and returns the backend of a device class; a lab
file selects it with ``backend: serial`` (see :mod:`remotelab.lab.backends`).
"""

from remotelab.devices.serial.backends import (
    SERIAL_OPTIONS,
    AsciiBackend,
    ScpiBackend,
    SerialBackend,
    make_serial_backend,
)
from remotelab.devices.serial.protocols import (
    PROTOCOLS,
    Action,
    InstrumentProtocol,
    decode_value,
    encode_value,
    protocol_for,
)
from remotelab.devices.serial.transport import Aborted, SerialTransport

__all__ = [
    "PROTOCOLS",
    "SERIAL_OPTIONS",
    "Aborted",
    "Action",
    "AsciiBackend",
    "InstrumentProtocol",
    "ScpiBackend",
    "SerialBackend",
    "SerialTransport",
    "decode_value",
    "encode_value",
    "make_serial_backend",
    "protocol_for",
]
