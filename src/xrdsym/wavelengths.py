"""X-ray wavelengths in Å of the usual anodes, by name (CuKa, MoKa1, CoKb1, ...).

The same table as pymatgen's ``pymatgen.analysis.diffraction.xrd.WAVELENGTHS`` (a test keeps
them equal), held here because importing pymatgen takes over a second, longer than classifying
a measured file.
"""

from __future__ import annotations

WAVELENGTHS: dict[str, float] = {
    "CuKa": 1.54184,
    "CuKa2": 1.54439,
    "CuKa1": 1.54056,
    "CuKb1": 1.39222,
    "MoKa": 0.71073,
    "MoKa2": 0.71359,
    "MoKa1": 0.7093,
    "MoKb1": 0.63229,
    "CrKa": 2.291,
    "CrKa2": 2.29361,
    "CrKa1": 2.2897,
    "CrKb1": 2.08487,
    "FeKa": 1.93735,
    "FeKa2": 1.93998,
    "FeKa1": 1.93604,
    "FeKb1": 1.75661,
    "CoKa": 1.79026,
    "CoKa2": 1.79285,
    "CoKa1": 1.78896,
    "CoKb1": 1.63079,
    "AgKa": 0.560885,
    "AgKa2": 0.563813,
    "AgKa1": 0.559421,
    "AgKb1": 0.497082,
}

# A wavelength is an anode's when it lies this close (relative) to the anode's Kα1 or weighted
# Kα: loose enough for values rounded to four or three decimals (1.5406, 1.5418, 1.54), far
# tighter than the 8 % or more between anodes.
ANODE_TOLERANCE = 1e-3
ANODES = tuple(name.removesuffix("Ka1") for name in WAVELENGTHS if name.endswith("Ka1"))


def nearest_anode(wavelength_angstrom: float) -> str | None:
    """The anode ("Cu", "Mo", ...) whose Kα1 or weighted Kα is nearest ``wavelength_angstrom``
    (Å), within ANODE_TOLERANCE (relative); None when no anode's is (a synchrotron, a Kβ line
    or any other wavelength)."""

    def distance(anode: str) -> float:
        return min(
            abs(wavelength_angstrom / WAVELENGTHS[anode + line] - 1) for line in ("Ka1", "Ka")
        )

    nearest = min(ANODES, key=distance)
    return None if distance(nearest) > ANODE_TOLERANCE else nearest


def kalpha2_ratio(wavelength_angstrom: float) -> float | None:
    """λ(Kα2) / λ(Kα1) of the anode whose Kα1 or weighted Kα is nearest ``wavelength_angstrom``
    (within ANODE_TOLERANCE, relative); None when no anode's is (a synchrotron, a Kβ line or
    any other wavelength): such patterns get no Kα2 doublet.

    Patterns are simulated at one wavelength, often the weighted Kα (CuKa, 1.54184 Å) rather
    than Kα1. The doublet treats every simulated peak as the Kα1 line and puts Kα2 at
    sin θ2 = (λ(Kα2) / λ(Kα1)) sin θ1, so the line separation is right; the approximation is
    that Kα1 stays where the simulation put it, 0.08 % too high in sin θ for CuKa (0.1 degrees
    at 2θ = 90 degrees, well within the strain range), instead of moving below the weighted
    mean.
    """

    anode = nearest_anode(wavelength_angstrom)
    if anode is None:
        return None
    return WAVELENGTHS[anode + "Ka2"] / WAVELENGTHS[anode + "Ka1"]
