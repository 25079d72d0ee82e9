"""Peak positions from simulated laboratory scans of known structures (exact Kα1 peaks from
pymatgen's XRDCalculator, rendered as pseudo-Voigt Kα1 + Kα2 doublets with Poisson noise on a
sloping background) and from a committed reader sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.measured import read_measured
from xrdsym.peaks import PeakList, PeakSettings, find_peaks
from xrdsym.wavelengths import WAVELENGTHS, kalpha2_ratio

DATA = Path(__file__).parent / "data"
CU_KA1 = WAVELENGTHS["CuKa1"]
SCAN = np.arange(10.0, 100.0, 0.02)
# Counts of the strongest peak and of the background: a typical 1-hour laboratory scan.
PEAK_COUNTS = 20_000.0
BACKGROUND_COUNTS = 200.0
# Exact peaks this strong (relative to the strongest, %) stand far above the noise here: each
# must be found. 1 % is 200 counts on a background of ~300 (σ ≈ 17), over 10 σ.
FOUND_PERCENT = 1.0
# Kα1 positions to this (degrees 2θ): 0.1 % in d at 2θ = 100 is 0.12 degrees; the fit does
# better than 0.01 on these scans.
POSITION_TOL_DEG = 0.01
# A weak peak's position error stays within this many of its σ (a 1-in-16,000 chance for a
# normal error).
PULL_LIMIT = 4.0
# An exact peak closer than this to a stronger one is not resolved (the FWHM is 0.08 degrees
# or more): it need not be found.
MATCH_DEG = 0.05


def rutile() -> Structure:
    """TiO2 rutile, P4_2/mnm: 25 reflections from 10 to 100 degrees with Cu Kα1."""
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3053, 0.3053, 0]]
    )


def exact_peaks(wavelength: float, highest: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Rutile's exact peak positions (degrees) and intensities (%) at ``wavelength`` (Å), from
    10 to ``highest`` degrees."""
    calculator = XRDCalculator(wavelength=wavelength)
    pattern = calculator.get_pattern(rutile(), two_theta_range=(10, highest))
    return np.array(pattern.x), np.array(pattern.y)


def render(
    positions: np.ndarray,
    intensities: np.ndarray,
    kalpha2_share: float,
    wavelength: float = CU_KA1,
    seed: int | None = 0,
    zero_shift: float = 0.0,
) -> np.ndarray:
    """Counts on SCAN: pseudo-Voigt peaks (FWHM 0.08 degrees growing with tan θ, η = 0.4), Kα2
    lines ``kalpha2_share`` as strong, a sloping background, Poisson noise (none for seed None)."""
    centre = positions + zero_shift
    fwhm = 0.08 * (1 + 0.5 * np.tan(np.radians(centre) / 2))
    height = PEAK_COUNTS * intensities / intensities.max()

    def profile(at: np.ndarray) -> np.ndarray:
        z2 = ((SCAN[:, None] - at) / fwhm) ** 2
        return (height * (0.4 / (1 + 4 * z2) + 0.6 * np.exp(-4 * math.log(2) * z2))).sum(axis=1)

    counts = BACKGROUND_COUNTS * (1.5 - (SCAN - SCAN[0]) / 180) + profile(centre)
    ratio = kalpha2_ratio(wavelength)
    if kalpha2_share > 0 and ratio is not None:
        kalpha2 = 2 * np.degrees(np.arcsin(ratio * np.sin(np.radians(centre) / 2)))
        counts += kalpha2_share * profile(kalpha2)
    if seed is None:
        return counts
    return np.random.default_rng(seed).poisson(counts).astype(float)


