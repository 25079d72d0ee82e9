import json
import re
import warnings

import numpy as np
import pytest
from conftest import GRID
from pybaselines import Baseline

from xrdsym.augmentation import AugmentSettings, augment_patterns, peak_reflections
from xrdsym.diffraction import PeakTable, TwoThetaGrid, simulate_peaks
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.inputs import augmented_pattern_inputs
from xrdsym.measured import read_measured
from xrdsym.prediction import META_FILE, load_classifier, prepare_measured
from xrdsym.preprocessing import (
    COORDINATES,
    LOG_D_MIN_TWO_THETA_DEG,
    MIN_PEAK_SIGNIFICANCE,
    NO_PREPROCESSING,
    InputSettings,
    _bins,
    coordinate_axis,
    covered_span,
    model_inputs,
    peak_significance,
    resample_bins,
    snip_backgrounds,
    snip_half_window,
)

CU_KA = 1.54184
SNIP = InputSettings("snip", 3.0, 0.0)
FINE = TwoThetaGrid(0, 90, 0.02)
# No background removal or smoothing: the axis alone.
NONE_ON = {c: InputSettings("none", 3.0, 0.0, c) for c in COORDINATES}
# Measurement-like perturbations with a truncated scan, so that the pattern is zero outside it.
MEASURED_LIKE = AugmentSettings(
    instrument_fwhm_deg=(0.2, 0.3),
    background=(0.05, 0.2),
    amorphous_hump=(0.05, 0.1),
    noise_counts=(2000, 2000),
    detector_noise=(0.002, 0.002),
    ka2_ratio=(0.5, 0.5),
    scan_start_deg=(15, 20),
    scan_end_deg=(70, 80),
)


def _noisy_scans(n: int, grid: TwoThetaGrid, seed: int = 0) -> np.ndarray:
    """``n`` scans of narrow peaks on a sloping background and an amorphous hump, with
    counting noise, each zero outside a scan range of its own (n x grid.size float32)."""
    rng = np.random.default_rng(seed)
    x = grid.values
    scans = np.zeros((n, grid.size), dtype=np.float32)
    for row in scans:
        y = 0.05 + 0.02 * np.cos(x / 20) + 0.1 * np.exp(-(((x - 25) / 8) ** 2))
        for centre in rng.uniform(5, 88, 20):
            y += rng.uniform(0.05, 1) * np.exp(-0.5 * ((x - centre) / 0.05) ** 2)
        y = rng.poisson(y * 1000) / 1000
        start, stop = int(rng.uniform(5, 15) / grid.step), int(rng.uniform(60, 90) / grid.step)
        row[start : stop + 1] = y[start : stop + 1]
    scans[0] = 0.05 + np.random.default_rng(seed).random(grid.size)  # the whole grid covered
    return scans


def test_snip_is_pybaselines_snip_on_the_part_each_scan_covers():
    """The vectorised SNIP against the reference, pybaselines' own, row by row."""
    scans = _noisy_scans(6, FINE)
    scans[1, 1000:] = 0
    scans[1, 980:1000] = 0.3  # a part shorter than two windows: the window shrinks there
    first, last = covered_span(scans)
    half_window = snip_half_window(SNIP, FINE)
    assert half_window == 75
    backgrounds = snip_backgrounds(scans, first, last, half_window)
    for row, background, start, stop in zip(scans, backgrounds, first, last, strict=True):
        part = row[start : stop + 1].astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pybaselines warns when it shrinks the window
            reference, _ = Baseline().snip(
                part, max_half_window=half_window, decreasing=True, pad_kwargs={"mode": "edge"}
            )
        np.testing.assert_allclose(background[start : stop + 1], reference, atol=1e-6)


