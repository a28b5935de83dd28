"""Real instruments over serial lines (pyserial): the transport, the protocols, the backends.

A lab file selects these with ``backend: serial`` and a ``port:`` URL
(``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port``, ``loop://``).
"""

from remotelab.devices.serial.backends import (
    SERIAL_OPTIONS,
    AsciiBackend,
    ScpiBackend,
    SerialBackend,
    build_serial_backend,
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
    "build_serial_backend",
    "decode_value",
    "encode_value",
    "make_serial_backend",
    "protocol_for",
]
