"""The simulated lab: a world model, a fast clock, simulated instruments and fault injection."""

from remotelab.sim.chemistry import SPECIES, WAVELENGTHS, Reaction, Species, absorbance, ph
from remotelab.sim.clock import SimClock
from remotelab.sim.faults import Fault, FaultPlan, inject_fault
from remotelab.sim.instruments import SIM_INSTRUMENTS, SimInstrument
from remotelab.sim.world import SimSample, ThermalZone, Well, World

__all__ = [
    "SIM_INSTRUMENTS",
    "SPECIES",
    "WAVELENGTHS",
    "Fault",
    "FaultPlan",
    "Reaction",
    "SimClock",
    "SimInstrument",
    "SimSample",
    "Species",
    "ThermalZone",
    "Well",
    "World",
    "absorbance",
    "inject_fault",
    "ph",
]