def test_zeros_outside_a_scan_stay_zero_and_its_background_goes_to_its_edges():
    x = FINE.values
    inside = (x >= 20) & (x <= 60)
    scan = np.where(inside, 0.3 + np.exp(-0.5 * ((x - 40) / 0.05) ** 2), 0.0)
    for settings in (SNIP, InputSettings("snip", 3.0, 2.0), InputSettings("none", 3.0, 2.0)):
        seen = model_inputs(scan, FINE, settings)
        assert seen.shape == scan.shape and seen.dtype == np.float32
        assert seen[~inside].max() == 0 and seen.max() == pytest.approx(1)
    # The flat background is gone right up to the scan's edges: the zeros outside do not
    # pull SNIP's background down there.
    seen = model_inputs(scan, FINE, SNIP)
    near_edges = inside & ((x < 21) | (x > 59))
    assert seen[near_edges].max() < 1e-6


def test_normalised_each_to_a_highest_point_of_one_and_empty_patterns_stay_empty():
    scans = _noisy_scans(4, FINE)
    scans[2] = 0
    seen = model_inputs(scans, FINE, SNIP)
    assert seen.min() == 0
    assert seen.max(axis=1).tolist() == [1, 1, 0, 1]
    # A pattern scaled to [0, 1] read without background removal is the pattern itself.
    stored = scans[3] / scans[3].max()
    np.testing.assert_array_equal(model_inputs(stored, FINE, NO_PREPROCESSING), stored)


def test_a_measured_scan_reads_as_the_same_scan_augmented_in_training(
    tmp_path, model_dir, rock_salt
):
    """Rock salt perturbed like a measurement at a fixed seed: written as a measured .xy scan
    and read back through predict's path (prepare_measured, then the classifier's transform)
    it is the model input training makes from the same draws (augmented_pattern_inputs)."""
    peaks = simulate_peaks(rock_salt, "CuKa", (GRID.start, GRID.stop))
    lattice = rock_salt.lattice.reciprocal_lattice_crystallographic.matrix
    table = PeakTable.from_peaks([peaks], [lattice])
    reflections = peak_reflections(table, CU_KA)
    settings = InputSettings("snip", 3.0, 1.0)

    training = augmented_pattern_inputs(
        np.array([0]),
        np.random.default_rng(11),
        table=table,
        grid=GRID,
        wavelength_angstrom=CU_KA,
        settings=MEASURED_LIKE,
        reflections=reflections,
        preprocess=settings,
    )[0, :, 0]

    scan = augment_patterns(
        table, [0], GRID, CU_KA, MEASURED_LIKE, np.random.default_rng(11), reflections
    )[0]
    first, last = covered_span(scan[np.newaxis])
    assert first[0] > 0 and last[0] < GRID.size - 1  # a truncated scan
    counts = 5000 * scan[first[0] : last[0] + 1]
    path = tmp_path / "rock_salt.xy"
    np.savetxt(
        path,
        np.column_stack([GRID.values[first[0] : last[0] + 1], counts]),
        fmt="%.4f %.6f",
        header=f"wavelength: {CU_KA}",
    )
    meta = json.loads((model_dir / META_FILE).read_text())
    meta["preprocessing"]["inputs"] = settings.to_json()
    (model_dir / META_FILE).write_text(json.dumps(meta))
    classifier = load_classifier(model_dir)
    (measured,) = read_measured(path)
    prepared = prepare_measured(measured, None, CU_KA, GRID, classifier.input_settings)
    seen = classifier.inputs(prepared.intensities)

    np.testing.assert_allclose(seen, training, atol=1e-5)
    assert seen[: first[0]].max() == seen[last[0] + 1 :].max() == 0 and seen.max() == 1


