"""Sensors: devices that measure when triggered.

Each sensor asks its backend to ``run("measure")``, which returns a mapping of
quantity name to value, checks every value against its measuring range, and
keeps the values for ``read()``. A failed or out-of-range measurement fails the
trigger status with a message naming the device.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from ophyd import Component as Cpt
from ophyd import Kind
from ophyd.status import Status

from remotelab.devices.base import BackendDevice, Quantity
from remotelab.errors import DeviceFault


class Sensor(BackendDevice):
    """Base of the sensors: ``trigger()`` measures, ``read()`` returns the last measurement."""

    role: ClassVar[str] = "sensor"
    #: names of the signals a measurement fills
    measured: ClassVar[tuple[str, ...]] = ()
    operation_timeout: float = 120.0

    def trigger(self) -> Status:
        return self.operate("measure", self._measure)

    def _measure(self) -> None:
        values = self.backend_run("measure")
        missing = [q for q in self.measured if q not in values]
        if missing:
            raise DeviceFault(self.name, f"measurement returned no {', '.join(missing)}")
        checked = {q: getattr(self, q).check_range(values[q]) for q in self.measured}
        for quantity, value in checked.items():
            getattr(self, quantity).put(value)


class Thermometer(Sensor):
    """A temperature probe. Measures ``temperature`` in °C (range −50…300 °C)."""

    measured = ("temperature",)
    temperature = Cpt(
        Quantity,
        value=float("nan"),
        units="degC",
        precision=2,
        valid_range=(-50.0, 300.0),
        kind=Kind.hinted,
    )


class PHMeter(Sensor):
    """A pH electrode with its meter. Measures ``ph`` (0…14) and ``temperature`` (°C)."""

    measured = ("ph", "temperature")
    ph = Cpt(
        Quantity,
        value=float("nan"),
        units="pH",
        precision=3,
        valid_range=(0.0, 14.0),
        kind=Kind.hinted,
    )
    temperature = Cpt(
        Quantity, value=float("nan"), units="degC", precision=1, valid_range=(-10.0, 110.0)
    )


class Balance(Sensor):
    """An analytical balance. Measures net ``mass`` in g (up to 220 g, readability 0.1 mg)."""

    measured = ("mass",)
    mass = Cpt(
        Quantity,
        value=float("nan"),
        units="g",
        precision=4,
        valid_range=(-10.0, 220.0),
        kind=Kind.hinted,
    )

    def tare(self) -> Status:
        """Zero the balance with what is on the pan."""
        return self.operate("tare", lambda: self.backend_run("tare"))


class Spectrometer(Sensor):
    """A UV-Vis spectrometer: an absorbance spectrum over its wavelength axis.

    ``absorbance`` is an array (AU) read each trigger; ``wavelength`` (nm) is the
    axis, part of the configuration; ``peak_absorbance`` and ``peak_wavelength``
    summarise the spectrum for tables and plots.
    """

    measured = ("absorbance",)
    n_points: ClassVar[int] = 201
    absorbance = Cpt(
        Quantity,
        value=np.full(n_points, np.nan),
        units="AU",
        precision=4,
        valid_range=(-0.5, 4.0),
    )
    peak_absorbance = Cpt(Quantity, value=float("nan"), units="AU", precision=4, kind=Kind.hinted)
    peak_wavelength = Cpt(Quantity, value=float("nan"), units="nm", precision=1)
    wavelength = Cpt(
        Quantity,
        value=np.linspace(350.0, 750.0, n_points),
        units="nm",
        precision=1,
        kind=Kind.config,
    )

    def __init__(self, name: str, **kwargs: Any):
        super().__init__(name, **kwargs)
        if self.connected:
            axis = np.asarray(self.backend_read("wavelength"), dtype=float)
            self.wavelength.put(axis)
            self.absorbance.put(np.full(axis.shape, np.nan))

    def _measure(self) -> None:
        super()._measure()
        spectrum = np.asarray(self.absorbance.get(), dtype=float)
        peak = int(np.argmax(spectrum))
        self.peak_absorbance.put(float(spectrum[peak]))
        self.peak_wavelength.put(float(self.wavelength.get()[peak]))
