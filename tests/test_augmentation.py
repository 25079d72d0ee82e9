import math

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice

from xrdsym.augmentation import (
    SCHERRER_K,
    AugmentSettings,
    augment_patterns,
    counting_noise,
    march_dollase_factors,
    peak_reflections,
    profile_shape,
    render_peaks,
    scherrer_fwhm_deg,
    strained_two_theta,
)
from xrdsym.diffraction import Peaks, PeakTable, TwoThetaGrid, simulate_peaks
from xrdsym.errors import ParamsError

GRID = TwoThetaGrid(10, 80, 0.02)
CU_KA = 1.54184
TETRAGONAL = Lattice.tetragonal(4.0, 6.0).reciprocal_lattice_crystallographic.matrix
PARAMS = {
    "enabled": True,
    "profile": "gaussian",
    "instrument_fwhm_deg": [0.1, 0.2],
    "crystallite_nm": [20, 100],
    "strain": [-0.005, 0.005],
    "zero_offset_deg": [-0.05, 0.05],
    "march_dollase_r": [0.7, 1.0],
    "background": [0.0, 0.1],
    "noise_counts": [300, 10000],
    "workers": 1,
}
OFF = {
    "crystallite_nm": None,
    "strain": None,
    "zero_offset_deg": None,
    "march_dollase_r": None,
    "background": None,
    "noise_counts": None,
}


def _table() -> PeakTable:
    """Two structures on a tetragonal lattice: three and two peaks with their hkl."""
    first = Peaks(np.array([25.0, 40.0, 61.3]), np.array([100.0, 40.0, 70.0]), np.eye(3, dtype=int))
    second = Peaks(
        np.array([30.5, 55.0]), np.array([30.0, 100.0]), np.array([[1, 1, 0], [1, 0, 1]])
    )
    return PeakTable.from_peaks([first, second], [TETRAGONAL, TETRAGONAL])


def _settings(**change) -> AugmentSettings:
    return AugmentSettings.from_params({**PARAMS, **OFF, **change})


def _centroid(pattern: np.ndarray, around: float, half_width: float = 1.5) -> float:
    near = np.abs(GRID.values - around) < half_width
    return float(np.sum(GRID.values[near] * pattern[near]) / np.sum(pattern[near]))


def _measured_fwhm(pattern: np.ndarray) -> float:
    """FWHM of the single peak of ``pattern``, from linear interpolation of the half-maximum
    crossings."""
    half = pattern.max() / 2
    above = np.flatnonzero(pattern >= half)
    left, right = above[0], above[-1]
    x, y = GRID.values, pattern
    x_left = x[left - 1] + (half - y[left - 1]) * (x[left] - x[left - 1]) / (y[left] - y[left - 1])
    x_right = x[right] + (y[right] - half) * (x[right + 1] - x[right]) / (y[right] - y[right + 1])
    return x_right - x_left


@pytest.mark.parametrize("profile", ["gaussian", "pseudo_voigt"])
def test_broadening_keeps_the_integrated_intensity(profile):
    centres = np.array([20.0, 20.3, 45.123, 70.0])
    areas = np.array([100.0, 35.0, 60.0, 12.5])
    fwhm, eta = profile_shape(
        np.full(4, 0.15), scherrer_fwhm_deg(centres, np.array([20, 50, 100, 30]), CU_KA), profile
    )
    rows = np.array([0, 0, 1, 1])
    patterns = render_peaks(centres, areas, fwhm, eta, rows, 2, GRID, window_fwhm=5.0)
    # Sum over the grid times the step, per pattern, before any normalisation.
    # Profiles are float32, so the sums agree to float32's precision.
    assert patterns.sum(axis=1) * GRID.step == pytest.approx([135.0, 72.5], rel=1e-6)


def test_intensity_beyond_the_grid_is_lost():
    def render(centres):
        n = len(centres)
        fwhm, eta = profile_shape(np.full(n, 0.2), np.zeros(n), "gaussian")
        areas, rows = np.full(n, 80.0), np.zeros(n, int)
        return render_peaks(np.array(centres), areas, fwhm, eta, rows, 1, GRID, 2.5)[0]

    assert render([GRID.start - 5]).sum() == 0
    # A peak centred on the last grid point keeps what lies at and below that point: as much
    # as the same peak in the middle of the grid has at and below its centre.
    middle = render([45.0])
    kept = middle[GRID.values <= 45.0 + GRID.step / 2].sum()
    assert render([GRID.values[-1]]).sum() == pytest.approx(kept, rel=1e-6)
    assert kept * GRID.step == pytest.approx(40.0, rel=0.1)


