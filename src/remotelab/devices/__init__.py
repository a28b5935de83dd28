"""remotelab's device classes: sensors, actuators and robots on ophyd.

A device class talks to a :class:`Backend` (a serial driver or a simulator) and
never knows which. ``DEVICE_CLASSES`` maps the class names used in lab files to
the classes.
"""

from remotelab.devices.actuators import Actuator, Stirrer, SyringePump, TemperatureController
from remotelab.devices.backend import Backend, Clock, OfflineBackend, RealClock
from remotelab.devices.base import BackendDevice, Quantity, Readback, Setting
from remotelab.devices.robots import HOME, LiquidHandler, SampleArm
from remotelab.devices.samples import GRIPPER, LOST, SampleMove, SampleTracker
from remotelab.devices.sensors import Balance, PHMeter, Sensor, Spectrometer, Thermometer

DEVICE_CLASSES: dict[str, type[BackendDevice]] = {
    cls.__name__: cls
    for cls in (
        Thermometer,
        PHMeter,
        Balance,
        Spectrometer,
        TemperatureController,
        SyringePump,
        Stirrer,
        SampleArm,
        LiquidHandler,
    )
}

__all__ = [
    "DEVICE_CLASSES",
    "GRIPPER",
    "HOME",
    "LOST",
    "Actuator",
    "Backend",
    "BackendDevice",
    "Balance",
    "Clock",
    "LiquidHandler",
    "OfflineBackend",
    "PHMeter",
    "Quantity",
    "Readback",
    "RealClock",
    "SampleArm",
    "SampleMove",
    "SampleTracker",
    "Sensor",
    "Setting",
    "Spectrometer",
    "Stirrer",
    "SyringePump",
    "TemperatureController",
    "Thermometer",
]
