import math

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice

from xrdsym.augmentation import (
    AMORPHOUS_CENTRE_DEG,
    AMORPHOUS_FWHM_DEG,
    FILM_OTHERS,
    GONIOMETER_RADIUS_MM,
    MAX_IMPURITY_PEAKS,
    SCHERRER_K,
    AugmentSettings,
    augment_patterns,
    coarse_scan,
    counting_noise,
    debye_waller_factors,
    detector_noise,
    displacement_shift_deg,
    film_factors,
    kalpha2_ratio,
    march_dollase_factors,
    peak_reflections,
    profile_shape,
    render_peaks,
    scan_onto_grid,
    scherrer_fwhm_deg,
    strained_two_theta,
)
from xrdsym.diffraction import Peaks, PeakTable, TwoThetaGrid, simulate_peaks
from xrdsym.errors import ParamsError
from xrdsym.wavelengths import WAVELENGTHS

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
    "ka2_ratio": [0, 0.5],
    "displacement_mm": [-0.1, 0.1],
    "scan_start_deg": [5, 15],
    "scan_end_deg": [60, 90],
    "step_deg": [0.01, 0.05],
    "detector_noise": [0, 0.02],
    "intensity_jitter": [0, 0.3],
    "film_probability": 0.05,
    "impurity_peaks": [0, 0.05],
    "amorphous_hump": [0, 0.15],
    "debye_waller_b_angstrom2": [0, 1.5],
    "workers": 1,
}
OFF = dict.fromkeys(set(PARAMS) - {"enabled", "profile", "instrument_fwhm_deg", "workers"})


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instrument_fwhm_deg": None}, "train.augment.instrument_fwhm_deg=None"),
        ({"crystallite_nm": [100, 20]}, "low must not exceed high"),
        ({"march_dollase_r": [-1, 1]}, "train.augment.march_dollase_r"),
        ({"background": "lots"}, "train.augment.background='lots'"),
        ({"profile": "lorentzian"}, "train.augment.profile='lorentzian'"),
        ({"enabled": "yes"}, "train.augment.enabled='yes'"),
        (
            {"ka2_ratio": [0, 1.5]},
            "train.augment.ka2_ratio=[0, 1.5] is invalid: bounds must be <= 1",
        ),
        ({"film_probability": 1.5}, "train.augment.film_probability=1.5"),
        ({"film_probability": [0, 1]}, "must be a probability"),
        ({"step_deg": -0.01}, "train.augment.step_deg=-0.01"),
        ({"scan_end_deg": [14, 90]}, "every scan must end after it starts"),
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


@pytest.mark.parametrize("fixture", ["rock_salt", "rutile"])
def test_debye_waller_factors_are_pymatgens(fixture, request):
    """pymatgen's XRDCalculator with the same B for every element gives every peak the
    intensity of the atoms at rest times debye_waller_factors."""
    structure = request.getfixturevalue(fixture)
    b = 1.2
    elements = {site.specie.symbol for site in structure}
    at_rest = XRDCalculator("CuKa").get_pattern(structure, scaled=False, two_theta_range=(10, 90))
    moving = XRDCalculator("CuKa", debye_waller_factors=dict.fromkeys(elements, b)).get_pattern(
        structure, scaled=False, two_theta_range=(10, 90)
    )
    assert np.allclose(moving.x, at_rest.x)
    expected = at_rest.y * debye_waller_factors(at_rest.x, b, WAVELENGTHS["CuKa"])
    assert moving.y == pytest.approx(expected, rel=1e-9)


def test_debye_waller_weakens_high_angle_peaks_by_its_factor():
    """With B fixed, a peak at 70 degrees keeps exp(-2 B (s70² - s20²)) of its intensity
    relative to one at 20 degrees; at B = 0 (off) both keep theirs."""
    table, rng = _one_peak_table(20.0, 70.0), np.random.default_rng
    off, thermal = (
        augment_patterns(table, [0], GRID, CU_KA, _settings(debye_waller_b_angstrom2=b), rng(12))[0]
        for b in (None, 1.0)
    )
    assert _area(off, 70.0, 1) / _area(off, 20.0, 1) == pytest.approx(1.0, rel=1e-3)
    factors = debye_waller_factors(np.array([20.0, 70.0]), 1.0, CU_KA)
    ratio = _area(thermal, 70.0, 1) / _area(thermal, 20.0, 1)
    assert ratio == pytest.approx(factors[1] / factors[0], rel=1e-3)
    assert ratio < 0.8


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