def test_scherrer_width_by_hand_grows_as_one_over_cos_theta_and_shrinks_with_size():
    # L = 50 nm = 500 Å at 2θ = 40°: β = 0.9 * 1.54184 / (500 * cos 20°) rad.
    by_hand = math.degrees(SCHERRER_K * CU_KA / (500 * math.cos(math.radians(20))))
    assert scherrer_fwhm_deg(40.0, 50.0, CU_KA) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.1692, abs=1e-4)
    low, high = scherrer_fwhm_deg(np.array([20.0, 80.0]), 50.0, CU_KA)
    assert high / low == pytest.approx(math.cos(math.radians(10)) / math.cos(math.radians(40)))
    assert scherrer_fwhm_deg(40.0, 100.0, CU_KA) == pytest.approx(by_hand / 2)


def test_rendered_peak_has_the_combined_width():
    # Gaussian size and instrument broadening add in quadrature; measured on the grid.
    size = scherrer_fwhm_deg(60.0, 30.0, CU_KA)
    fwhm, eta = profile_shape(np.array([0.12]), np.array([size]), "gaussian")
    assert fwhm[0] == pytest.approx(math.hypot(0.12, size))
    pattern = render_peaks(
        np.array([60.0]), np.array([1.0]), fwhm, eta, np.zeros(1, int), 1, GRID, 2.5
    )
    assert _measured_fwhm(pattern[0]) == pytest.approx(fwhm[0], rel=0.01)
    # A pure Lorentzian (no instrument width) keeps its width in the pseudo-Voigt.
    fwhm, eta = profile_shape(np.array([0.0]), np.array([0.3]), "pseudo_voigt")
    assert fwhm[0] == pytest.approx(0.3) and eta[0] == pytest.approx(1.0, abs=1e-4)


def test_broader_at_high_angle_and_for_small_crystallites():
    table = PeakTable.from_peaks(
        [Peaks(np.array([20.0, 75.0]), np.array([100.0, 100.0]), np.eye(3, dtype=int)[:2])],
        [TETRAGONAL],
    )
    widths = {}
    for size in (20, 100):
        settings = _settings(instrument_fwhm_deg=0.05, crystallite_nm=size)
        pattern = augment_patterns(table, [0], GRID, CU_KA, settings, np.random.default_rng(0))[0]
        low, high = (pattern * (np.abs(GRID.values - c) < 3) for c in (20.0, 75.0))
        widths[size] = (_measured_fwhm(low), _measured_fwhm(high))
    assert widths[20][1] > widths[20][0] and widths[100][1] > widths[100][0]
    assert widths[20][0] > widths[100][0] and widths[20][1] > widths[100][1]


def test_strain_moves_a_peak_as_braggs_law_says():
    # A peak at 2θ = 40° has d = λ / (2 sin 20°); stretched by 0.5 % it is at
    # 2 asin(λ / (2 d 1.005)) = 2 asin(sin 20° / 1.005) = 39.7926°.
    d = CU_KA / (2 * math.sin(math.radians(20)))
    by_hand = 2 * math.degrees(math.asin(CU_KA / (2 * d * 1.005)))
    assert by_hand == pytest.approx(39.7926, abs=1e-4)
    assert strained_two_theta(40.0, 0.005) == pytest.approx(by_hand)
    table = PeakTable.from_peaks(
        [Peaks(np.array([40.0]), np.array([100.0]), np.eye(3, dtype=int)[:1])], [TETRAGONAL]
    )
    rng = np.random.default_rng(0)
    moved = augment_patterns(table, [0], GRID, CU_KA, _settings(strain=0.005), rng)[0]
    assert _centroid(moved, 40.0) == pytest.approx(by_hand, abs=2e-3)
    # Compression beyond a back-reflection's reach leaves no position.
    assert np.isnan(strained_two_theta(170.0, -0.01))


