"""Pattern physics: structure -> diffraction peaks -> intensities on a 2θ grid -> smoothed pattern.

Follows the paper: pymatgen's XRDCalculator gives the peaks, each peak's intensity goes to the
nearest point of a common 2θ grid (0 where there is no peak), a Gaussian filter of ``sigma``
grid points broadens them, and the result is rescaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from scipy.ndimage import gaussian_filter1d

if TYPE_CHECKING:
    from pymatgen.core import Structure


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
    """Diffraction peaks of one structure: positions in degrees 2θ, intensities scaled to 100."""

    two_theta: np.ndarray
    intensities: np.ndarray


def simulate_peaks(
    structure: Structure, wavelength: str | float, two_theta_range: tuple[float, float]
) -> Peaks:
    """Powder diffraction peaks of ``structure`` from pymatgen's XRDCalculator.

    Args:
        structure: the crystal structure.
        wavelength: an anode name known to pymatgen ("CuKa") or a wavelength in Å.
        two_theta_range: (min, max) in degrees.
    """
    pattern = XRDCalculator(wavelength=wavelength).get_pattern(
        structure, scaled=True, two_theta_range=two_theta_range
    )
    return Peaks(np.asarray(pattern.x, dtype=float), np.asarray(pattern.y, dtype=float))


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
    """Rescale to [0, 1] (float32); ValueError for a pattern with no intensity."""
    low, high = intensities.min(), intensities.max()
    if high <= low:
        raise ValueError("no diffraction peaks in the 2θ range")
    return ((intensities - low) / (high - low)).astype(np.float32)


def pattern_from_structure(
    structure: Structure, wavelength: str | float, grid: TwoThetaGrid, sigma: float
) -> np.ndarray:
    """The paper's pattern of ``structure``: float32 on ``grid``, smoothed, in [0, 1]."""
    peaks = simulate_peaks(structure, wavelength, (grid.start, grid.stop))
    return smooth_and_normalise(peaks_on_grid(peaks, grid), sigma)