CU_KA1, CU_KA2 = 1.54056, 1.54439


def _one_peak_table(*two_theta: float) -> PeakTable:
    """One structure with a peak of intensity 100 at each of ``two_theta``."""
    hkl = np.eye(3, dtype=int)[: len(two_theta)]
    return PeakTable.from_peaks(
        [Peaks(np.array(two_theta), np.full(len(two_theta), 100.0), hkl)], [TETRAGONAL]
    )


def _area(pattern: np.ndarray, around: float, half_width: float = 0.1) -> float:
    return float(pattern[np.abs(GRID.values - around) < half_width].sum())


@pytest.mark.parametrize(
    ("wavelength", "ratio"),
    [
        ("CuKa", CU_KA2 / CU_KA1),
        ("CuKa1", CU_KA2 / CU_KA1),
        (1.5406, CU_KA2 / CU_KA1),
        (1.5418, CU_KA2 / CU_KA1),
        ("MoKa1", 0.71359 / 0.7093),
        ("CoKa", 1.79285 / 1.78896),
        ("CuKb1", None),
        (1.0, None),
        (0.49935, None),  # a synchrotron's
    ],
)
def test_kalpha2_ratio_of_the_nearest_anode(wavelength, ratio):
    angstrom = WAVELENGTHS[wavelength] if isinstance(wavelength, str) else wavelength
    assert kalpha2_ratio(angstrom) == (pytest.approx(ratio) if ratio else None)


@pytest.mark.parametrize("wavelength", [CU_KA1, CU_KA])
def test_kalpha2_peak_where_braggs_law_puts_it_with_half_the_intensity(wavelength):
    # A peak at 2θ1 = 70 degrees has d = λ1 / (2 sin 35°); the Kα2 line (1.54439 Å) sees the
    # same d at 2 asin(λ2 / (2 d)), 0.200 degrees higher. The simulated peak is Kα1.
    d = CU_KA1 / (2 * math.sin(math.radians(35)))
    kalpha2 = 2 * math.degrees(math.asin(CU_KA2 / (2 * d)))
    assert kalpha2 - 70 == pytest.approx(0.1996, abs=1e-4)
    settings = _settings(instrument_fwhm_deg=0.04, ka2_ratio=0.5)
    table, rng = _one_peak_table(70.0), np.random.default_rng(0)
    pattern = augment_patterns(table, [0], GRID, wavelength, settings, rng)[0]
    assert _centroid(pattern, 70.0, half_width=0.08) == pytest.approx(70.0, abs=1e-4)
    assert _centroid(pattern, kalpha2, half_width=0.08) == pytest.approx(kalpha2, abs=1e-4)
    assert _area(pattern, kalpha2, 0.08) / _area(pattern, 70.0, 0.08) == pytest.approx(0.5, 1e-3)
    # Nothing else: the two lines hold all the intensity.
    assert _area(pattern, 70.0, 0.08) + _area(pattern, kalpha2, 0.08) == pytest.approx(
        pattern.sum(), rel=1e-5
    )


def test_no_kalpha2_line_without_a_known_anode():
    table, rng = _one_peak_table(40.0, 70.0), np.random.default_rng
    plain = augment_patterns(table, [0], GRID, 1.0, _settings(), rng(0))
    doublet = augment_patterns(table, [0], GRID, 1.0, _settings(ka2_ratio=0.5), rng(0))
    assert np.array_equal(plain, doublet)


def test_displacement_shift_by_hand_scales_with_cos_theta():
    # s = 0.2 mm at 2θ = 20 degrees: -2 * 0.2 * cos 10° / 240 rad = -0.0940 degrees.
    by_hand = math.degrees(-2 * 0.2 * math.cos(math.radians(10)) / GONIOMETER_RADIUS_MM)
    assert by_hand == pytest.approx(-0.0940, abs=1e-4)
    assert displacement_shift_deg(20.0, 0.2) == pytest.approx(by_hand)
    table, rng = _one_peak_table(20.0, 75.0), np.random.default_rng
    plain = augment_patterns(table, [0], GRID, CU_KA, _settings(), rng(2))[0]
    moved = augment_patterns(table, [0], GRID, CU_KA, _settings(displacement_mm=0.2), rng(2))[0]
    low, high = (_centroid(moved, c) - _centroid(plain, c) for c in (20.0, 75.0))
    assert low == pytest.approx(by_hand, rel=1e-3)
    cos_ratio = math.cos(math.radians(37.5)) / math.cos(math.radians(10))
    assert high / low == pytest.approx(cos_ratio, rel=1e-3)


