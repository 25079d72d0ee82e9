"""Peak positions from a powder profile (a measured scan or a simulated pattern).

Steps: the project's SNIP background; a counting-noise model (σ ∝ √counts, in any unit);
candidates where the second derivative, smoothed at two widths, has a significant minimum and
the smoothed profile a significant height, the noise σ of each smoothed profile measured on
it directly (robust spread of differences between points farther apart than its noise is
correlated, peaks left out, normalised by √counts), so that resampled or oversampled scans,
whose noise is correlated from point to point, are judged by their real noise; overlapping
candidates fitted together as pseudo-Voigt peaks on a linear local background, all groups at
once by a batched Levenberg-Marquardt; fits that fail, are insignificant, or are a far
stronger neighbour's profile misfit dropped.
For an anode's Kα or Kα1 wavelength every reflection is a Kα1 + Kα2 doublet (Kα2 at
sin θ2 = λ2/λ1 sin θ1, same width) when the scan shows one: the Kα2 share is fitted on the
resolved peaks first, so monochromated and Kα2-stripped scans are fitted as singlets. Each
reflection gives one Kα1 position, with its uncertainty from the fit's covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from xrdsym.errors import XrdsymError
from xrdsym.preprocessing import snip_backgrounds
from xrdsym.settings import settings_from_params
from xrdsym.wavelengths import WAVELENGTHS, kalpha2_ratio, nearest_anode

# Gaussian FWHM / σ.
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
FOUR_LN2 = 4 * math.log(2)
# Area of a unit-height Gaussian and Lorentzian of FWHM 1.
GAUSS_AREA = math.sqrt(math.pi / FOUR_LN2)
LORENTZ_AREA = math.pi / 2
# Robust σ of a normal sample from its median absolute value.
MAD_TO_SIGMA = 1.4826
# Variance of a second difference y[i-k] - 2 y[i] + y[i+k] of uncorrelated noise, in σ².
SECOND_DIFFERENCE_VARIANCE = 6.0
# The scan's own noise correlation (resampled, oversampled or interpolated data: a scan
# counted at 0.05 degrees and interpolated onto 0.02 has its noise correlated over ~5 points):
# the first lag k at which the spread (lower quartile of the absolute values, the less
# touched by peaks) of lag-k second differences of the raw profile grows by less than
# CORRELATION_GROWTH over lag k - 1 (white noise: 1), looked for up to MAX_CORRELATION_POINTS.
MAX_CORRELATION_POINTS = 12
CORRELATION_GROWTH = 1.05
CORRELATION_QUANTILE = 0.25
# A smoothed profile's noise is measured on differences of points this many smoothing σ apart
# (smoothed white noise is correlated as exp(-k² / 4σ²), 2 % at 4σ) plus twice the scan's own
# correlation length ...
NOISE_LAG_SMOOTHING_SIGMAS = 4.0
# ... leaving out points within that lag of a smoothed height over this many of its noise σ
# (peaks), the σ measured again with the peaks of the last estimate left out this many times
# (a 3 σ mask and 3 rounds bias the σ of pure noise low: noise reaches 6.1 σ of it).
NOISE_MASK_SIGNIFICANCE = 4.0
NOISE_MASK_ROUNDS = 2
# At least this share of the scan's differences measures the noise (else the last mask's).
NOISE_MIN_SHARE = 0.1
# Counts below this fraction of the profile's median are treated as the median's fraction in
# the noise model: a zero-count stretch (a stripped background) is not noise-free.
NOISE_FLOOR_OF_MEDIAN = 0.05
# Levenberg-Marquardt: iterations (a group from good starting values converges in 10-20; a
# weak spurious component may crawl on, and is dropped by the checks after the fit),
# damping to start with and its factor on a rejected / accepted step, and the relative change
# of the cost below which a group counts as converged (1e-7 of χ² moves a centre by far less
# than its σ: positions on the benchmark scans are the same as at 1e-9, in half the time).
MAX_ITERATIONS = 40
START_DAMPING = 1e-3
DAMPING_FACTOR = 4.0
CONVERGED_COST = 1e-7
# The same for the fit that measures the Kα2 share, which needs the share to a few percent
# only (it is compared with min_kalpha2_share, then fixed).
SHARE_CONVERGED_COST = 1e-4
# A group whose steps keep failing until the damping reaches this is at its minimum.
MAX_DAMPING = 1e4
# Detection smooths at these multiples of PeakSettings.smoothing_fwhm_deg: the narrowest
# peaks' width keeps shoulders apart, four times it finds broad peaks in noisy scans (a
# second derivative's noise falls as smoothing^-2.5).
SMOOTHING_SCALES = (1.0, 4.0)
# Two peaks of one width closer than this fraction of it show no dip between them (nor two
# separate curvature minima, except by noise): they are fitted as one.
UNRESOLVED_OF_FWHM = 0.5
# A pseudo-Voigt fits a real peak's profile to a few percent of its height: a fitted peak
# under this fraction of a neighbour's height, within one of its FWHMs, or within this many
# of them (a Lorentzian is still at 0.4 % of its height at 8) and this many times broader or
# narrower than it (peaks at nearby angles have nearly one width), is that misfit (or a
# simulated profile's cut-off tail: the augmentation cuts at 5 FWHMs), not a reflection.
TAIL_HEIGHT_RATIO = 0.03
TAIL_REACH = 8.0
TAIL_WIDTH_RATIO = 1.5
# Within that reach, a peak under this fraction of the neighbour's height is on the level of
# its tail's misfit whatever its width.
TAIL_FAINT_RATIO = 0.005
# A fitted peak under 1/SPIKE_WIDTH_RATIO of the median FWHM of the scan's clear peaks (at
# SPIKE_SIGNIFICANCE times the threshold, at least SPIKE_MIN_CLEAR of them) and not clear
# itself is noise on a broad peak's top or a spike: one phase's peaks differ in width by
# far less, and a sharp second phase shows clear peaks of its own.
SPIKE_WIDTH_RATIO = 3.0
SPIKE_SIGNIFICANCE = 3.0
SPIKE_MIN_CLEAR = 3
# Natural Kα2 / Kα1 intensity ratio of an unfiltered tube (1 : 2, as the 2p1/2 and 2p3/2
# levels hold 2 and 4 electrons), assumed when no peak resolves the doublet enough to measure.
NATURAL_KALPHA2_SHARE = 0.5
# A peak measures the Kα2 share when its doublet splits by at least this fraction of its FWHM
# (below, share and position trade off in the fit) and it stands at least this many times
# the detection threshold.
RESOLVED_SPLIT_OF_FWHM = 0.5
RESOLVED_SIGNIFICANCE = 3.0
# At most this many resolved peaks (those at the highest angles, split the most) measure the
# Kα2 share: enough for a precise share, a fraction of the scan's fitting time.
SHARE_PEAKS = 10
# A candidate at a stronger candidate's Kα2 position (within this fraction of its FWHM), and
# at most this fraction of its height, is that peak's Kα2 line, not a reflection.
GHOST_DISTANCE_OF_FWHM = 0.5
GHOST_MAX_HEIGHT = 0.8


@dataclass(frozen=True)
class PeakSettings:
    """Tolerances of :func:`find_peaks` (the ``peaks`` section of params.yaml)."""

    # Detection threshold in units of the noise σ of the smoothed profile: over 60 scans of
    # pure Poisson noise (4,500 points each, two smoothings) the highest false peak was 5.3 σ;
    # over 180 more, white and interpolated from steps of 0.03 and 0.05 degrees, 5.7 σ.
    min_significance: float = 6.0
    # In a noise-free profile, the threshold as a fraction of the highest peak: well below the
    # weak reflections an indexer uses, above the rounding of simulated intensities.
    min_relative_height: float = 1e-3
    # A candidate also needs a minimum of the smoothed second derivative this many of its own
    # noise σ deep: differentiating amplifies the noise, so a peak just over the height
    # threshold shows a curvature of only a few σ (rutile's 1 % peaks in the tests); noise
    # wiggles on a strong peak's flank that pass are merged into it (UNRESOLVED_OF_FWHM) or
    # fitted to nothing.
    min_curvature_significance: float = 3.0
    # SNIP's largest clipping window, degrees 2θ: wider than any Bragg peak (FWHM below 0.5
    # degrees), narrower than an amorphous hump (FWHM 5-15 degrees); as preprocessing's.
    background_window_deg: float = 3.0
    # FWHM of the Gaussian that smooths the profile for detection, degrees 2θ: the narrowest
    # laboratory Bragg peak (preprocessing.PEAK_WIDTH_DEG), so a peak keeps its height.
    smoothing_fwhm_deg: float = 0.05
    # Keep at most this many peaks (the strongest): an indexer uses the first 20-40 lines.
    max_peaks: int = 60
    # Peaks broader than this (degrees 2θ) are background (an amorphous hump), not Bragg peaks
    # (nanocrystalline peaks reach ~2 degrees; SNIP has taken most of anything broader).
    max_fwhm_deg: float = 2.0
    # Peaks narrower than this many steps are spikes (a cosmic ray, a bad pixel).
    min_fwhm_steps: float = 0.8
    # Each peak is fitted over its centre ± this many FWHMs (its Kα2 line's too): a Gaussian is
    # at 2e-11 there, a Lorentzian's remaining tail is taken by the linear background.
    window_fwhm: float = 3.0
    # At most this many peaks in one fitted group: a longer chain of overlaps is cut at its
    # widest gap (the neighbours' tails go to each part's background).
    max_group_peaks: int = 8
    # Below this fitted Kα2 / Kα1 intensity ratio a scan counts as monochromated or
    # Kα2-stripped and is fitted as singlets: the fitted share is within 0.01 of the rendered
    # one on the test scans (0, 0.1, 0.3, 0.5), and 0.16 to 0.67 (median 0.48) on 148 of the
    # 150 RRUFF development scans, the other two at 0.
    min_kalpha2_share: float = 0.1
    # Floor of the position uncertainty, in steps: the fit cannot place a peak better than a
    # small fraction of the sampling, whatever its covariance says.
    min_sigma_steps: float = 0.02

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> PeakSettings:
        """Settings from a params section whose keys are named like the fields (missing keys
        keep their defaults); an unknown key or a bad value raises ParamsError naming it."""
        return settings_from_params(cls, section, "peaks", zero_allowed={"min_relative_height"})


@dataclass(frozen=True)
class PeakList:
    """Fitted reflections of one scan, sorted by 2θ; arrays of one value per reflection."""

    two_theta: np.ndarray  # degrees, Kα1 position
    d_spacing: np.ndarray  # Å, from two_theta and wavelength
    intensity: np.ndarray  # integrated intensity above background, Kα1 line only
    fwhm: np.ndarray  # degrees
    sigma_two_theta: np.ndarray  # 1σ position uncertainty, degrees
    significance: np.ndarray  # smoothed Kα1 height over the smoothed noise σ
    wavelength: float  # Å the positions refer to (λ(Kα1) when kalpha2)
    kalpha2: bool  # whether the peaks were fitted as Kα1 + Kα2 doublets
    noise: float  # noise σ of one point at the background's median level, intensity units

    def __len__(self) -> int:
        return int(self.two_theta.size)

    def to_records(self) -> list[dict[str, float]]:
        """One plain-float dict per reflection, for JSON."""
        names = ("two_theta", "d_spacing", "intensity", "fwhm", "sigma_two_theta")
        columns = [getattr(self, name).tolist() for name in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


@dataclass(frozen=True)
class _Fit:
    """Fitted groups: per peak (flattened over groups) its parameters and 1σ of the centre."""

    centre: np.ndarray
    height: np.ndarray
    fwhm: np.ndarray
    eta: np.ndarray
    sigma_centre: np.ndarray
    share: np.ndarray  # the group's fitted Kα2 share (its fixed one when not fitted)
    sigma_share: np.ndarray
    inside: np.ndarray  # centre within the group's window


def find_peaks(
    two_theta_deg: np.ndarray,
    intensities: np.ndarray,
    wavelength_angstrom: float,
    settings: PeakSettings | None = None,
) -> PeakList:
    """Reflections of a powder profile: 2θ in degrees (increasing), intensities (counts or any
    unit), the wavelength in Å. Bad input raises XrdsymError; a scan with no significant peak
    gives an empty PeakList."""
    settings = settings or PeakSettings()
    x, y = _validated(two_theta_deg, intensities, wavelength_angstrom)
    step = float(np.median(np.diff(x)))
    half_window = max(1, round(settings.background_window_deg / 2 / step))
    background = snip_backgrounds(y[None], np.array([0]), np.array([y.size - 1]), half_window)[0]
    residual = y - background
    noise_scale, level, correlation = _noise_model(y)
    # SNIP follows the noise's lower envelope: heights count from the residual's local median,
    # and the counts expected without a peak are the background plus that median.
    offset = _running_median(residual, 2 * half_window + 1)
    # The noise's √counts dependence, up to a scale (the unit of the intensities).
    shape = np.sqrt(np.maximum(background + offset, level))
    point_sigma = noise_scale * shape
    noise = float(np.median(point_sigma))
    empty = _empty(wavelength_angstrom, noise)
    smoothing = [
        max(1.0, fwhm / step / FWHM_PER_SIGMA)
        for fwhm in settings.smoothing_fwhm_deg * np.array(SMOOTHING_SCALES)
    ]
    heights = [gaussian_filter1d(residual - offset, width, mode="nearest") for width in smoothing]
    curvatures = [
        gaussian_filter1d(residual - offset, width, order=2, mode="nearest") for width in smoothing
    ]
    # The noise that the smoothing and the second derivative let through, measured on them:
    # propagating a per-point σ assumes white noise, which resampled scans are not.
    lags = [math.ceil(NOISE_LAG_SMOOTHING_SIGMAS * width) + 2 * correlation for width in smoothing]
    noise_scales = _smoothed_noise(heights, curvatures, shape, lags)
    scales = [
        _Scale.of(*arrays, shape, noise_scale, width, settings)
        for arrays, noise_scale, width in zip(
            zip(heights, curvatures, strict=True), noise_scales, smoothing, strict=True
        )
    ]
    found = [(scale.candidates(), scale) for scale in scales]
    candidates = np.concatenate([index for index, _ in found])
    if candidates.size == 0:
        return empty
    fwhm_guess = np.concatenate([scale.fwhm_points(index) for index, scale in found]) * step
    height = np.concatenate([scale.height[index] for index, scale in found])
    fwhm_guess = np.clip(fwhm_guess, 2 * step, settings.max_fwhm_deg)
    order = np.argsort(candidates, kind="stable")
    candidates, fwhm_guess, height = candidates[order], fwhm_guess[order], height[order]
    strong = height >= RESOLVED_SIGNIFICANCE * scales[0].threshold[candidates]
    typical = float(np.median(fwhm_guess[strong] if strong.any() else fwhm_guess))
    distinct = _distinct(x[candidates], height, np.maximum(fwhm_guess, typical))
    candidates, fwhm_guess, height = candidates[distinct], fwhm_guess[distinct], height[distinct]
    # Relative weights 1/σ (the covariance is scaled by the fit's own χ²); uniform when the
    # profile has no noise.
    weights = point_sigma.min() / point_sigma if noise_scale > 0 else np.ones_like(y)

    ratio = kalpha2_ratio(wavelength_angstrom)

    def fit(centres: np.ndarray, fwhms: np.ndarray, share: float, free: bool) -> _Fit:
        return _fit_groups(x, y, weights, background, centres, fwhms, ratio, share, free, settings)

    share = 0.0
    if ratio is not None:
        doublet = ~_ghosts(x[candidates], height, fwhm_guess, ratio)
        strong = height[doublet] >= RESOLVED_SIGNIFICANCE * scales[0].threshold[candidates[doublet]]
        share = _kalpha2_share(
            x[candidates[doublet]], fwhm_guess[doublet], strong, ratio, settings.window_fwhm, fit
        )
        if share < settings.min_kalpha2_share:
            share = 0.0
        else:
            candidates, fwhm_guess = candidates[doublet], fwhm_guess[doublet]
    result = fit(x[candidates], fwhm_guess, share, False)
    keep = (
        result.inside
        & (result.height > 0)
        & (result.fwhm >= settings.min_fwhm_steps * step)
        & (result.fwhm <= settings.max_fwhm_deg)
        & np.isfinite(result.sigma_centre)
    )
    centre = result.centre
    where = np.clip(np.searchsorted(x, centre), 0, x.size - 1)
    seen = np.array([scale.seen(result.height, result.fwhm / step) for scale in scales])
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = np.max(seen / np.array([scale.sigma[where] for scale in scales]), axis=0)
    keep &= (significance >= settings.min_significance) & (
        seen[0] >= settings.min_relative_height * scales[0].height.max()
    )
    area = result.height * result.fwhm * (result.eta * LORENTZ_AREA + (1 - result.eta) * GAUSS_AREA)
    keep &= ~_tail_misfits(centre, result.height, result.fwhm)
    # Noise on a broad peak's top, or a spike: far narrower than the scan's clear peaks and
    # not clear itself.
    clear = keep & (significance >= SPIKE_SIGNIFICANCE * settings.min_significance)
    if clear.sum() >= SPIKE_MIN_CLEAR:
        narrow = result.fwhm < np.median(result.fwhm[clear]) / SPIKE_WIDTH_RATIO
        keep &= ~(narrow & ~clear)
    # Two starting points can end on one peak: keep the larger.
    order = np.flatnonzero(keep)
    order = order[np.argsort(centre[order])]
    width = np.maximum(result.fwhm[order], typical)
    order = order[_distinct(centre[order], area[order], width)]
    if order.size == 0:
        return empty
    order = order[np.argsort(-area[order], kind="stable")[: settings.max_peaks]]
    order = order[np.argsort(centre[order])]
    kalpha2 = share > 0
    anode = nearest_anode(wavelength_angstrom)
    wavelength = WAVELENGTHS[anode + "Ka1"] if kalpha2 and anode else wavelength_angstrom
    two_theta = centre[order]
    return PeakList(
        two_theta=two_theta,
        d_spacing=wavelength / (2 * np.sin(np.radians(two_theta) / 2)),
        intensity=area[order],
        fwhm=result.fwhm[order],
        sigma_two_theta=np.maximum(result.sigma_centre[order], settings.min_sigma_steps * step),
        significance=significance[order],
        wavelength=float(wavelength),
        kalpha2=bool(kalpha2),
        noise=noise,
    )


@dataclass(frozen=True)
class _Scale:
    """Detection at one smoothing: the Gaussian's σ in points, the smoothed background-free
    profile (height) and its second derivative, their noise σ and their thresholds."""

    sigma_points: float
    height: np.ndarray
    curvature: np.ndarray
    sigma: np.ndarray
    threshold: np.ndarray
    curvature_threshold: np.ndarray

    @classmethod
    def of(
        cls,
        height: np.ndarray,
        curvature: np.ndarray,
        shape: np.ndarray,
        noise_scales: tuple[float, float],
        sigma_points: float,
        settings: PeakSettings,
    ) -> _Scale:
        """The scale of a background-free profile smoothed by a Gaussian of ``sigma_points``
        (``height``) and its second derivative (``curvature``), whose noise σ are
        ``noise_scales`` times ``shape``."""
        height_scale, curvature_scale = noise_scales
        sigma = height_scale * shape
        curvature_sigma = curvature_scale * shape
        highest = max(float(height.max()), 0.0)
        return cls(
            sigma_points=sigma_points,
            height=height,
            curvature=curvature,
            sigma=sigma,
            threshold=np.maximum(
                settings.min_significance * sigma, settings.min_relative_height * highest
            ),
            curvature_threshold=np.maximum(
                settings.min_curvature_significance * curvature_sigma,
                settings.min_relative_height * max(-float(curvature.min()), 0.0),
            ),
        )

    def candidates(self) -> np.ndarray:
        """Indices where the second derivative has a local minimum, significantly below zero,
        and the profile is significantly high."""
        curvature = self.curvature
        inner = curvature[1:-1]
        index = np.flatnonzero((inner < curvature[:-2]) & (inner <= curvature[2:])) + 1
        significant = (-curvature[index] >= self.curvature_threshold[index]) & (
            self.height[index] >= self.threshold[index]
        )
        return index[significant & (self.height[index] > 0)]

    def fwhm_points(self, index: np.ndarray) -> np.ndarray:
        """FWHM in points of Gaussians with the smoothed heights and second derivatives at
        ``index``, the smoothing taken out: a Gaussian's σ² is height / |curvature|."""
        sigma_squared = self.height[index] / np.maximum(-self.curvature[index], 1e-300)
        return FWHM_PER_SIGMA * np.sqrt(np.maximum(sigma_squared - self.sigma_points**2, 1.0))

    def seen(self, peak_height: np.ndarray, fwhm_points: np.ndarray) -> np.ndarray:
        """Height after the smoothing of peaks of ``peak_height`` and FWHM (points), as for
        Gaussians."""
        smoothing = FWHM_PER_SIGMA * self.sigma_points
        return peak_height * fwhm_points / np.hypot(fwhm_points, smoothing)


