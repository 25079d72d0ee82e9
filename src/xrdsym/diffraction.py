"""Pattern physics: structure -> diffraction peaks -> intensities on a 2θ grid -> smoothed pattern.

Follows the paper: pymatgen's XRDCalculator gives the peaks (or :mod:`xrdsym.xrd_vectorised`,
the same physics vectorised, see :func:`peak_simulator`), each peak's intensity goes to the
nearest point of a common 2θ grid (0 where there is no peak), a Gaussian filter of ``sigma``
grid points broadens them, and the result is rescaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter1d

if TYPE_CHECKING:
    from pymatgen.core import Structure

# Peak simulators by name (params patterns.simulator): "pymatgen", XRDCalculator itself, the
# reference; "vectorised", xrdsym.xrd_vectorised, the same physics giving the same peaks and
# hkl, intensities equal to float64 rounding (summed in another order) and so the same float32
# patterns (tests/test_xrd_vectorised.py), about 20 times faster (bench/xrd_speed.py).
SIMULATORS = ("vectorised", "pymatgen")
DEFAULT_SIMULATOR = "vectorised"


@dataclass(frozen=True)
class TwoThetaGrid:
    """Evenly spaced 2θ values in degrees, from ``start`` to ``stop`` inclusive, ``step`` apart."""

    start: float
    stop: float
    step: float

    @cached_property
    def values(self) -> np.ndarray:
        """The grid's 2θ values in degrees (float64)."""
        return self.start + self.step * np.arange(self.size)

    @property
    def size(self) -> int:
        """Number of grid points; the last point lies at or just below ``stop``."""
        # The small tolerance keeps a stop that is a whole number of steps from being lost
        # to floating-point rounding (0.02 * 4500 == 89.99999999999999).
        return int(np.floor((self.stop - self.start) / self.step + 1e-9)) + 1


@dataclass(frozen=True)
class Peaks:
    """Diffraction peaks of one structure: positions in degrees 2θ, intensities scaled to 100.

    ``hkl`` (n_peaks x 3 integers), when known, is one reflection of each peak's family, as
    pymatgen reports it (preferred-orientation augmentation needs a direction per peak).
    """

    two_theta: np.ndarray
    intensities: np.ndarray
    hkl: np.ndarray | None = None


def simulate_peaks(
    structure: Structure, wavelength: str | float, two_theta_range: tuple[float, float]
) -> Peaks:
    """Powder diffraction peaks of ``structure`` from pymatgen's XRDCalculator.

    Args:
        structure: the crystal structure.
        wavelength: an anode name known to pymatgen ("CuKa") or a wavelength in Å.
        two_theta_range: (min, max) in degrees.
    """
    # Imported here: pymatgen takes a second to import, which classifying a measured file
    # (xrdsym predict) does without.
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    pattern = XRDCalculator(wavelength=wavelength).get_pattern(
        structure, scaled=True, two_theta_range=two_theta_range
    )
    # hkl may have four indices (Miller-Bravais, hexagonal cells): i = -(h + k) is dropped.
    hkl = [family[0]["hkl"] for family in pattern.hkls]
    hkl = np.array([[h[0], h[1], h[-1]] for h in hkl], dtype=int).reshape(-1, 3)
    return Peaks(np.asarray(pattern.x, dtype=float), np.asarray(pattern.y, dtype=float), hkl)


def peak_simulator(
    name: str,
) -> Callable[[Structure, str | float, tuple[float, float]], Peaks]:
    """The peak simulator called ``name``, one of :data:`SIMULATORS`: a function of
    (structure, wavelength, two_theta_range) like :func:`simulate_peaks`."""
    if name == "pymatgen":
        return simulate_peaks
    if name == "vectorised":
        # Imported here, not at the top: xrd_vectorised builds on this module's Peaks.
        from xrdsym.xrd_vectorised import simulate_peaks_vectorised

        return simulate_peaks_vectorised
    raise ValueError(f"unknown peak simulator {name!r}; known: {', '.join(SIMULATORS)}")


def peaks_on_grid(peaks: Peaks, grid: TwoThetaGrid) -> np.ndarray:
    """Stick pattern on ``grid``: each peak's intensity at its nearest grid point, 0 elsewhere.

    Peaks closer together than half a step share a point and their intensities add up, so the
    integrated intensity is kept. Peaks outside the grid are left out.
    """
    sticks = np.zeros(grid.size)
    index = np.rint((peaks.two_theta - grid.start) / grid.step).astype(int)
    inside = (index >= 0) & (index < grid.size)
    np.add.at(sticks, index[inside], peaks.intensities[inside])
    return sticks


def smooth_and_normalise(sticks: np.ndarray, sigma: float) -> np.ndarray:
    """Broaden with ``gaussian_filter1d`` (``sigma`` in grid points), then rescale to [0, 1].

    Raises ValueError for a pattern with no intensity, which has nothing to normalise.
    """
    # mode="constant": intensity beyond the range is zero, not a mirror image of the edge.
    return normalise(gaussian_filter1d(np.asarray(sticks, dtype=float), sigma, mode="constant"))