def test_zero_offset_shifts_every_peak_by_the_same_angle():
    table = _table()
    plain = augment_patterns(table, [0, 1], GRID, CU_KA, _settings(), np.random.default_rng(1))
    shifted = augment_patterns(
        table, [0, 1], GRID, CU_KA, _settings(zero_offset_deg=0.1), np.random.default_rng(1)
    )
    # 0.1 degrees is exactly 5 grid points; the same instrument width is drawn in both.
    assert np.allclose(shifted[:, 5:], plain[:, :-5], atol=1e-6)
    for row, centres in ((0, [25.0, 40.0, 61.3]), (1, [30.5, 55.0])):
        for centre in centres:
            assert _centroid(shifted[row], centre + 0.1) - _centroid(plain[row], centre) == (
                pytest.approx(0.1, abs=1e-6)
            )


def test_march_dollase_by_hand():
    hkl = np.array([[0, 0, 1], [1, 0, 0], [1, 0, 1]])
    assert np.array_equal(march_dollase_factors(hkl, TETRAGONAL, [0, 0, 1], 1.0), np.ones(3))
    r = 0.7
    factors = march_dollase_factors(hkl, TETRAGONAL, [0, 0, 1], r)
    # Parallel to the axis: (r²)^(-3/2) = r⁻³, boosted; perpendicular: (1/r)^(-3/2) = r^(3/2).
    assert factors[0] == pytest.approx(r**-3) and factors[0] > 1
    assert factors[1] == pytest.approx(r**1.5) and factors[1] < 1
    # (101) on a = 4, c = 6 Å: g = (1/4, 0, 1/6), cos²α = (1/6)² / ((1/4)² + (1/6)²).
    cos2 = (1 / 36) / (1 / 16 + 1 / 36)
    assert factors[2] == pytest.approx((r**2 * cos2 + (1 - cos2) / r) ** -1.5)
    # One lattice, axis and r per peak broadcast the same way.
    per_peak = march_dollase_factors(
        hkl, np.stack([TETRAGONAL] * 3), np.array([[0, 0, 1]] * 3), np.full(3, r)
    )
    assert np.allclose(per_peak, factors)


def test_march_dollase_with_r_one_changes_nothing():
    table, rng_seed = _table(), 7
    off = augment_patterns(table, [0, 1], GRID, CU_KA, _settings(), np.random.default_rng(rng_seed))
    r_one = augment_patterns(
        table, [0, 1], GRID, CU_KA, _settings(march_dollase_r=1.0), np.random.default_rng(rng_seed)
    )
    assert np.allclose(off, r_one, atol=1e-7)
    platelets = augment_patterns(
        table, [0, 1], GRID, CU_KA, _settings(march_dollase_r=0.5), np.random.default_rng(rng_seed)
    )
    assert not np.allclose(off, platelets, atol=1e-3)


@pytest.mark.parametrize("profile", ["gaussian", "pseudo_voigt"])
def test_every_part_on_gives_reproducible_float32_in_unit_range(profile):
    settings = AugmentSettings.from_params({**PARAMS, "profile": profile})
    table = _table()
    first = augment_patterns(table, [0, 1, 0], GRID, CU_KA, settings, np.random.default_rng(3))
    again = augment_patterns(table, [0, 1, 0], GRID, CU_KA, settings, np.random.default_rng(3))
    other = augment_patterns(table, [0, 1, 0], GRID, CU_KA, settings, np.random.default_rng(4))
    assert first.dtype == np.float32 and first.shape == (3, GRID.size)
    assert first.min() >= 0 and first.max() <= 1
    assert np.allclose(first.min(axis=1), 0) and np.allclose(first.max(axis=1), 1)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # The same structure twice in a batch gets two different draws.
    assert not np.array_equal(first[0], first[2])


def test_background_and_noise_are_what_they_say():
    table = _table()
    rng = np.random.default_rng
    clean = augment_patterns(table, [0], GRID, CU_KA, _settings(), rng(5))[0]
    background = augment_patterns(table, [0], GRID, CU_KA, _settings(background=0.2), rng(5))[0]
    # Far from every peak the clean pattern is 0; the background lifts it smoothly there.
    far = GRID.values > 65
    assert np.all(clean[far] < 1e-6)
    assert background[far].max() > 0.05 and np.abs(np.diff(background[far], 2)).max() < 1e-5
    noisy = augment_patterns(table, [0], GRID, CU_KA, _settings(noise_counts=100), rng(5))[0]
    assert not np.allclose(noisy, clean, atol=1e-3)