def _validated(
    two_theta_deg: np.ndarray, intensities: np.ndarray, wavelength_angstrom: float
) -> tuple[np.ndarray, np.ndarray]:
    """The scan as float arrays, or an XrdsymError saying what is wrong with it."""
    try:
        x = np.asarray(two_theta_deg, dtype=float)
        y = np.asarray(intensities, dtype=float)
        wavelength = float(wavelength_angstrom)
    except (TypeError, ValueError) as exc:
        raise XrdsymError(f"peak search: not numbers ({exc})") from None
    if x.ndim != 1 or y.ndim != 1:
        raise XrdsymError("peak search: 2θ and intensities must be one-dimensional")
    if x.size != y.size:
        raise XrdsymError(f"peak search: {x.size} angles but {y.size} intensities")
    if x.size < 3:
        raise XrdsymError(f"peak search: {x.size} points, need at least 3")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise XrdsymError("peak search: NaN or infinite values in the scan")
    if not (np.diff(x) > 0).all():
        raise XrdsymError("peak search: 2θ must be strictly increasing")
    if x[0] <= 0 or x[-1] >= 180:
        raise XrdsymError(f"peak search: 2θ from {x[0]:g} to {x[-1]:g} degrees, not within 0-180")
    if not (math.isfinite(wavelength) and wavelength > 0):
        raise XrdsymError(f"peak search: wavelength must be positive, got {wavelength_angstrom}")
    return x, y


