"""The one transform every 1D model input goes through: background, smoothing, normalisation.

:func:`model_inputs` turns patterns on the model's 2θ grid into what a 1D model reads,
wherever they come from: the stored or augmented training patterns, the validation split,
evaluation's test split, measured scans and simulated structures in ``predict``. In order:

1. background: SNIP (Ryan et al. 1988) with clipping windows from ``background_window_deg``
   down to one grid point, on the part of each pattern its scan covers (from its first to its
   last non-zero point), edges padded with the edge value; or none;
2. smoothing: a Gaussian of ``smooth_points`` grid points (0: none);
3. clipped at 0, zero outside the covered part;
4. the input axis (``coordinate``): the 2θ grid itself, or the same number of points evenly
   spaced in Q (∝ sin θ), in sin²θ, or in log d (= log λ/2 − log sin θ: on it a uniform
   change of the lattice's size is a pure shift, which a convolution handles as it handles
   any shift), each point the mean of the piecewise-linear pattern over its bin (so narrow
   peaks are not lost where the new axis is coarser than the grid); the log-d axis starts at
   LOG_D_MIN_TWO_THETA_DEG (d is infinite at 2θ = 0);
5. each pattern scaled to a highest point of 1 (a pattern with nothing left stays all zero).

The train stage records the :class:`InputSettings` in the model directory, so ``predict``
applies them by itself. Pure numpy and scipy: no pybaselines (whose SNIP is the reference the
tests compare :func:`snip_backgrounds` with) and no pandas or pymatgen at import.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from numbers import Real
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from xrdsym.diffraction import TwoThetaGrid
from xrdsym.errors import ParamsError, XrdsymError

# The narrowest Bragg peaks measured (FWHM, degrees 2θ; see params train.augment): what
# peak_significance averages over.
PEAK_WIDTH_DEG = 0.05
# Below this peak_significance no peak stands out of the noise (tests: pure Poisson noise).
MIN_PEAK_SIGNIFICANCE = 10.0
BACKGROUNDS = ("snip", "none")
# Axes the model may read patterns on (see the module docstring, step 4).
COORDINATES = ("two_theta", "q", "sin2theta", "log_d")
# Lowest angle of the log-d axis, degrees 2θ: d = 17.7 Å at Cu Kα; training scans start at
# 5-15 degrees.
LOG_D_MIN_TWO_THETA_DEG = 5.0
# Width in degrees 2θ of SNIP's largest clipping window: wider than any Bragg peak, narrower
# than the slow swell of an amorphous or air-scatter background.
SNIP_WINDOW_DEG = 3.0
# Rows transformed at once: bounds the memory of the padded copies (rows x (points + 2
# windows) float32, a few of them) when a whole split goes through, and keeps each pass
# inside the CPU caches' reach for a training batch.
CHUNK_ROWS = 256


@dataclass(frozen=True)
class InputSettings:
    """How patterns on the grid become model inputs (see the module docstring).

    Attributes:
        background: "snip" (remove it) or "none".
        background_window_deg: width of SNIP's largest clipping window, degrees 2θ.
        smooth_points: σ of the Gaussian smoothing, in grid points (0: none).
        coordinate: the input axis, one of COORDINATES.
    """

    background: str
    background_window_deg: float
    smooth_points: float
    # Models from before the choice existed recorded no coordinate: they read 2θ.
    coordinate: str = "two_theta"

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> InputSettings:
        """Settings from the params section ``train.preprocess``; ParamsError naming the first
        missing or invalid key."""
        values = {}
        for name in (field.name for field in fields(cls)):
            if name not in section:
                raise ParamsError(f"params.yaml: missing key 'train.preprocess.{name}'")
            why = _why_invalid(name, section[name])
            if why:
                raise ParamsError(
                    f"params.yaml: train.preprocess.{name}={section[name]!r} is invalid: {why}"
                )
            values[name] = section[name]
        return cls(
            values["background"],
            float(values["background_window_deg"]),
            float(values["smooth_points"]),
            values["coordinate"],
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (what model.json records)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSettings:
        """Settings from :meth:`to_json`'s object (one without ``coordinate``, from before
        it existed, reads 2θ); XrdsymError if it is not one."""
        names = [field.name for field in fields(cls)]
        if isinstance(data, dict) and "coordinate" not in data:
            data = data | {"coordinate": "two_theta"}
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise XrdsymError(f"model input settings {data!r}: need exactly {', '.join(names)}")
        for name in names:
            why = _why_invalid(name, data[name])
            if why:
                raise XrdsymError(f"model input settings: {name}={data[name]!r} is invalid: {why}")
        return cls(**data)


def _why_invalid(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the setting ``name``, or None."""
    if name == "background":
        return None if value in BACKGROUNDS else f"must be one of {', '.join(BACKGROUNDS)}"
    if name == "coordinate":
        return None if value in COORDINATES else f"must be one of {', '.join(COORDINATES)}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return "must be a finite number"
    if name == "background_window_deg" and value <= 0:
        return "must be > 0"
    if name == "smooth_points" and value < 0:
        return "must be >= 0 (0: no smoothing)"
    return None