def test_settings_round_trip_through_json():
    settings = InputSettings.from_params(
        {
            "background": "none",
            "background_window_deg": 2,
            "smooth_points": 1.5,
            "coordinate": "log_d",
        }
    )
    assert settings == InputSettings("none", 2.0, 1.5, "log_d")
    assert InputSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings
    # A model from before the coordinate was recorded read 2θ.
    old = {"background": "snip", "background_window_deg": 3.0, "smooth_points": 0.0}
    assert InputSettings.from_json(old).coordinate == "two_theta"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"background": "rolling"}, "train.preprocess.background='rolling' is invalid"),
        ({"background_window_deg": 0}, "train.preprocess.background_window_deg=0 is invalid"),
        ({"background_window_deg": "3"}, "train.preprocess.background_window_deg='3'"),
        ({"smooth_points": -1}, "train.preprocess.smooth_points=-1 is invalid"),
        ({"smooth_points": True}, "train.preprocess.smooth_points=True is invalid"),
        ({"smooth_points": float("nan")}, "train.preprocess.smooth_points=nan is invalid"),
        ({"coordinate": "d"}, "train.preprocess.coordinate='d' is invalid: must be one of"),
    ],
)
def test_invalid_params_name_the_key(change, message):
    section = {
        "background": "snip",
        "background_window_deg": 3.0,
        "smooth_points": 0,
        "coordinate": "two_theta",
    } | change
    with pytest.raises(ParamsError, match=re.escape(message)):
        InputSettings.from_params(section)


def test_missing_param_and_bad_stored_settings_are_named():
    with pytest.raises(ParamsError, match=r"missing key 'train\.preprocess\.smooth_points'"):
        InputSettings.from_params({"background": "snip", "background_window_deg": 3.0})
    with pytest.raises(XrdsymError, match="smooth_points=-2 is invalid"):
        InputSettings.from_json(
            {"background": "snip", "background_window_deg": 3, "smooth_points": -2}
        )
    with pytest.raises(XrdsymError, match="need exactly background"):
        InputSettings.from_json({"background": "snip"})


def _bragg_two_theta(d_angstrom: np.ndarray, wavelength: float = 1.5406) -> np.ndarray:
    return 2 * np.degrees(np.arcsin(wavelength / (2 * d_angstrom)))


def _peaks_on(grid: TwoThetaGrid, centres: np.ndarray, fwhm_deg: float = 0.06) -> np.ndarray:
    sigma = fwhm_deg / 2.3548
    values = grid.values[:, None]
    return np.exp(-0.5 * ((values - centres) / sigma) ** 2).sum(axis=1)[None].astype(np.float32)


@pytest.mark.parametrize("coordinate", COORDINATES)
def test_a_peak_lands_where_the_axis_says_its_angle_is(coordinate):
    axis = coordinate_axis(FINE, coordinate)
    assert len(axis) == FINE.size and np.all(np.diff(axis) > 0)
    for centre in (12.0, 33.3, 71.0):
        seen = model_inputs(_peaks_on(FINE, np.array([centre])), FINE, NONE_ON[coordinate])[0]
        peak = int(np.argmax(seen))
        assert seen.max() == 1
        # Within one bin of the point whose angle is the peak's.
        assert axis[max(peak - 1, 0)] <= centre <= axis[min(peak + 1, FINE.size - 1)]


@pytest.mark.parametrize("coordinate", ["q", "sin2theta", "log_d"])
def test_bin_means_keep_the_integral_of_the_pattern(coordinate):
    """Narrow peaks anywhere (a comb, where the new axis is coarser than the grid too): the
    bins' means times their widths add up to the pattern's integral over the axis' range."""
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [
            rng.random((2, FINE.size)),
            _peaks_on(FINE, np.arange(6.0, 89.0, 0.7), fwhm_deg=0.03),
        ]
    )
    interval, fraction, step = _bins(FINE, coordinate)
    means = resample_bins(rows, interval, fraction, step)
    edges_deg = FINE.start + (interval + fraction) * step
    fine = np.linspace(edges_deg[0], edges_deg[-1], 400_001)
    for row, mean in zip(rows, means, strict=True):
        exact = np.trapezoid(np.interp(fine, FINE.values, row), fine)
        np.testing.assert_allclose((mean * np.diff(edges_deg)).sum(), exact, rtol=1e-5)


