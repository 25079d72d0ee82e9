import numpy as np
import pytest

from xrdsym.diffraction import (
    SIMULATORS,
    Peaks,
    TwoThetaGrid,
    pattern_from_structure,
    peak_simulator,
    peaks_on_grid,
    simulate_peaks,
    smooth_and_normalise,
)
from xrdsym.xrd_vectorised import simulate_peaks_vectorised


def test_grid_includes_both_ends():
    grid = TwoThetaGrid(0, 90, 0.02)
    assert grid.size == 4501
    assert grid.values[0] == 0
    assert grid.values[-1] == pytest.approx(90)
    assert np.allclose(np.diff(grid.values), 0.02)


def test_peaks_go_to_nearest_point_and_coincident_peaks_add_up():
    grid = TwoThetaGrid(10, 20, 1.0)
    peaks = Peaks(np.array([11.2, 11.4, 15.6, 25.0]), np.array([10.0, 5.0, 100.0, 50.0]))
    sticks = peaks_on_grid(peaks, grid)
    expected = np.zeros(11)
    expected[1] = 15.0  # 11.2 and 11.4 both round to 11
    expected[6] = 100.0  # 15.6 rounds to 16
    # 25.0 lies outside the grid and is left out
    assert np.array_equal(sticks, expected)


def test_smoothing_of_one_peak_is_the_sampled_gaussian():
    sticks = np.zeros(101)
    sticks[50] = 37.0
    sigma = 5.0
    pattern = smooth_and_normalise(sticks, sigma)
    offsets = np.arange(101) - 50
    # scipy's kernel is exp(-x^2 / 2 sigma^2), truncated at 4 sigma and normalised to sum 1;
    # rescaled to a maximum of 1 it is the plain Gaussian within the truncation.
    expected = np.where(np.abs(offsets) <= 4 * sigma, np.exp(-(offsets**2) / (2 * sigma**2)), 0)
    assert pattern.dtype == np.float32
    assert np.allclose(pattern, expected, atol=1e-6)


def test_two_peaks_by_hand():
    # Two sticks 1 point apart with sigma = 1: kernel values k0 = 1/Z, k1 = exp(-1/2)/Z.
    sticks = np.zeros(21)
    sticks[10], sticks[11] = 2.0, 1.0
    pattern = smooth_and_normalise(sticks, 1.0)
    k = np.exp(-0.5 * np.arange(5) ** 2)  # unnormalised kernel at offsets 0..4
    at10 = 2 * k[0] + 1 * k[1]
    at11 = 2 * k[1] + 1 * k[0]
    at12 = 2 * k[2] + 1 * k[1]
    assert pattern[10] == pytest.approx(1.0)
    assert pattern[11] == pytest.approx(at11 / at10, rel=1e-6)
    assert pattern[12] == pytest.approx(at12 / at10, rel=1e-6)
    assert pattern.min() == 0.0


def test_empty_pattern_is_an_error():
    with pytest.raises(ValueError, match="no diffraction peaks"):
        smooth_and_normalise(np.zeros(50), 5)


CU_KA = 1.54184  # Å, pymatgen's Cu K-alpha (weighted K-alpha1 and K-alpha2)


def bragg_two_theta(a: float, hkl: tuple[int, int, int]) -> float:
    """2θ in degrees of reflection hkl of a cubic cell of side a (Å) under Cu K-alpha."""
    d = a / np.sqrt(sum(i * i for i in hkl))
    return 2 * np.degrees(np.arcsin(CU_KA / (2 * d)))


def test_rock_salt_peaks_where_braggs_law_puts_them(rock_salt):
    peaks = simulate_peaks(rock_salt, "CuKa", (0, 90))
    for hkl in [(1, 1, 1), (2, 0, 0), (2, 2, 0), (2, 2, 2)]:
        assert np.min(np.abs(peaks.two_theta - bragg_two_theta(5.64, hkl))) < 1e-6
    # Extinct in a face-centred lattice (mixed parity): no (100) or (110) peak.
    for hkl in [(1, 0, 0), (1, 1, 0)]:
        assert np.min(np.abs(peaks.two_theta - bragg_two_theta(5.64, hkl))) > 1
    # The (200) reflection is rock salt's strongest.
    strongest = peaks.two_theta[np.argmax(peaks.intensities)]
    assert strongest == pytest.approx(bragg_two_theta(5.64, (2, 0, 0)))


def test_pattern_from_structure_is_normalised(rock_salt):
    grid = TwoThetaGrid(0, 90, 0.02)
    pattern = pattern_from_structure(rock_salt, "CuKa", grid, sigma=5)
    assert pattern.shape == (grid.size,)
    assert pattern.dtype == np.float32
    assert pattern.min() == 0.0 and pattern.max() == 1.0
    assert grid.values[np.argmax(pattern)] == pytest.approx(
        bragg_two_theta(5.64, (2, 0, 0)), abs=0.02
    )


def test_simulators_by_name():
    assert peak_simulator("pymatgen") is simulate_peaks
    assert peak_simulator("vectorised") is simulate_peaks_vectorised
    with pytest.raises(ValueError, match="unknown peak simulator 'xrayutilities'"):
        peak_simulator("xrayutilities")


def test_both_simulators_give_the_same_pattern(rock_salt, rutile):
    grid = TwoThetaGrid(0, 90, 0.02)
    for structure in (rock_salt, rutile):
        patterns = [pattern_from_structure(structure, "CuKa", grid, 5, name) for name in SIMULATORS]
        assert np.array_equal(patterns[0], patterns[1])