def _empty(wavelength_angstrom: float, noise: float) -> PeakList:
    """A PeakList with no reflection."""
    nothing = (np.empty(0) for _ in range(6))
    return PeakList(*nothing, wavelength=float(wavelength_angstrom), kalpha2=False, noise=noise)


def _noise_model(y: np.ndarray) -> tuple[float, float, int]:
    """Counting noise σ = scale √max(intensity, level): the scale from the robust spread of
    second differences y[i-k] - 2 y[i] + y[i+k] (blind to a linear background) over
    √(6 · local intensity), k the noise's correlation length in points (1 for white noise, see
    :func:`_correlation_points`), the floor level, and k. Poisson counts give scale 1 (in any
    unit: the scale takes the unit); a noise-free profile nearly 0."""
    local = gaussian_filter1d(y, 2.0, mode="nearest")
    level = max(NOISE_FLOOR_OF_MEDIAN * float(np.median(np.abs(local))), 1e-12 * np.abs(y).max())
    if level == 0:
        return 0.0, 1.0, 1
    counts = np.sqrt(np.maximum(local, level))
    lag = _correlation_points(y, counts)
    second = (y[: -2 * lag] - 2 * y[lag:-lag] + y[2 * lag :]) / counts[lag:-lag]
    spread = MAD_TO_SIGMA * float(np.median(np.abs(second)))
    return spread / math.sqrt(SECOND_DIFFERENCE_VARIANCE), level, lag