# What a model that records no input settings (a 1D model from before they were recorded,
# such as the shipped one, or an image model) was trained on: the stored patterns as they are.
NO_PREPROCESSING = InputSettings("none", SNIP_WINDOW_DEG, 0.0)
# What `predict` did to a measured scan for such a model: SNIP, no smoothing.
MEASURED_DEFAULT = InputSettings("snip", SNIP_WINDOW_DEG, 0.0)


def snip_half_window(settings: InputSettings, grid: TwoThetaGrid) -> int:
    """SNIP's largest half window in grid points: half ``background_window_deg``, at least 1."""
    return max(1, round(settings.background_window_deg / 2 / grid.step))


def covered_span(patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first and of the last non-zero point of each row (N x points); a row of
    zeros gives first > last."""
    nonzero = patterns != 0
    size = patterns.shape[1]
    first = np.where(nonzero.any(axis=1), np.argmax(nonzero, axis=1), size)
    last = size - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    return first, last


def snip_backgrounds(
    patterns: np.ndarray, first: np.ndarray, last: np.ndarray, half_window: int
) -> np.ndarray:
    """SNIP background of each row of ``patterns`` (N x points) over its part from index
    ``first`` to ``last``, all rows at once: what pybaselines' ``snip(row[first:last + 1],
    half_window, decreasing=True, pad_kwargs={"mode": "edge"})`` gives, windows limited to
    (length - 1) // 2 for a short part as there. Outside the part it is the pattern itself."""
    n, size = patterns.shape
    lengths = np.maximum(last - first + 1, 1)
    windows = np.minimum(half_window, (lengths - 1) // 2)[:, None]
    columns = np.arange(-half_window, size + half_window)
    clipped = np.clip(columns, first[:, None], np.maximum(first, last)[:, None])
    padded = np.take_along_axis(patterns, np.minimum(clipped, size - 1), axis=1)
    # How far each column lies inside its row's padded part (the part and one window each
    # side): clipping at window i reaches i columns either way, so only columns at least i
    # inside (and windows of at most the row's own) are clipped.
    inside = columns - (first[:, None] - windows)
    reach = np.minimum(np.minimum(inside, (lengths[:, None] + 2 * windows - 1) - inside), windows)
    # As small integers (-1 for every column outside), the mask of each pass reads faster.
    reach = np.maximum(reach, -1).astype(np.int16)
    mean = np.empty((n, size + 2 * half_window), dtype=padded.dtype)
    for i in range(half_window, 0, -1):
        width = size + 2 * (half_window - i)
        np.add(padded[:, :width], padded[:, 2 * i : 2 * i + width], out=mean[:, :width])
        mean[:, :width] *= 0.5
        centre = padded[:, i : i + width]
        np.minimum(centre, mean[:, :width], out=mean[:, :width])
        np.copyto(centre, mean[:, :width], where=reach[:, i : i + width] >= i)
    return padded[:, half_window : half_window + size]


def peak_significance(
    two_theta_deg: np.ndarray, intensities: np.ndarray, background_window_deg: float
) -> float:
    """How far a scan's strongest peak stands above its SNIP background, in units of the
    scan's own noise: the highest point of the background-free scan, averaged over the width
    of the narrowest Bragg peak (PEAK_WIDTH_DEG, so that a peak keeps its height and noise
    averages down), over the noise of such an average (robust σ of the point-to-point
    differences, / √2 for two points, / √points averaged), measured from the median of the
    averaged scan. Pure Poisson noise stays below MIN_PEAK_SIGNIFICANCE (the tests), the
    measured development scans are at 11.9 and more (``bench/measured_accuracy.py``:
    lowest_peak_significance); an amorphous hump too
    curved for SNIP's window counts as a peak. Infinite when most point-to-point differences
    are zero (no noise)."""
    two_theta = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(intensities, dtype=float)
    step = float(np.median(np.diff(two_theta)))
    half_window = max(1, round(background_window_deg / 2 / step))
    last = np.array([counts.size - 1])
    background = snip_backgrounds(counts[None], np.array([0]), last, half_window)[0]
    points = max(1, round(PEAK_WIDTH_DEG / step))
    averaged = np.convolve(counts - background, np.ones(points) / points, mode="valid")
    noise = 1.4826 * float(np.median(np.abs(np.diff(counts)))) / math.sqrt(2 * points)
    # SNIP's background follows the noise's lower envelope: measured from the residual's
    # median, pure noise is a few σ, not the envelope's offset grown by the averaging.
    height = float(averaged.max() - np.median(averaged))
    if noise == 0:
        return math.inf if height > 0 else 0.0
    return height / noise


def model_inputs(
    intensities: np.ndarray, grid: TwoThetaGrid, settings: InputSettings
) -> np.ndarray:
    """What a 1D model reads from patterns on ``grid`` (N x grid.size, or one pattern): the
    module docstring's steps, float32 in [0, 1], the same shape."""
    patterns = np.asarray(intensities, dtype=np.float32)
    if patterns.shape[-1] != grid.size:
        raise ValueError(f"patterns of {patterns.shape[-1]} points for a grid of {grid.size}")
    rows = patterns.reshape(-1, grid.size)
    out = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = slice(start, start + CHUNK_ROWS)
        out[chunk] = _transform(rows[chunk], grid, settings)
    return out.reshape(patterns.shape)


def _transform(patterns: np.ndarray, grid: TwoThetaGrid, settings: InputSettings) -> np.ndarray:
    """:func:`model_inputs` of rows (N x points float32)."""
    first, last = covered_span(patterns)
    index = np.arange(grid.size)
    covered = (index >= first[:, None]) & (index <= last[:, None])
    if settings.background == "snip":
        patterns = patterns - snip_backgrounds(
            patterns, first, last, snip_half_window(settings, grid)
        )
    if settings.smooth_points > 0:
        patterns = gaussian_filter1d(patterns, settings.smooth_points, axis=1, mode="constant")
    patterns = np.where(covered, np.maximum(patterns, 0), 0).astype(np.float32)
    if settings.coordinate != "two_theta":
        patterns = resample_bins(patterns, *_bins(grid, settings.coordinate))
    highest = patterns.max(axis=1, keepdims=True)
    return np.divide(patterns, highest, out=np.zeros_like(patterns), where=highest > 0)


def _axis_value(two_theta_deg: np.ndarray, coordinate: str) -> np.ndarray:
    """The coordinate of angles 2θ (degrees), up to a constant factor or offset: sin θ for Q,
    sin²θ, log sin θ for log d (increasing with 2θ, as d decreases)."""
    sine = np.sin(np.radians(two_theta_deg) / 2)
    if coordinate == "q":
        return sine
    if coordinate == "sin2theta":
        return sine**2
    return np.log(sine)


def _two_theta_of(value: np.ndarray, coordinate: str) -> np.ndarray:
    """The inverse of :func:`_axis_value`: angles 2θ in degrees."""
    if coordinate == "q":
        sine = value
    elif coordinate == "sin2theta":
        sine = np.sqrt(np.maximum(value, 0))
    else:
        sine = np.exp(value)
    return 2 * np.degrees(np.arcsin(np.clip(sine, 0, 1)))


def _axis_range(grid: TwoThetaGrid, coordinate: str) -> tuple[float, float]:
    low = max(grid.start, LOG_D_MIN_TWO_THETA_DEG) if coordinate == "log_d" else grid.start
    high = grid.values[-1]
    if not low < high:
        raise XrdsymError(
            f"coordinate {coordinate}: the grid {grid.start:g}-{grid.stop:g} degrees leaves "
            f"no range (log d starts at {LOG_D_MIN_TWO_THETA_DEG:g} degrees)"
        )
    return low, high


def coordinate_axis(grid: TwoThetaGrid, coordinate: str) -> np.ndarray:
    """The angle 2θ (degrees) of each of the grid.size points of the ``coordinate`` axis:
    evenly spaced in that coordinate over the grid's range (log d from
    LOG_D_MIN_TWO_THETA_DEG). For two_theta, the grid's own values."""
    if coordinate == "two_theta":
        return grid.values
    low, high = (_axis_value(np.array(a), coordinate) for a in _axis_range(grid, coordinate))
    return _two_theta_of(np.linspace(low, high, grid.size), coordinate)


@functools.lru_cache(maxsize=16)
def _bins(grid: TwoThetaGrid, coordinate: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The bins of the ``coordinate`` axis's points on the 2θ grid: for every bin edge
    (midway between points in the coordinate, the ends at the axis' ends) the grid interval
    it falls in and its fraction of a step there; and the grid step."""
    low, high = (_axis_value(np.array(a), coordinate) for a in _axis_range(grid, coordinate))
    centres = np.linspace(low, high, grid.size)
    edges = np.concatenate([[low], (centres[:-1] + centres[1:]) / 2, [high]])
    position = (_two_theta_of(edges, coordinate) - grid.start) / grid.step
    position = np.clip(position, 0, grid.size - 1)
    interval = np.minimum(np.floor(position).astype(np.int64), grid.size - 2)
    return interval, position - interval, grid.step


def resample_bins(
    patterns: np.ndarray, interval: np.ndarray, fraction: np.ndarray, step: float
) -> np.ndarray:
    """Mean of each row's piecewise-linear pattern (N x points on an even grid ``step``
    apart) over every bin, the bins given by their edges' grid interval and fraction of a
    step (see :func:`_bins`): the difference of the cumulative integral at the edges over
    the bin's width. All rows at once."""
    rows = np.asarray(patterns, dtype=np.float64)
    # Integral from the first grid point to each grid point (trapezoids are exact for a
    # piecewise-linear pattern), then to each edge inside its interval.
    cumulative = np.zeros_like(rows)
    np.cumsum((rows[:, 1:] + rows[:, :-1]) * (step / 2), axis=1, out=cumulative[:, 1:])
    left, right = rows[:, interval], rows[:, interval + 1]
    at_edges = cumulative[:, interval] + step * (fraction * left + fraction**2 / 2 * (right - left))
    widths = np.diff((interval + fraction) * step)
    return (np.diff(at_edges, axis=1) / np.maximum(widths, 1e-12)).astype(np.float32)
