"""Index the patterns of files: scans and CIF structures in, peaks and cells out.

The file-level side of :mod:`xrdsym.indexing` (what ``xrdsym index`` runs): every format
``xrdsym predict`` reads (two-column text, XRDML, powder CIF) goes through
:func:`xrdsym.peaks.find_peaks` and :func:`xrdsym.indexing.index_lines`; a CIF structure gives
the peaks pymatgen calculates for it, those closer than a diffractometer resolves merged.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrdsym.errors import XrdsymError
from xrdsym.indexing import IndexResult, IndexSettings, index_lines
from xrdsym.peaks import PeakList, PeakSettings, find_peaks

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from xrdsym.measured import MeasuredPattern

STRUCTURE_TWO_THETA_RANGE = (5.0, 90.0)
"""Scan range simulated for a CIF structure, degrees: a laboratory scan's."""

STRUCTURE_RESOLUTION_DEG = 0.03
"""Calculated peaks of a structure closer than this (degrees 2θ) are one line, as on a
diffractometer whose peaks are 0.05-0.1 degrees wide."""

STRUCTURE_MIN_INTENSITY = 0.5
"""Calculated peaks weaker than this (the strongest is 100) are left out: a scan's noise
hides them."""

DEFAULT_STRUCTURE_WAVELENGTH = "CuKa1"
"""Radiation a CIF structure is simulated with when none is given."""

# Rock salt's first lines at Cu Kα1, degrees: what warm_up indexes.
WARM_UP_LINES = np.array([27.37, 31.71, 45.45, 53.87, 56.48, 66.22, 73.06, 75.29, 83.98])

STAGE_KEYS = ("per_split", "chunk_size")
"""Keys of params.yaml's ``index`` section that are the index stage's own, not the search's."""


@dataclass(frozen=True)
class IndexedPattern:
    """One pattern's peaks and indexing, with the scan it came from (None for a structure)."""

    source: str
    kind: str
    peaks: PeakList
    result: IndexResult
    two_theta: np.ndarray | None = None
    intensities: np.ndarray | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON record of ``xrdsym index --json``."""
        record: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "wavelength_angstrom": round(self.peaks.wavelength, 6),
            "kalpha2": self.peaks.kalpha2,
        }
        record |= self.result.to_dict()
        record["seconds"] = round(self.result.seconds, 3)
        record["peaks"] = [
            {
                "two_theta": round(float(t), 4),
                "d": round(float(d), 5),
                "intensity": round(float(i), 4),
            }
            for t, d, i in zip(
                self.peaks.two_theta, self.peaks.d_spacing, self.peaks.intensity, strict=True
            )
        ]
        return record


_warm = False


def warm_up() -> None:
    """Load the indexer's compiled kernels (numba's cache) and run every lattice system's
    search once per process, outside any pattern's time budget: else the first pattern a
    process indexes spends part of its budget on loading, and its result depends on that."""
    global _warm
    if not _warm:
        index_lines(WARM_UP_LINES, 1.54056, settings=IndexSettings(settled_figure_of_merit=0.0))
        _warm = True


def search_settings(
    peaks_section: dict[str, Any] | None, index_section: dict[str, Any] | None
) -> tuple[PeakSettings, IndexSettings]:
    """The peak finder's and the lattice search's settings from params.yaml's ``peaks`` and
    ``index`` sections (the index stage's own keys, STAGE_KEYS, left aside)."""
    search = {k: v for k, v in (index_section or {}).items() if k not in STAGE_KEYS}
    return PeakSettings.from_params(peaks_section), IndexSettings.from_params(search)


def index_scan(
    two_theta_deg: np.ndarray,
    intensities: np.ndarray,
    wavelength: float,
    peak_settings: PeakSettings | None = None,
    index_settings: IndexSettings | None = None,
) -> tuple[PeakList, IndexResult]:
    """Peaks of a scan (2θ in degrees, intensities, wavelength in Å) and their indexing."""
    peaks = find_peaks(two_theta_deg, intensities, wavelength, peak_settings)
    return peaks, index_peaks(peaks, index_settings)


def index_measured_part(
    two_theta_deg: np.ndarray,
    intensities: np.ndarray,
    wavelength: float,
    peak_settings: PeakSettings | None = None,
    index_settings: IndexSettings | None = None,
) -> tuple[PeakList, IndexResult]:
    """:func:`index_scan` of a pattern on a grid that a scan covers only in part (zeros
    outside, as a truncated scan on a model's grid): of the part from its first to its last
    point above 0."""
    measured = np.flatnonzero(np.asarray(intensities) > 0)
    first, last = (measured[0], measured[-1] + 1) if len(measured) else (0, len(intensities))
    return index_scan(
        np.asarray(two_theta_deg[first:last], dtype=np.float64),
        np.asarray(intensities[first:last], dtype=np.float64),
        wavelength,
        peak_settings,
        index_settings,
    )


def index_peaks(peaks: PeakList, settings: IndexSettings | None = None) -> IndexResult:
    """Index a peak list (its Kα1 positions, at the wavelength they refer to)."""
    return index_lines(
        peaks.two_theta, peaks.wavelength, peaks.sigma_two_theta, settings, peaks.intensity
    )


def structure_peaks(structure: Structure, wavelength: str | float) -> PeakList:
    """The lines a perfect scan of ``structure`` shows: pymatgen's peaks at ``wavelength``
    (an anode name or Å) over STRUCTURE_TWO_THETA_RANGE, those within
    STRUCTURE_RESOLUTION_DEG merged at their intensity-weighted mean."""
    from xrdsym.diffraction import simulate_peaks
    from xrdsym.measured import parse_wavelength

    angstrom = parse_wavelength(wavelength)
    peaks = simulate_peaks(structure, angstrom, STRUCTURE_TWO_THETA_RANGE)
    strong = peaks.intensities >= STRUCTURE_MIN_INTENSITY
    two_theta, intensity = peaks.two_theta[strong], peaks.intensities[strong]
    group = np.concatenate([[0], np.cumsum(np.diff(two_theta) > STRUCTURE_RESOLUTION_DEG)])
    total = np.bincount(group, weights=intensity)
    merged = np.bincount(group, weights=intensity * two_theta) / total
    d_spacing = angstrom / (2 * np.sin(np.radians(merged / 2)))
    n = len(merged)
    return PeakList(
        two_theta=merged,
        d_spacing=d_spacing,
        intensity=total,
        fwhm=np.zeros(n),
        sigma_two_theta=np.zeros(n),
        significance=np.full(n, np.inf),
        wavelength=angstrom,
        kalpha2=False,
        noise=0.0,
    )


def index_file(
    path: Path,
    wavelength: float | None,
    peak_settings: PeakSettings | None = None,
    index_settings: IndexSettings | None = None,
    structure_wavelength: str | float = DEFAULT_STRUCTURE_WAVELENGTH,
) -> tuple[list[IndexedPattern], list[str]]:
    """Every pattern in ``path`` indexed, and notes on what the file holds besides.

    ``wavelength`` (Å) is used for a scan that states none; a scan without either raises
    XrdsymError naming the file. A CIF without powder data is read as structures, simulated
    at ``structure_wavelength``."""
    from xrdsym.measured import CalculatedBlockSkipped, NoPowderData, read_measured

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalculatedBlockSkipped)
        try:
            measured = read_measured(path)
        except NoPowderData:
            measured = None
    notes = [str(w.message) for w in caught if issubclass(w.category, CalculatedBlockSkipped)]
    if measured is None:
        from xrdsym.prediction import read_structures

        indexed = []
        for record in read_structures(path):
            peaks = structure_peaks(record.structure, structure_wavelength)
            indexed.append(
                IndexedPattern(
                    str(path.parent / record.id),
                    "structure",
                    peaks,
                    index_peaks(peaks, index_settings),
                )
            )
        return indexed, notes
    indexed = [
        index_pattern(pattern, wavelength, peak_settings, index_settings, "--wavelength")
        for pattern in measured
    ]
    return indexed, notes