def normalise(intensities: np.ndarray) -> np.ndarray:
    """Rescale each pattern (the last axis) to [0, 1] (float32); ValueError for a pattern with
    no intensity."""
    low = intensities.min(axis=-1, keepdims=True)
    high = intensities.max(axis=-1, keepdims=True)
    if np.any(high <= low):
        raise ValueError("no diffraction peaks in the 2θ range")
    return ((intensities - low) / (high - low)).astype(np.float32)


def pattern_from_peaks(peaks: Peaks, grid: TwoThetaGrid, sigma: float) -> np.ndarray:
    """The paper's pattern from ``peaks``: float32 on ``grid``, smoothed with ``sigma`` grid
    points, in [0, 1]. Every stored, evaluated and predicted pattern is made here."""
    return smooth_and_normalise(peaks_on_grid(peaks, grid), sigma)


def pattern_from_structure(
    structure: Structure,
    wavelength: str | float,
    grid: TwoThetaGrid,
    sigma: float,
    simulator: str = DEFAULT_SIMULATOR,
) -> np.ndarray:
    """The paper's pattern of ``structure``: float32 on ``grid``, smoothed, in [0, 1], from the
    peaks of the simulator called ``simulator`` (see :func:`peak_simulator`)."""
    peaks = peak_simulator(simulator)(structure, wavelength, (grid.start, grid.stop))
    return pattern_from_peaks(peaks, grid, sigma)


def gather_ranges(offsets: np.ndarray, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ranges ``offsets[i]:offsets[i + 1]`` of a flat table, for every ``i`` in
    ``selected`` in that order, and for each row its place in ``selected``."""
    selected = np.asarray(selected, dtype=np.int64)
    counts = offsets[selected + 1] - offsets[selected]
    owner = np.repeat(np.arange(len(selected)), counts)
    # Row k of range j: its first row plus k, computed for all rows at once.
    starts = np.repeat(offsets[selected] - np.cumsum(counts) + counts, counts)
    return starts + np.arange(counts.sum()), owner


@dataclass(frozen=True)
class PeakTable:
    """The peak lists of many structures in flat arrays, as the patterns stage stores them.

    Structure ``i``'s peaks are rows ``offsets[i]:offsets[i + 1]`` of ``two_theta`` (degrees),
    ``intensities`` (scaled to 100 per structure) and ``hkl`` (one reflection per peak's family,
    n_peaks x 3); ``reciprocal_lattices[i]`` holds the rows a*, b*, c* of its reciprocal lattice
    in 1/Å (no 2π), the basis ``hkl`` refers to.
    """

    two_theta: np.ndarray
    intensities: np.ndarray
    hkl: np.ndarray
    offsets: np.ndarray
    reciprocal_lattices: np.ndarray

    @classmethod
    def from_peaks(
        cls, peak_lists: Sequence[Peaks], reciprocal_lattices: Sequence[np.ndarray]
    ) -> PeakTable:
        """Stack the peak lists (each with ``hkl``) and their reciprocal lattices (3 x 3, 1/Å)."""
        counts = [len(peaks.two_theta) for peaks in peak_lists]
        return cls(
            two_theta=np.concatenate([p.two_theta for p in peak_lists] or [np.zeros(0)]),
            intensities=np.concatenate([p.intensities for p in peak_lists] or [np.zeros(0)]),
            # Miller indices of peaks below 90 degrees stay far inside int16's range.
            hkl=np.concatenate([p.hkl for p in peak_lists] or [np.zeros((0, 3))]).astype(np.int16),
            offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            reciprocal_lattices=np.asarray(reciprocal_lattices, dtype=float).reshape(-1, 3, 3),
        )

    @classmethod
    def concatenate(cls, tables: Sequence[PeakTable]) -> PeakTable:
        """One table of the structures of ``tables``, in order."""
        starts = np.cumsum([0] + [t.offsets[-1] for t in tables[:-1]], dtype=np.int64)
        return cls(
            np.concatenate([t.two_theta for t in tables]),
            np.concatenate([t.intensities for t in tables]),
            np.concatenate([t.hkl for t in tables]),
            np.concatenate(
                [[0]] + [t.offsets[1:] + s for t, s in zip(tables, starts, strict=True)]
            ),
            np.concatenate([t.reciprocal_lattices for t in tables]),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def peaks(self, position: int) -> Peaks:
        """The peaks of structure ``position``."""
        rows = slice(self.offsets[position], self.offsets[position + 1])
        return Peaks(self.two_theta[rows], self.intensities[rows], self.hkl[rows])

    def rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers of the peaks of the structures at ``positions``, and for each row its
        place in ``positions`` (0 for the first structure asked for, 1 for the next, ...)."""
        return gather_ranges(self.offsets, positions)

    def subset(self, positions: np.ndarray) -> PeakTable:
        """The table of the structures at ``positions``, in that order."""
        rows, owner = self.rows(positions)
        counts = np.bincount(owner, minlength=len(positions))
        return PeakTable(
            self.two_theta[rows],
            self.intensities[rows],
            self.hkl[rows],
            np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            self.reciprocal_lattices[np.asarray(positions, dtype=np.int64)],
        )