def test_counting_noise_is_poisson():
    # A flat pattern scaled to 400 counts: whole counts, mean 400 and variance 400.
    flat = np.full((2, 20000), 0.5)
    noisy = counting_noise(flat, np.array([400.0, 400.0]), np.random.default_rng(0))
    counts = noisy * 800
    assert np.allclose(counts, np.rint(counts))
    assert counts.mean() == pytest.approx(400, rel=0.01)
    assert counts.var() == pytest.approx(400, rel=0.05)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instrument_fwhm_deg": None}, "train.augment.instrument_fwhm_deg=None"),
        ({"crystallite_nm": [100, 20]}, "low must not exceed high"),
        ({"march_dollase_r": [-1, 1]}, "train.augment.march_dollase_r"),
        ({"background": "lots"}, "train.augment.background='lots'"),
        ({"profile": "lorentzian"}, "train.augment.profile='lorentzian'"),
        ({"enabled": "yes"}, "train.augment.enabled='yes'"),
    ],
)
def test_invalid_settings_name_the_key(change, message):
    with pytest.raises(ParamsError) as error:
        AugmentSettings.from_params({**PARAMS, **change})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_disabled_or_switched_off_parts():
    assert AugmentSettings.from_params({**PARAMS, "enabled": False}) is None
    settings = AugmentSettings.from_params({**PARAMS, "strain": 0, "crystallite_nm": None})
    assert settings.strain is None and settings.crystallite_nm is None
    assert settings.instrument_fwhm_deg == (0.1, 0.2)
    with pytest.raises(ParamsError, match=r"missing key 'train\.augment\.noise_counts'"):
        AugmentSettings.from_params({k: v for k, v in PARAMS.items() if k != "noise_counts"})


def test_a_structure_whose_peaks_all_leave_the_grid_gets_an_empty_pattern():
    """Every part on, one structure's only peak far outside the grid: its row stays zero and
    the batch is made (no division by zero in the counting noise or the normalisation)."""
    outside = Peaks(np.array([150.0]), np.array([100.0]), np.array([[1, 0, 0]]))
    table = PeakTable.from_peaks([outside, _table().peaks(1)], [TETRAGONAL, TETRAGONAL])
    settings = AugmentSettings.from_params({**PARAMS, "background": None})
    patterns = augment_patterns(table, [0, 1], GRID, CU_KA, settings, np.random.default_rng(0))
    assert not patterns[0].any() and patterns[1].max() == 1


@pytest.mark.parametrize("fixture", ["rock_salt", "rutile"])
def test_each_peak_has_all_the_reflections_of_its_families(fixture, request):
    """The reflections found for every peak are as many as pymatgen's multiplicities say."""
    structure = request.getfixturevalue(fixture)
    pattern = XRDCalculator("CuKa").get_pattern(structure, two_theta_range=(10, 80))
    peaks = simulate_peaks(structure, "CuKa", (10, 80))
    lattice = structure.lattice.reciprocal_lattice_crystallographic.matrix
    reflections = peak_reflections(PeakTable.from_peaks([peaks], [lattice]), CU_KA)
    found = np.diff(reflections.offsets)
    expected = [sum(family["multiplicity"] for family in families) for families in pattern.hkls]
    assert list(found) == expected


def test_march_dollase_of_a_peak_is_the_mean_over_its_reflections():
    """Cubic {100} about [001]: two reflections along the axis, four across it."""
    a, r = 4.0, 0.6
    two_theta = 2 * np.degrees(np.arcsin(CU_KA / (2 * a)))
    table = PeakTable.from_peaks(
        [Peaks(np.array([two_theta]), np.array([100.0]), np.array([[1, 0, 0]]))],
        [np.eye(3) / a],
    )
    reflections = peak_reflections(table, CU_KA)
    assert sorted(map(tuple, reflections.hkl)) == sorted(
        [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    )
    factors = march_dollase_factors(reflections.hkl, np.eye(3) / a, [0, 0, 1], r)
    assert factors.mean() == pytest.approx((2 * r**1.5 + r**-3) / 3)
    assert factors.mean() > 1 > r**1.5  # the stored (100) alone would say the opposite