def test_on_the_log_d_axis_a_larger_lattice_is_a_shift():
    """Every d-spacing 1 % larger moves every peak by the same number of log-d points."""
    d_spacings = np.array([4.1, 3.2, 2.45, 1.9, 1.55, 1.3])
    settings = NONE_ON["log_d"]
    before = model_inputs(_peaks_on(FINE, _bragg_two_theta(d_spacings)), FINE, settings)[0]
    after = model_inputs(_peaks_on(FINE, _bragg_two_theta(d_spacings * 1.01)), FINE, settings)[0]
    # Expected: log(1.01) over the axis' spacing in log d, towards lower angles.
    low, high = (np.log(np.sin(np.radians(a) / 2)) for a in (LOG_D_MIN_TWO_THETA_DEG, 90.0))
    expected = np.log(1.01) / ((high - low) / (FINE.size - 1))
    lags = np.arange(-200, 1)
    correlation = [np.dot(np.roll(before, lag), after) for lag in lags]
    assert abs(-lags[int(np.argmax(correlation))] - expected) <= 1
    # Peak by peak too: each moved by that many points, within one.
    for centre in _bragg_two_theta(d_spacings):
        index_before = np.searchsorted(coordinate_axis(FINE, "log_d"), centre)
        window = slice(index_before - 120, index_before + 5)
        moved = index_before - 120 + int(np.argmax(after[window]))
        assert abs((index_before - moved) - expected) <= 1.5


@pytest.mark.parametrize("coordinate", ["q", "log_d"])
def test_a_truncated_scan_stays_zero_outside_on_any_axis(coordinate):
    # Peaks on a small flat level, from 20 to 60 degrees only.
    rows = _peaks_on(FINE, np.array([25.0, 40.0, 55.0])) + 0.01
    rows[:, : int(20 / FINE.step)] = 0
    rows[:, int(60 / FINE.step) :] = 0
    axis = coordinate_axis(FINE, coordinate)
    seen = model_inputs(rows, FINE, NONE_ON[coordinate])[0]
    # A bin that straddles an end of the scan takes part of it; beyond, nothing.
    outside = (axis < 20 - 0.1) | (axis > 60 + 0.1)
    assert seen[outside].max() == 0 and seen.max() == 1
    assert seen[(axis > 21) & (axis < 59)].min() > 0


def test_the_two_theta_axis_is_the_transform_as_before():
    rows = np.random.default_rng(3).random((4, FINE.size)).astype(np.float32)
    assert np.array_equal(
        model_inputs(rows, FINE, InputSettings("snip", 3.0, 0.0, "two_theta")),
        model_inputs(rows, FINE, InputSettings("snip", 3.0, 0.0)),
    )
    np.testing.assert_array_equal(coordinate_axis(FINE, "two_theta"), FINE.values)


def test_peak_significance_tells_pure_noise_from_a_weak_peak():
    """Poisson noise at any level stays below MIN_PEAK_SIGNIFICANCE, on a flat or a sloping
    background; one narrow peak of 2,000 counts over about 14,000 (17 σ of one point) stands
    out, as does any peak without noise."""
    rng = np.random.default_rng(1)
    two_theta = np.arange(5, 90, 0.01)
    for level in (3, 100, 10_000):
        for _ in range(5):
            counts = rng.poisson(level, two_theta.size)
            assert peak_significance(two_theta, counts, 3.0) < MIN_PEAK_SIGNIFICANCE
    peak = 2_000 * np.exp(-4 * np.log(2) * ((two_theta - 40) / 0.1) ** 2)
    background = 10_000 + 100 * (two_theta - 5)
    assert peak_significance(two_theta, background + peak, 3.0) > 100 * MIN_PEAK_SIGNIFICANCE
    noisy = rng.poisson(background + peak)
    assert peak_significance(two_theta, noisy, 3.0) > 2 * MIN_PEAK_SIGNIFICANCE
    assert peak_significance(two_theta, rng.poisson(background), 3.0) < MIN_PEAK_SIGNIFICANCE