def test_truncated_scan_is_zero_outside_its_range_and_one_at_its_highest_point():
    # Every part on, among them a coarser step, which ends the scan at its last point inside
    # the range (at most one step early).
    settings = AugmentSettings.from_params(
        {**PARAMS, "scan_start_deg": 12.34, "scan_end_deg": 61.7, "background": 0.2}
    )
    table = _table()
    patterns = augment_patterns(table, [0, 1, 0], GRID, CU_KA, settings, np.random.default_rng(6))
    outside = (GRID.values < 12.34) | (GRID.values > 61.7)
    assert np.all(patterns[:, outside] == 0)
    inside = (GRID.values >= 12.34) & (GRID.values <= 61.7 - PARAMS["step_deg"][1])
    # Inside, only noise on the lowest background leaves a few points at 0.
    assert (patterns[:, inside] > 0).mean() > 0.9
    assert np.allclose(patterns.max(axis=1), 1)


def test_truncated_scans_start_and_end_in_their_ranges_and_keep_what_lies_between():
    table, rng = _table(), np.random.default_rng
    full = augment_patterns(table, [0] * 20, GRID, CU_KA, _settings(background=0.2), rng(7))
    settings = _settings(background=0.2, scan_start_deg=[12, 15], scan_end_deg=[60, 70])
    cut = augment_patterns(table, [0] * 20, GRID, CU_KA, settings, rng(7))
    for whole, scan in zip(full, cut, strict=True):
        covered = np.flatnonzero(scan)
        first, last = GRID.values[covered[0]], GRID.values[covered[-1]]
        assert 12 <= first <= 15 + GRID.step and 60 - GRID.step <= last <= 70
        between = slice(covered[0], covered[-1] + 1)
        # (The whole pattern's lowest point is 0 after normalisation; the scan's is outside.)
        assert np.all(scan[between][whole[between] > 0] > 0)


@pytest.mark.parametrize("peak_counts", [200.0, 5000.0])
def test_counting_noise_is_poisson(peak_counts):
    # Half a row at the highest point, half at a quarter of it: whole counts, mean and variance
    # peak_counts and peak_counts / 4.
    rows = np.concatenate([np.full((2, 20000), 1.0), np.full((2, 20000), 0.25)], axis=1)
    noisy = counting_noise(rows, np.full(2, peak_counts), np.random.default_rng(0))
    counts = noisy * peak_counts
    assert np.allclose(counts, np.rint(counts))
    for level, part in ((1.0, counts[:, :20000]), (0.25, counts[:, 20000:])):
        assert part.mean() == pytest.approx(level * peak_counts, rel=0.01)
        assert part.var() == pytest.approx(level * peak_counts, rel=0.05)


def test_detector_noise_is_gaussian_of_a_fraction_of_the_highest_point_and_never_negative():
    rows = np.full((2, 40000), 0.5)
    rows[:, 0] = 2.0
    noisy = detector_noise(rows, np.array([0.01, 0.02]), np.random.default_rng(0))
    for row, sd in ((0, 0.02), (1, 0.04)):
        assert (noisy[row, 1:] - 0.5).std() == pytest.approx(sd, rel=0.02)
        assert noisy[row, 1:].mean() == pytest.approx(0.5, abs=3 * sd / 200)
    # Where noise would take the intensity below 0 it is 0.
    low = detector_noise(np.eye(1, 100), np.array([0.5]), np.random.default_rng(0))
    assert low.min() == 0 and (low == 0).sum() > 30


def test_intensity_jitter_off_changes_nothing_and_on_has_the_lognormal_spread():
    table, rng = _table(), np.random.default_rng
    off = augment_patterns(table, [0, 1], GRID, CU_KA, _settings(intensity_jitter=None), rng(8))
    zero = augment_patterns(table, [0, 1], GRID, CU_KA, _settings(intensity_jitter=0), rng(8))
    assert np.array_equal(off, zero)
    # σ = 0.3 for the log of each peak's factor: the log of the ratio of two peaks' areas has
    # standard deviation √2 σ.
    two_peaks = _one_peak_table(30.0, 60.0)
    jittered = augment_patterns(
        two_peaks, [0] * 600, GRID, CU_KA, _settings(intensity_jitter=0.3), rng(9)
    )
    log_ratio = np.log([_area(p, 60.0, 1) / _area(p, 30.0, 1) for p in jittered])
    assert log_ratio.std() == pytest.approx(math.sqrt(2) * 0.3, rel=0.1)
    assert abs(log_ratio.mean()) < 0.05