def matched(peaks: PeakList, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each found peak, the index of the nearest exact peak and the position error."""
    nearest = np.abs(peaks.two_theta[:, None] - positions[None, :]).argmin(axis=1)
    return nearest, peaks.two_theta - positions[nearest]


def assert_reflections_found(
    peaks: PeakList, positions: np.ndarray, intensities: np.ndarray, tolerance: float
) -> np.ndarray:
    """Every found peak is one exact reflection, once: the strong ones (not hidden by a
    stronger neighbour) all found, within ``tolerance``, the weak ones within PULL_LIMIT of
    their own uncertainty. The position errors."""
    nearest, error = matched(peaks, positions)
    assert np.unique(nearest).size == nearest.size, "a reflection found twice"
    distance = np.abs(positions[:, None] - positions[None, :])
    hidden = ((distance < MATCH_DEG) & (intensities[None, :] > intensities[:, None])).any(axis=1)
    strong = (intensities >= FOUND_PERCENT) & ~hidden
    missing = np.setdiff1d(np.flatnonzero(strong), nearest)
    assert missing.size == 0, np.round(positions[missing], 3)
    on_strong = strong[nearest]
    assert np.abs(error[on_strong]).max() < tolerance
    limit = np.maximum(tolerance, PULL_LIMIT * peaks.sigma_two_theta)
    assert np.all(np.abs(error) < limit), np.round(peaks.two_theta[np.abs(error) >= limit], 3)
    return error


@pytest.mark.parametrize("seed", [0, 1])
def test_doublet_scan_gives_kalpha1_positions_once_each(seed):
    positions, intensities = exact_peaks(CU_KA1)
    peaks = find_peaks(SCAN, render(positions, intensities, 0.5, seed=seed), CU_KA1)
    assert peaks.kalpha2
    assert peaks.wavelength == CU_KA1
    error = assert_reflections_found(peaks, positions, intensities, POSITION_TOL_DEG)
    assert np.all(np.diff(peaks.two_theta) > 0)
    # The uncertainty is honest: errors mostly within 3 σ, and σ is not inflated either.
    pulls = np.abs(error) / peaks.sigma_two_theta
    assert np.median(pulls) < 3
    assert np.median(peaks.sigma_two_theta) < POSITION_TOL_DEG / 3
    # d from Bragg's law with λ(Kα1).
    assert peaks.d_spacing == pytest.approx(CU_KA1 / (2 * np.sin(np.radians(peaks.two_theta) / 2)))


def test_weighted_kalpha_wavelength_reports_kalpha1():
    """A scan labelled Cu Kα (1.5418) with a doublet: positions and d refer to Kα1."""
    positions, intensities = exact_peaks(CU_KA1)
    peaks = find_peaks(SCAN, render(positions, intensities, 0.5), WAVELENGTHS["CuKa"])
    assert peaks.kalpha2
    assert peaks.wavelength == CU_KA1
    assert_reflections_found(peaks, positions, intensities, POSITION_TOL_DEG)


@pytest.mark.parametrize("shift", [0.05, -0.03])
def test_zero_shift_reproduced(shift):
    positions, intensities = exact_peaks(CU_KA1)
    scan = render(positions, intensities, 0.5, zero_shift=shift)
    peaks = find_peaks(SCAN, scan, CU_KA1)
    error = assert_reflections_found(peaks, positions + shift, intensities, POSITION_TOL_DEG)
    assert np.mean(error) == pytest.approx(0.0, abs=0.002)


def test_monochromatic_scan_fitted_as_singlets():
    positions, intensities = exact_peaks(CU_KA1)
    peaks = find_peaks(SCAN, render(positions, intensities, 0.0), CU_KA1)
    assert not peaks.kalpha2
    assert_reflections_found(peaks, positions, intensities, POSITION_TOL_DEG)


def test_singlet_fit_of_a_doublet_scan_shows_kalpha2_ghosts():
    """The same doublet scan at a wavelength with no Kα2 (fitted as singlets) shows the
    resolved Kα2 lines as peaks of their own: what the doublet tests above rule out."""
    positions, intensities = exact_peaks(CU_KA1)
    singlets = find_peaks(SCAN, render(positions, intensities, 0.5), 1.3)
    assert not singlets.kalpha2
    ratio = kalpha2_ratio(CU_KA1)
    kalpha2 = 2 * np.degrees(np.arcsin(ratio * np.sin(np.radians(positions) / 2)))
    _, error = matched(singlets, kalpha2)
    _, kalpha1_error = matched(singlets, positions)
    ghosts = (np.abs(error) < POSITION_TOL_DEG) & (np.abs(kalpha1_error) > MATCH_DEG)
    assert ghosts.sum() >= 5


def test_noise_free_profile_exact():
    positions, intensities = exact_peaks(CU_KA1)
    peaks = find_peaks(SCAN, render(positions, intensities, 0.5, seed=None), CU_KA1)
    assert peaks.kalpha2
    assert peaks.noise < 1e-3 * PEAK_COUNTS
    assert np.all(np.isfinite(peaks.significance))
    error = assert_reflections_found(peaks, positions, intensities, 0.001)
    assert len(peaks) >= np.sum(intensities >= 0.5)
    assert np.abs(error).max() < 0.001


def test_non_anode_wavelength_gives_singlets():
    wavelength = 0.5
    # Up to the d-spacings Cu Kα1 reaches at 100 degrees: further, rutile's reflections crowd.
    positions, intensities = exact_peaks(wavelength, highest=38.0)
    counts = render(positions, intensities, 0.0, wavelength=wavelength)
    peaks = find_peaks(SCAN, counts, wavelength)
    assert not peaks.kalpha2
    assert peaks.wavelength == wavelength
    assert_reflections_found(peaks, positions, intensities, POSITION_TOL_DEG)


@pytest.mark.parametrize("mean_counts", [1000.0, 30.0, 2.0])
def test_pure_poisson_noise_gives_almost_no_peaks(mean_counts):
    rng = np.random.default_rng(3)
    found = [
        len(find_peaks(SCAN, rng.poisson(mean_counts, SCAN.size).astype(float), CU_KA1))
        for _ in range(5)
    ]
    assert sum(found) <= 1


def coarse_onto_scan(counts_of, step: float) -> np.ndarray:
    """A scan counted at ``step`` degrees (Poisson counts of ``counts_of(angles)``), linearly
    interpolated onto SCAN and rescaled to [0, 1], as augmentation makes its scans and as
    resampled files come: its noise is correlated over several of SCAN's points."""
    coarse = np.arange(SCAN[0], SCAN[-1] + step, step)
    counts = np.random.default_rng(7).poisson(counts_of(coarse)).astype(float)
    fine = np.interp(SCAN, coarse, counts)
    return (fine - fine.min()) / (fine.max() - fine.min())


def test_interpolated_scan_gives_no_false_peaks():
    """Noise interpolated from a coarse step is smooth from point to point: judged by its
    point-to-point spread, its wiggles pass for peaks (34 false peaks on this scan before the
    noise was measured on the smoothed profile)."""
    positions, intensities = exact_peaks(CU_KA1)
    profile = render(positions, intensities, 0.5, seed=None)
    scan = coarse_onto_scan(lambda angles: np.interp(angles, SCAN, profile), 0.05)
    peaks = find_peaks(SCAN, scan, CU_KA1)
    nearest, error = matched(peaks, positions)
    assert np.sum(np.abs(error) > MATCH_DEG) <= 1
    distance = np.abs(positions[:, None] - positions[None, :])
    hidden = ((distance < MATCH_DEG) & (intensities[None, :] > intensities[:, None])).any(axis=1)
    strong = np.flatnonzero((intensities >= 2 * FOUND_PERCENT) & ~hidden)
    assert np.setdiff1d(strong, nearest[np.abs(error) < 0.02]).size == 0


@pytest.mark.parametrize("step", [0.03, 0.05])
@pytest.mark.parametrize("mean_counts", [1000.0, 30.0, 3.0])
def test_interpolated_poisson_noise_gives_no_peaks(step, mean_counts):
    scan = coarse_onto_scan(lambda angles: np.full(angles.size, mean_counts), step)
    assert len(find_peaks(SCAN, scan, CU_KA1)) == 0


def test_amorphous_hump_gives_no_peak():
    hump = BACKGROUND_COUNTS + 3000 * np.exp(-4 * math.log(2) * ((SCAN - 25) / 8) ** 2)
    rng = np.random.default_rng(4)
    assert len(find_peaks(SCAN, rng.poisson(hump).astype(float), CU_KA1)) == 0
    assert len(find_peaks(SCAN, hump, CU_KA1)) == 0


def test_flat_scan_gives_empty_list():
    peaks = find_peaks(SCAN, np.full(SCAN.size, 5.0), CU_KA1)
    assert len(peaks) == 0
    assert peaks.to_records() == []
    assert len(find_peaks(SCAN, np.zeros(SCAN.size), CU_KA1)) == 0


def test_max_peaks_keeps_the_strongest_sorted():
    positions, intensities = exact_peaks(CU_KA1)
    peaks = find_peaks(SCAN, render(positions, intensities, 0.5), CU_KA1, PeakSettings(max_peaks=3))
    strongest = np.sort(positions[np.argsort(-intensities)[:3]])
    assert peaks.two_theta == pytest.approx(strongest, abs=POSITION_TOL_DEG)


def test_reader_sample_finds_the_nacl_reflections():
    (pattern,) = read_measured(DATA / "nacl_cu.xy")
    peaks = find_peaks(pattern.two_theta, pattern.intensities, pattern.wavelength)
    # Halite, a = 5.6402 Å: its strong reflections (111), (200), (220), (222), (400), (420),
    # (422) below 90 degrees.
    hkl = np.array([[1, 1, 1], [2, 0, 0], [2, 2, 0], [2, 2, 2], [4, 0, 0], [4, 2, 0], [4, 2, 2]])
    d_exact = 5.6402 / np.linalg.norm(hkl, axis=1)
    nearest = np.abs(peaks.d_spacing[:, None] - d_exact[None, :]).min(axis=0)
    assert np.all(nearest / d_exact < 5e-4)
    records = peaks.to_records()
    assert json.loads(json.dumps(records)) == records
    assert set(records[0]) == {"two_theta", "d_spacing", "intensity", "fwhm", "sigma_two_theta"}


@pytest.mark.parametrize(
    ("two_theta", "counts", "wavelength"),
    [
        (SCAN, np.where(SCAN > 50, np.nan, 1.0), CU_KA1),
        (SCAN[::-1], np.ones(SCAN.size), CU_KA1),
        (np.r_[SCAN[:10], SCAN[9:]], np.ones(SCAN.size + 1), CU_KA1),
        (SCAN, np.ones(SCAN.size - 1), CU_KA1),
        (SCAN, np.ones(SCAN.size), 0.0),
        (SCAN, np.ones(SCAN.size), -1.5),
        (SCAN[:2], np.ones(2), CU_KA1),
        (SCAN + 90, np.ones(SCAN.size), CU_KA1),
    ],
)
def test_bad_input_raises_one_line(two_theta, counts, wavelength):
    with pytest.raises(XrdsymError) as raised:
        find_peaks(two_theta, counts, wavelength)
    assert "\n" not in str(raised.value)


def test_settings_from_params():
    settings = PeakSettings.from_params({"min_significance": 6, "max_peaks": 30})
    assert settings.min_significance == 6.0
    assert settings.max_peaks == 30
    assert PeakSettings.from_params({}) == PeakSettings()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"min_sigma": 5}, "min_sigma"),
        ({"max_peaks": 2.5}, "max_peaks"),
        ({"max_peaks": 0}, "max_peaks"),
        ({"min_significance": -1}, "min_significance"),
        ({"background_window_deg": "wide"}, "background_window_deg"),
        ({"max_fwhm_deg": float("nan")}, "max_fwhm_deg"),
    ],
)
def test_bad_settings_name_the_key(section, key):
    with pytest.raises(ParamsError, match=key):
        PeakSettings.from_params(section)