def _correlation_points(y: np.ndarray, counts: np.ndarray) -> int:
    """Over how many points the scan's noise is correlated (1 for white noise): the first lag
    k whose second differences y[i-k] - 2 y[i] + y[i+k], over ``counts`` (√ of the local
    intensity), spread less than CORRELATION_GROWTH times more than at lag k - 1 (the noise's
    share of their variance stops growing once k passes the correlation length)."""
    most = min(MAX_CORRELATION_POINTS, (y.size - 1) // 4)
    if most < 2:
        return 1
    spread = np.empty(most)
    for k in range(1, most + 1):
        second = (y[: -2 * k] - 2 * y[k:-k] + y[2 * k :]) / counts[k:-k]
        spread[k - 1] = np.quantile(np.abs(second), CORRELATION_QUANTILE)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = spread[1:] / spread[:-1]
    stalled = np.flatnonzero(~(growth >= CORRELATION_GROWTH))
    return int(stalled[0]) + 1 if stalled.size else most


def _smoothed_noise(
    heights: list[np.ndarray], curvatures: list[np.ndarray], shape: np.ndarray, lags: list[int]
) -> list[tuple[float, float]]:
    """Noise σ, over ``shape`` (the √counts dependence), of each smoothed profile (``heights``)
    and of its second derivative (``curvatures``): the robust spread of differences of points
    its ``lags`` apart (beyond the noise's correlation), leaving out the points within the lag
    of a peak (a height over NOISE_MASK_SIGNIFICANCE times the last estimate at any of the
    smoothings)."""
    size = shape.size
    lags = [max(1, min(lag, (size - 1) // 2)) for lag in lags]
    norms = [np.hypot(shape[lag:], shape[:-lag]) for lag in lags]
    steps = [
        (np.abs(height[lag:] - height[:-lag]) / norm, np.abs(curve[lag:] - curve[:-lag]) / norm)
        for height, curve, lag, norm in zip(heights, curvatures, lags, norms, strict=True)
    ]
    uses = [np.ones(size - lag, dtype=bool) for lag in lags]
    for round_ in range(NOISE_MASK_ROUNDS + 1):
        sigmas = [
            MAD_TO_SIGMA * float(np.median(height_steps[use]))
            for (height_steps, _), use in zip(steps, uses, strict=True)
        ]
        if round_ == NOISE_MASK_ROUNDS:
            break
        peak = np.zeros(size, dtype=bool)
        for height, sigma in zip(heights, sigmas, strict=True):
            if sigma > 0:
                peak |= height > NOISE_MASK_SIGNIFICANCE * sigma * shape
        for index, lag in enumerate(lags):
            near = maximum_filter1d(peak.view(np.uint8), 2 * lag + 1) > 0
            use = ~(near[lag:] | near[:-lag])
            enough = use.sum() >= max(1.0, NOISE_MIN_SHARE * use.size)
            uses[index] = use if enough else uses[index]
    # (Two uncorrelated points' difference has σ √(σ1² + σ2²): the norm takes it out.)
    return [
        (sigma, MAD_TO_SIGMA * float(np.median(curve_steps[use])))
        for sigma, (_, curve_steps), use in zip(sigmas, steps, uses, strict=True)
    ]


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    """Median over a window of ``width`` points, from medians of blocks of width / 4 points
    interpolated (a full running median over a 300-point window costs far more)."""
    block = max(1, width // 4)
    blocks = values.size // block
    if blocks < 2:
        return np.full_like(values, np.median(values))
    medians = np.median(values[: blocks * block].reshape(blocks, block), axis=1)
    spread = max(1, width // block)
    padded = np.pad(medians, spread // 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, spread)[:blocks]
    centres = (np.arange(blocks) + 0.5) * block
    return np.interp(np.arange(values.size), centres, np.median(windows, axis=1))


def _distinct(centre: np.ndarray, height: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Which candidates (sorted by centre) to keep: of two closer than UNRESOLVED_OF_FWHM of
    the broader's FWHM (noise on one peak's top), the higher. The caller floors the FWHMs at
    the scan's typical one, as noise makes narrow guesses."""
    keep = np.ones(centre.size, dtype=bool)
    while True:
        index = np.flatnonzero(keep)
        gap = np.diff(centre[index])
        close = gap < UNRESOLVED_OF_FWHM * np.maximum(fwhm[index[:-1]], fwhm[index[1:]])
        if not close.any():
            return keep
        pair = int(np.argmax(close))
        left, right = index[pair], index[pair + 1]
        keep[right if height[right] < height[left] else left] = False


def _tail_misfits(centre: np.ndarray, height: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Which fitted peaks are misfit of a far stronger neighbour (under TAIL_HEIGHT_RATIO of
    its height): within one of its FWHMs, or within TAIL_REACH of them and more than
    TAIL_WIDTH_RATIO times broader or narrower than it, or under TAIL_FAINT_RATIO of it."""
    distance = np.abs(centre[:, None] - centre[None, :]) / fwhm[None, :]
    weak = height[:, None] < TAIL_HEIGHT_RATIO * height[None, :]
    width_ratio = np.abs(np.log(fwhm[:, None] / fwhm[None, :]))
    unlike = width_ratio > math.log(TAIL_WIDTH_RATIO)
    faint = height[:, None] < TAIL_FAINT_RATIO * height[None, :]
    return (weak & ((distance < 1) | ((distance < TAIL_REACH) & (unlike | faint)))).any(axis=1)


def _kalpha2_two_theta(two_theta_deg: np.ndarray, ratio: float) -> np.ndarray:
    """Kα2 position (degrees) of Kα1 lines at ``two_theta_deg``: sin θ2 = ratio sin θ1."""
    sine = np.minimum(ratio * np.sin(np.radians(two_theta_deg) / 2), 1 - 1e-9)
    return 2 * np.degrees(np.arcsin(sine))


def _ghosts(centre: np.ndarray, height: np.ndarray, fwhm: np.ndarray, ratio: float) -> np.ndarray:
    """Which candidates sit at a stronger candidate's Kα2 position (its Kα2 line)."""
    kalpha2 = _kalpha2_two_theta(centre, ratio)
    near = np.abs(centre[None, :] - kalpha2[:, None]) < GHOST_DISTANCE_OF_FWHM * fwhm[:, None]
    weaker = height[None, :] <= GHOST_MAX_HEIGHT * height[:, None]
    return (near & weaker).any(axis=0)


def _kalpha2_share(
    centre: np.ndarray,
    fwhm: np.ndarray,
    strong: np.ndarray,
    ratio: float,
    window_fwhm: float,
    fit: Any,
) -> float:
    """The scan's Kα2 / Kα1 intensity ratio, fitted (weighted mean) on the ``strong``
    candidates (centre, FWHM in degrees, sorted by centre) whose doublet is resolved, fitted
    with the candidates overlapping them; NATURAL_KALPHA2_SHARE when none is resolved."""
    split = _kalpha2_two_theta(centre, ratio) - centre
    resolved = np.flatnonzero((split >= RESOLVED_SPLIT_OF_FWHM * fwhm) & strong)
    if resolved.size == 0:
        return NATURAL_KALPHA2_SHARE
    resolved = resolved[np.argsort(-centre[resolved])[:SHARE_PEAKS]]
    low = centre[resolved] - window_fwhm * fwhm[resolved]
    high = centre[resolved] + split[resolved] + window_fwhm * fwhm[resolved]
    nearby = ((centre[:, None] >= low) & (centre[:, None] <= high)).any(axis=1)
    result = fit(centre[nearby], fwhm[nearby], NATURAL_KALPHA2_SHARE, True)
    measured = np.isin(np.flatnonzero(nearby), resolved)
    share, sigma = result.share[measured], result.sigma_share[measured]
    good = np.isfinite(sigma) & (sigma > 0) & result.inside[measured]
    if not good.any():
        return NATURAL_KALPHA2_SHARE
    weight = 1 / sigma[good] ** 2
    return float(np.sum(weight * share[good]) / np.sum(weight))


def _groups(low: np.ndarray, high: np.ndarray, centre: np.ndarray, most: int) -> list[np.ndarray]:
    """Runs of consecutive peaks (sorted by centre) whose windows [low, high] overlap, runs of
    more than ``most`` cut at their widest gap between centres."""
    reach = np.maximum.accumulate(high)
    starts = np.flatnonzero(np.r_[True, low[1:] > reach[:-1]])
    pending = np.split(np.arange(centre.size), starts[1:])
    groups: list[np.ndarray] = []
    while pending:
        group = pending.pop()
        if group.size <= most:
            groups.append(group)
            continue
        cut = int(np.argmax(np.diff(centre[group]))) + 1
        pending += [group[:cut], group[cut:]]
    return sorted(groups, key=lambda group: int(group[0]))


def _fit_groups(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    background: np.ndarray,
    centres: np.ndarray,
    fwhms: np.ndarray,
    ratio: float | None,
    share: float,
    free: bool,
    settings: PeakSettings,
) -> _Fit:
    """Pseudo-Voigt peaks (Kα1 + ``share`` Kα2 when ``ratio`` and share > 0 or ``free``, the
    share then fitted per group) on a linear background, fitted to (x, y) with ``weights``
    (1/σ): groups of overlapping peaks, those of about one size (peaks up to the next power
    of two) fitted at once, so that few are padded."""
    doublet = ratio is not None and (share > 0 or free)
    line_ratio = ratio if doublet else 1.0
    reach = settings.window_fwhm * fwhms
    low = centres - reach
    high = (_kalpha2_two_theta(centres, line_ratio) if doublet else centres) + reach
    groups = _groups(low, high, centres, settings.max_group_peaks)
    buckets: dict[int, list[np.ndarray]] = {}
    for group in groups:
        buckets.setdefault(int(group.size - 1).bit_length(), []).append(group)
    columns = {name: np.empty(centres.size) for name in _Fit.__dataclass_fields__}
    columns["inside"] = np.zeros(centres.size, dtype=bool)
    for bucket in buckets.values():
        starts = (centres, fwhms, low, high)
        part = _fit_batch(x, y, weights, background, starts, share, free, line_ratio, bucket)
        index = np.sort(np.concatenate(bucket))
        for name in columns:
            columns[name][index] = getattr(part, name)
    return _Fit(**columns)


def _fit_batch(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    background: np.ndarray,
    starts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    share: float,
    free: bool,
    line_ratio: float,
    groups: list[np.ndarray],
) -> _Fit:
    """Levenberg-Marquardt on ``groups`` (indices into ``starts``: every peak's starting
    centre, FWHM and window's low and high end, degrees) all at once; Kα2 lines at
    ``line_ratio`` (1: none) with ``share`` (fitted when ``free``). The _Fit's rows follow the
    groups' peaks in increasing order."""
    doublet = line_ratio != 1.0
    centres, fwhms, low, high = starts
    converged = SHARE_CONVERGED_COST if free else CONVERGED_COST
    n_groups, most = len(groups), max(group.size for group in groups)
    first = np.array([np.searchsorted(x, low[group].min()) for group in groups])
    last = np.array([np.searchsorted(x, high[group].max(), side="right") for group in groups])
    # At least as many points as parameters and a few more, for the covariance.
    n_params = 4 + 3 * most
    short = np.maximum(n_params + 4 - (last - first), 0)
    first = np.maximum(first - (short + 1) // 2, 0)
    last = np.minimum(last + (short + 1) // 2, x.size)
    size = int((last - first).max())
    index = np.minimum(first[:, None] + np.arange(size), x.size - 1)
    used = np.arange(size) < (last - first)[:, None]
    mid = 0.5 * (x[first] + x[last - 1])
    u = x[index] - mid[:, None]
    data = y[index]
    weight = np.where(used, weights[index], 0.0)
    active = np.zeros((n_groups, most), dtype=bool)
    slots = np.zeros((n_groups, most), dtype=int)
    for row, group in enumerate(groups):
        active[row, : group.size] = True
        slots[row, : group.size] = group
    # Parameters per group: background level and slope, η, Kα2 share, then centres (relative to
    # the group's middle), heights and FWHMs of its peaks.
    theta = np.zeros((n_groups, n_params))
    slope = (background[last - 1] - background[first]) / np.maximum(x[last - 1] - x[first], 1e-12)
    theta[:, 0] = background[np.clip((first + last) // 2, 0, x.size - 1)]
    theta[:, 1] = slope
    theta[:, 2] = 0.5
    theta[:, 3] = share if doublet else 0.0
    peak_at = np.clip(np.searchsorted(x, centres), 0, x.size - 1)
    start_height = np.maximum(y[peak_at] - background[peak_at], 0) / (1 + theta[0, 3])
    theta[:, 4 : 4 + most] = np.where(active, centres[slots] - mid[:, None], 0.0)
    theta[:, 4 + most : 4 + 2 * most] = np.where(active, start_height[slots], 0.0)
    theta[:, 4 + 2 * most :] = np.where(active, fwhms[slots], 1.0)
    variable = np.zeros((n_groups, n_params), dtype=bool)
    variable[:, :3] = True
    variable[:, 3] = free and doublet
    variable[:, 4:] = np.tile(active, 3)

    points = (u + mid[:, None])[:, None, :]
    # Centres may leave their window by at most its width (to be rejected), never so far that
    # the Kα2 line's sine passes 1.
    span = x[last - 1] - x[first]

    def evaluate(params: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted residuals (groups x points) of the groups ``rows`` with parameters
        ``params`` (one row each), and their Jacobian (groups x points x parameters)."""
        n_rows = rows.size
        centre = params[:, 4 : 4 + most, None] + mid[rows, None, None]
        peak_height = np.where(active[rows], params[:, 4 + most : 4 + 2 * most], 0.0)[:, :, None]
        fwhm = params[:, 4 + 2 * most :, None]
        eta = params[:, 2, None, None]
        kalpha2_share = params[:, 3, None, None]
        lines = [(centre, np.ones_like(centre), 1.0)]
        if doublet:
            # Kα2 leaves the scan where λ2/λ1 sin θ1 reaches 1 (2θ1 above ~170 degrees).
            sine = np.minimum(line_ratio * np.sin(np.radians(centre) / 2), 1 - 1e-9)
            slope = line_ratio * np.cos(np.radians(centre) / 2) / np.sqrt(1 - sine**2)
            lines.append((2 * np.degrees(np.arcsin(sine)), slope, kalpha2_share))
        profile = np.zeros((n_rows, most, size))
        d_centre, d_fwhm, d_eta, second = (np.zeros_like(profile) for _ in range(4))
        # Per line: its centre, d(centre)/d(Kα1 centre) and its intensity share.
        for line, (line_centre, moves, line_share) in enumerate(lines):
            z = (points[rows] - line_centre) / fwhm
            lorentz = 1 / (1 + 4 * z**2)
            gauss = np.exp(-FOUR_LN2 * z**2)
            shape = eta * lorentz + (1 - eta) * gauss
            profile += line_share * shape
            slope_z = -8 * z * (eta * lorentz**2 + (1 - eta) * math.log(2) * gauss)
            d_centre -= line_share * slope_z * moves / fwhm
            d_fwhm -= line_share * slope_z * z / fwhm
            d_eta += line_share * (lorentz - gauss)
            if line:
                second = shape
        line = params[:, 0, None] + params[:, 1, None] * u[rows]
        residual = weight[rows] * (data[rows] - line - np.sum(peak_height * profile, axis=1))
        jac = np.empty((n_rows, size, n_params))
        jac[:, :, 0] = 1.0
        jac[:, :, 1] = u[rows]
        jac[:, :, 2] = np.sum(peak_height * d_eta, axis=1)
        jac[:, :, 3] = np.sum(peak_height * second, axis=1)
        jac[:, :, 4 : 4 + most] = (peak_height * d_centre).transpose(0, 2, 1)
        jac[:, :, 4 + most : 4 + 2 * most] = profile.transpose(0, 2, 1)
        jac[:, :, 4 + 2 * most :] = (peak_height * d_fwhm).transpose(0, 2, 1)
        return residual, -weight[rows, :, None] * jac * variable[rows, None, :]

    lower = np.r_[-np.inf, -np.inf, 0.0, 0.0]
    upper = np.r_[np.inf, np.inf, 1.0, 1.0]

    def bounded(params: np.ndarray, rows: np.ndarray) -> np.ndarray:
        params[:, :4] = np.clip(params[:, :4], lower, upper)
        params[:, 4 : 4 + most] = np.clip(
            params[:, 4 : 4 + most], -1.5 * span[rows, None], 1.5 * span[rows, None]
        )
        fwhm = params[:, 4 + 2 * most :]
        params[:, 4 + 2 * most :] = np.where(active[rows], np.maximum(np.abs(fwhm), 1e-6), 1.0)
        return params

    every = np.arange(n_groups)
    damping = np.full(n_groups, START_DAMPING)
    base, jac = evaluate(theta, every)
    cost = np.sum(base**2, axis=1)
    done = np.zeros(n_groups, dtype=bool)
    eye = np.eye(n_params)
    for _ in range(MAX_ITERATIONS):
        rows = np.flatnonzero(~done)
        if rows.size == 0:
            break
        free_rows = variable[rows]
        normal = np.matmul(jac[rows].transpose(0, 2, 1), jac[rows])
        gradient = np.matmul(jac[rows].transpose(0, 2, 1), base[rows, :, None])
        diagonal = np.where(free_rows, np.diagonal(normal, axis1=1, axis2=2), 0.0)
        diagonal = np.maximum(diagonal, 1e-12 * diagonal.max(axis=1, keepdims=True))
        damped = normal + eye * (diagonal * damping[rows, None] + ~free_rows)[:, None, :]
        try:
            step = np.linalg.solve(damped, -gradient)[:, :, 0] * free_rows
        except np.linalg.LinAlgError:  # a degenerate group (a lone spike): least squares
            step = np.matmul(np.linalg.pinv(damped), -gradient)[:, :, 0] * free_rows
        trial = bounded(theta[rows] + step, rows)
        trial_base, trial_jac = evaluate(trial, rows)
        trial_cost = np.sum(trial_base**2, axis=1)
        better = trial_cost < cost[rows]
        scale = np.maximum(cost[rows], 1e-300)
        gain = (cost[rows] - trial_cost) / scale
        # The gain the linearised model expects of the step: none left, whether or not the
        # step was taken, is a minimum (saves the rejected steps that grow the damping).
        expected = -(
            2 * np.sum(gradient[:, :, 0] * step, axis=1)
            + np.einsum("gp,gpq,gq->g", step, normal, step)
        )
        done[rows] = (
            (better & (gain < converged))
            | (expected / scale < converged)
            | (damping[rows] > MAX_DAMPING)
        )
        accepted = rows[better]
        theta[accepted] = trial[better]
        base[accepted] = trial_base[better]
        jac[accepted] = trial_jac[better]
        cost[accepted] = trial_cost[better]
        damping[rows] *= np.where(better, 1 / DAMPING_FACTOR, DAMPING_FACTOR)
    normal = np.matmul(jac.transpose(0, 2, 1), jac)
    normal += eye * ~variable[:, None, :]
    dof = np.maximum(used.sum(axis=1) - variable.sum(axis=1), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            covariance = np.linalg.inv(normal) * (cost / dof)[:, None, None]
        except np.linalg.LinAlgError:
            covariance = np.linalg.pinv(normal) * (cost / dof)[:, None, None]
        variance = np.diagonal(covariance, axis1=1, axis2=2)
        sigma = np.sqrt(np.where(variance >= 0, variance, np.nan))
    flat = active.ravel()
    centre = (theta[:, 4 : 4 + most] + mid[:, None]).ravel()[flat]
    window_low = np.repeat(x[first], most)[flat]
    window_high = np.repeat(x[last - 1], most)[flat]
    order = np.argsort(slots.ravel()[flat])
    return _Fit(
        centre=centre[order],
        height=theta[:, 4 + most : 4 + 2 * most].ravel()[flat][order],
        fwhm=theta[:, 4 + 2 * most :].ravel()[flat][order],
        eta=np.repeat(theta[:, 2], most)[flat][order],
        sigma_centre=sigma[:, 4 : 4 + most].ravel()[flat][order],
        share=np.repeat(theta[:, 3], most)[flat][order],
        sigma_share=np.repeat(sigma[:, 3], most)[flat][order],
        inside=((centre >= window_low) & (centre <= window_high))[order],
    )