# Each part at a value that changes (next to) nothing, for the test below; step_deg equal to
# the grid's step is no change only on a scan that starts at the grid's first point, and it
# counts one point more than the grid has, so detector noise draws differently.
NO_CHANGE = [
    ("march_dollase_r", 1.0, {}),
    ("crystallite_nm", 1e12, {}),
    ("strain", 1e-12, {}),
    ("zero_offset_deg", 1e-12, {}),
    ("background", 1e-12, {}),
    ("ka2_ratio", 1e-12, {}),
    ("displacement_mm", 1e-12, {}),
    ("scan_start_deg", GRID.start, {}),
    ("scan_end_deg", GRID.stop, {}),
    ("step_deg", GRID.step, {"scan_start_deg": None, "detector_noise": None}),
    ("detector_noise", 1e-12, {}),
    ("intensity_jitter", 1e-12, {}),
    ("film_probability", 1e-12, {}),
    ("impurity_peaks", 1e-12, {}),
    ("amorphous_hump", 1e-12, {}),
    ("debye_waller_b_angstrom2", 1e-12, {}),
]


@pytest.mark.parametrize(("part", "value", "change"), NO_CHANGE, ids=[c[0] for c in NO_CHANGE])
def test_switching_a_part_off_leaves_the_others_draws_unchanged(part, value, change):
    """Every other part on, a part off or at a value that changes nothing give the same
    patterns: each part draws from its own stream, so none of the others' draws moves.
    Without counting noise: a Poisson draw at zero intensity takes no random number, so its
    realisation depends on which points a part leaves at exactly 0."""
    table, rng = _table(), np.random.default_rng
    params = {**PARAMS, **change, "noise_counts": None}
    off = AugmentSettings.from_params({**params, part: None})
    on = AugmentSettings.from_params({**params, part: value})
    batch = [0, 1, 0, 1]
    assert np.allclose(
        augment_patterns(table, batch, GRID, CU_KA, off, rng(10)),
        augment_patterns(table, batch, GRID, CU_KA, on, rng(10)),
        atol=1e-6,
    )


