"""The chemistry behind the simulated instruments: spectra and pH from composition.

Compositions are mappings of species name → molar concentration (mol/L).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: the simulated spectrometer's wavelength axis (nm)
WAVELENGTHS = np.linspace(350.0, 750.0, 201)
KW = 1.0e-14


@dataclass(frozen=True)
class Species:
    """A chemical species: its absorption bands (centre nm, width nm, ε L/(mol·cm)) and acidity."""

    name: str
    bands: tuple[tuple[float, float, float], ...] = ()
    kind: str = "neutral"  # neutral | weak_acid | strong_acid | strong_base
    pka: float | None = None
    density: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def ka(self) -> float:
        """The acid dissociation constant of a weak acid (from its ``pka``)."""
        if self.pka is None:
            raise ValueError(f"{self.name} has no pKa: it is not a weak acid")
        return 10.0**-self.pka

    def epsilon(self, wavelengths: np.ndarray) -> np.ndarray:
        out = np.zeros_like(wavelengths, dtype=float)
        for centre, width, eps in self.bands:
            out += eps * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
        return out


SPECIES: dict[str, Species] = {
    s.name: s
    for s in (
        Species("tartrazine", bands=((427.0, 35.0, 27_000.0),)),
        Species("allura_red", bands=((504.0, 40.0, 25_900.0),)),
        Species("brilliant_blue", bands=((630.0, 30.0, 130_000.0), (410.0, 25.0, 10_000.0))),
        Species("product", bands=((560.0, 30.0, 40_000.0),)),
        Species("reagent_a", bands=((380.0, 20.0, 2_000.0),)),
        Species("reagent_b", bands=((700.0, 25.0, 1_500.0),)),
        Species("acetic_acid", kind="weak_acid", pka=4.76),
        Species("hcl", kind="strong_acid"),
        Species("naoh", kind="strong_base"),
        Species("water"),
    )
}


def species(name: str) -> Species:
    if name not in SPECIES:
        raise KeyError(f"unknown species {name!r}; known: {', '.join(SPECIES)}")
    return SPECIES[name]


def absorbance(
    composition: Mapping[str, float], path_cm: float = 1.0, wavelengths: np.ndarray = WAVELENGTHS
) -> np.ndarray:
    """Beer–Lambert: A(λ) = Σ ε_i(λ) · c_i · l."""
    total = np.zeros_like(wavelengths, dtype=float)
    for name, conc in composition.items():
        total += species(name).epsilon(wavelengths) * conc * path_cm
    return total


def ph(composition: Mapping[str, float]) -> float:
    """pH from the charge balance of strong acids/bases and weak monoprotic acids."""
    strong_base = sum(c for n, c in composition.items() if species(n).kind == "strong_base")
    strong_acid = sum(c for n, c in composition.items() if species(n).kind == "strong_acid")
    weak = [(c, species(n).ka) for n, c in composition.items() if species(n).kind == "weak_acid"]

    def excess(log_h: float) -> float:
        h = 10.0**log_h
        anions = KW / h + strong_acid + sum(c * ka / (ka + h) for c, ka in weak)
        return h + strong_base - anions

    lo, hi = -14.5, 0.5
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            hi = mid
        else:
            lo = mid
    return -0.5 * (lo + hi)


def mix(
    a: Mapping[str, float], volume_a: float, b: Mapping[str, float], volume_b: float
) -> dict[str, float]:
    """The composition of ``volume_a`` of ``a`` mixed with ``volume_b`` of ``b``."""
    total = volume_a + volume_b
    if total <= 0:
        return {}
    names = set(a) | set(b)
    return {n: (a.get(n, 0.0) * volume_a + b.get(n, 0.0) * volume_b) / total for n in names}


def density(composition: Mapping[str, float]) -> float:
    """g/mL; dilute solutions are close to water."""
    return 1.0 + 0.004 * sum(composition.values())


@dataclass(frozen=True)
class Reaction:
    """``a + b → product`` in a heated vessel: the simulated lab's hidden optimisation target.

    The yield depends on the mole fraction ``x`` of ``a`` in the reagent mix and the
    temperature ``T``; it peaks (``max_yield``) at ``(best_fraction, best_temperature)``,
    with a ridge along which the best temperature rises with ``x`` (``coupling`` °C per
    unit of ``x``). Reacting consumes both reagents and forms ``yield × (c_a + c_b) / 2``
    of product.
    """

    a: str = "reagent_a"
    b: str = "reagent_b"
    product: str = "product"
    best_fraction: float = 0.6
    best_temperature: float = 55.0
    fraction_width: float = 0.12
    temperature_width: float = 12.0
    coupling: float = 20.0
    max_yield: float = 0.9

    @classmethod
    def hidden(cls, seed: int) -> Reaction:
        """The reaction of a world with this seed: its optimum is drawn from the seed."""
        rng = np.random.default_rng([int(seed), 0x5EAC7])
        return cls(
            best_fraction=round(float(rng.uniform(0.35, 0.70)), 4),
            best_temperature=round(float(rng.uniform(40.0, 70.0)), 2),
        )

    @property
    def optimum(self) -> tuple[float, float]:
        """(fraction of ``a``, temperature °C) of the highest yield."""
        return self.best_fraction, self.best_temperature

    def yield_at(self, fraction: float, temperature: float) -> float:
        dx = (fraction - self.best_fraction) / self.fraction_width
        ridge = self.best_temperature + self.coupling * (fraction - self.best_fraction)
        dt = (temperature - ridge) / self.temperature_width
        return self.max_yield * float(np.exp(-0.5 * (dx * dx + dt * dt)))

    def react(self, composition: Mapping[str, float], temperature: float) -> dict[str, float]:
        """The composition after the reagents in ``composition`` have reacted at ``temperature``."""
        ca, cb = composition.get(self.a, 0.0), composition.get(self.b, 0.0)
        if ca <= 0 or cb <= 0:
            return dict(composition)
        out = {k: v for k, v in composition.items() if k not in (self.a, self.b)}
        formed = self.yield_at(ca / (ca + cb), temperature) * (ca + cb) / 2
        out[self.product] = out.get(self.product, 0.0) + formed
        return out
