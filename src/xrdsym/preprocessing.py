"""The one transform every 1D model input goes through: background, smoothing, normalisation.

:func:`model_inputs` turns patterns on the model's 2θ grid into what a 1D model reads,
wherever they come from: the stored or augmented training patterns, the validation split,
evaluation's test split, measured scans and simulated structures in ``predict``. In order:

1. background: SNIP (Ryan et al. 1988) with clipping windows from ``background_window_deg``
   down to one grid point, on the part of each pattern its scan covers (from its first to its
   last non-zero point), edges padded with the edge value; or none;
2. smoothing: a Gaussian of ``smooth_points`` grid points (0: none);
3. clipped at 0, zero outside the covered part, each pattern scaled to a highest point of 1
   (a pattern with nothing left stays all zero).

The train stage records the :class:`InputSettings` in the model directory, so ``predict``
applies them by itself. Pure numpy and scipy: no pybaselines (whose SNIP is the reference the
tests compare :func:`snip_backgrounds` with) and no pandas or pymatgen at import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from numbers import Real
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from xrdsym.diffraction import TwoThetaGrid
from xrdsym.errors import ParamsError, XrdsymError

BACKGROUNDS = ("snip", "none")
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
    """

    background: str
    background_window_deg: float
    smooth_points: float

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
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON object (what model.json records)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSettings:
        """Settings from :meth:`to_json`'s object; XrdsymError if it is not one."""
        names = [field.name for field in fields(cls)]
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
    highest = patterns.max(axis=1, keepdims=True)
    return np.divide(patterns, highest, out=np.zeros_like(patterns), where=highest > 0)