def index_pattern(
    pattern: MeasuredPattern,
    wavelength: float | None,
    peak_settings: PeakSettings | None = None,
    index_settings: IndexSettings | None = None,
    option: str = "wavelength=",
) -> IndexedPattern:
    """A measured pattern indexed at its own wavelength, else ``wavelength`` (Å); without
    either, XrdsymError naming the pattern and ``option``, the way to give one."""
    peaks, result = index_scan(
        pattern.two_theta,
        pattern.intensities,
        pattern.wavelength_or(wavelength, option),
        peak_settings,
        index_settings,
    )
    return IndexedPattern(
        pattern.source, "measured", peaks, result, pattern.two_theta, pattern.intensities
    )


def index_inputs(
    inputs: Any,
    *,
    wavelength: str | float | None = None,
    peak_settings: PeakSettings | None = None,
    index_settings: IndexSettings | None = None,
) -> list[IndexedPattern]:
    """Index files, folders, measured patterns or (2θ, intensities) arrays, in order: the
    implementation of :func:`xrdsym.index`, which documents the arguments. The first input
    that cannot be read raises its XrdsymError, with the message ``xrdsym index`` gives."""
    from xrdsym.measured import MeasuredPattern, parse_wavelength, validate
    from xrdsym.prediction import find_inputs, input_items, is_array_pair

    stated = parse_wavelength(wavelength) if wavelength is not None else None
    structure_wavelength = wavelength if wavelength is not None else DEFAULT_STRUCTURE_WAVELENGTH
    indexed: list[IndexedPattern] = []
    for number, item in enumerate(input_items(inputs)):
        if isinstance(item, str | os.PathLike):
            files, _ = find_inputs([Path(item)])
            for path in files:
                patterns, _ = index_file(
                    path, stated, peak_settings, index_settings, structure_wavelength
                )
                indexed += patterns
            continue
        if isinstance(item, MeasuredPattern):
            pattern = item
        elif is_array_pair(item):
            pattern = validate(item[0], item[1], None, f"array {number}")
        else:
            raise XrdsymError(
                f"input {number}: {type(item).__name__} is neither a path, a pattern nor "
                "(2θ, intensities) arrays"
            )
        indexed.append(index_pattern(pattern, stated, peak_settings, index_settings))
    return indexed