def test_coarse_scan_counts_the_mean_over_each_step_and_comes_back_linearly():
    rng = np.random.default_rng(11)
    patterns = rng.random((2, GRID.size))
    # A step of 5 grid steps from the grid's first point: every point is the mean of the five
    # grid values centred on it (its range covers their bins exactly).
    starts, steps = np.full(2, GRID.start), np.full(2, 5 * GRID.step)
    scans = coarse_scan(patterns, GRID, starts, steps, GRID.size // 5 + 1)
    means = np.stack([np.convolve(row, np.ones(5) / 5, mode="same") for row in patterns])
    assert np.allclose(scans[:, 1:-1], means[:, 5:-5:5][:, : scans.shape[1] - 2])
    # Onto the grid as np.interp would, with points anywhere (start off the grid, 0.037 apart).
    starts, steps = np.array([10.013, 10.0]), np.array([0.037, 0.05])
    scans = rng.random((2, 2000))
    on_grid = scan_onto_grid(scans, GRID, starts, steps)
    for row in range(2):
        angles = starts[row] + steps[row] * np.arange(2000)
        assert np.allclose(on_grid[row], np.interp(GRID.values, angles, scans[row]))


def test_coarser_step_flattens_a_narrow_peak_and_keeps_its_area():
    table, rng = _one_peak_table(40.0), np.random.default_rng
    fine = augment_patterns(table, [0], GRID, CU_KA, _settings(instrument_fwhm_deg=0.06), rng(0))
    settings = _settings(instrument_fwhm_deg=0.06, step_deg=0.1, scan_start_deg=GRID.start)
    coarse = augment_patterns(table, [0], GRID, CU_KA, settings, rng(0))
    # Spread over its steps the coarse peak is wider, and piecewise linear between the scan's
    # points, every fifth grid point.
    assert _measured_fwhm(coarse[0]) > 1.5 * _measured_fwhm(fine[0])
    bends = np.flatnonzero(np.abs(np.diff(coarse[0], 2)) > 1e-6) + 1
    assert len(bends) and np.all(bends % 5 == 0)
    # Counting the mean over each step keeps the integrated intensity, and so does the linear
    # interpolation back (a trapezoid rule over the scan's points).
    starts, steps = np.array([10.013]), np.array([0.1])
    scan = coarse_scan(fine, GRID, starts, steps, 702)
    assert scan.sum() * 0.1 == pytest.approx(fine.sum() * GRID.step, rel=1e-6)
    assert scan_onto_grid(scan, GRID, starts, steps).sum() == pytest.approx(fine.sum(), rel=1e-6)


def test_amorphous_hump_is_broad_low_and_where_it_says():
    grid = TwoThetaGrid(0, 90, 0.02)
    table, rng = _one_peak_table(80.0), np.random.default_rng(12)
    settings = _settings(amorphous_hump=0.1)
    patterns = augment_patterns(table, [0] * 5, grid, CU_KA, settings, rng)
    low = grid.values < 60  # the hump only; the peak's own height is 1
    for pattern in patterns:
        hump = np.where(low, pattern, 0)
        assert hump.max() == pytest.approx(0.1, rel=1e-3)
        assert AMORPHOUS_CENTRE_DEG[0] <= grid.values[hump.argmax()] <= AMORPHOUS_CENTRE_DEG[1]
        half = grid.values[hump >= hump.max() / 2]
        assert AMORPHOUS_FWHM_DEG[0] - 0.05 <= half[-1] - half[0] <= AMORPHOUS_FWHM_DEG[1] + 0.05


def test_impurity_peaks_are_few_weak_and_somewhere():
    table, rng = _one_peak_table(75.0), np.random.default_rng(13)
    settings = _settings(impurity_peaks=0.05, instrument_fwhm_deg=0.1)
    patterns = augment_patterns(table, [0] * 40, GRID, CU_KA, settings, rng)
    others = patterns[:, GRID.values < 73]
    assert others.max() <= 0.05 * 1.001 and others.max() > 0.01
    # Local maxima away from the structure's own peak: at most MAX_IMPURITY_PEAKS a pattern.
    tops = (others[:, 1:-1] > others[:, :-2]) & (others[:, 1:-1] >= others[:, 2:])
    tops &= others[:, 1:-1] > 1e-4
    counts = tops.sum(axis=1)
    assert counts.max() <= MAX_IMPURITY_PEAKS and counts.min() == 0 and counts.max() > 0


def test_film_keeps_the_reflections_along_its_axis():
    """Cubic a = 4 Å, peaks {100}, {110}, {200}: a film along a <100> axis keeps {100} and
    {200} (two of six reflections each), along a <110> axis {110} (two of twelve), along <111>
    none of them (all scaled alike). {200} and {100} stay in their ratio in every film."""
    a = 4.0
    families = np.array([[1, 0, 0], [1, 1, 0], [2, 0, 0]])
    two_theta = 2 * np.degrees(np.arcsin(CU_KA * np.linalg.norm(families, axis=1) / (2 * a)))
    table = PeakTable.from_peaks(
        [Peaks(two_theta, np.array([100.0, 80.0, 30.0]), families)], [np.eye(3) / a]
    )
    axis_100 = film_factors(np.array([[0, 0, 1], [0, 0, -2], [1, 0, 0]]), np.eye(3) / a, [0, 0, 1])
    assert list(axis_100) == [1.0, 1.0, FILM_OTHERS]
    along = (2 + 4 * FILM_OTHERS) / 6, (2 + 10 * FILM_OTHERS) / 12
    expected_110_over_100 = {
        1.0,  # <111>: nothing along the axis
        FILM_OTHERS / along[0],  # <100>
        along[1] / FILM_OTHERS,  # <110>
    }
    settings = _settings(film_probability=1.0, instrument_fwhm_deg=0.1)
    patterns = augment_patterns(table, [0] * 60, GRID, CU_KA, settings, np.random.default_rng(14))
    plain = augment_patterns(table, [0], GRID, CU_KA, _settings(), np.random.default_rng(14))[0]

    def ratios(pattern):
        areas = [_area(pattern, angle, 0.5) for angle in two_theta]
        return areas[1] / areas[0], areas[2] / areas[0]

    plain_110, plain_200 = ratios(plain)
    seen = set()
    for pattern in patterns:
        r110, r200 = ratios(pattern)
        assert r200 == pytest.approx(plain_200, rel=1e-3)
        match = [e for e in expected_110_over_100 if r110 / plain_110 == pytest.approx(e, rel=1e-3)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == expected_110_over_100
