"""The simulated lab: a world model, a fast clock, simulated instruments and fault injection.

Simulated instruments are also served over their serial protocols on a pty or a TCP
port (:mod:`remotelab.sim.server`), so the real serial drivers are tested end to end.
"""

from remotelab.sim.chemistry import SPECIES, WAVELENGTHS, Reaction, Species, absorbance, ph
from remotelab.sim.clock import SimClock
from remotelab.sim.faults import Fault, FaultPlan, inject_fault
from remotelab.sim.instruments import SIM_INSTRUMENTS, SimInstrument
from remotelab.sim.server import InstrumentServer, WireFault, serve_instrument
from remotelab.sim.world import SimSample, ThermalZone, Well, World

__all__ = [
    "SIM_INSTRUMENTS",
    "SPECIES",
    "WAVELENGTHS",
    "Fault",
    "FaultPlan",
    "InstrumentServer",
    "Reaction",
    "SimClock",
    "SimInstrument",
    "SimSample",
    "Species",
    "ThermalZone",
    "Well",
    "WireFault",
    "World",
    "absorbance",
    "inject_fault",
    "ph",
    "serve_instrument",
]
