"""Physics-based augmentation: fresh, perturbed patterns made from stored peak lists.

A batch of peak lists becomes patterns the way different samples on different instruments
would have given them: preferred orientation (March-Dollase) reweights the peaks, lattice strain
and a 2θ zero offset move them, crystallite size (Scherrer) and the instrument broaden them into
profiles whose width follows 2θ, and a smooth background and counting noise are added. Every
quantity is drawn per pattern from a range; each part can be switched off. Pure numpy: all
randomness comes from the ``numpy.random.Generator`` passed in, so a seed reproduces a batch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from xrdsym.diffraction import PeakTable, TwoThetaGrid, gather_ranges, normalise
from xrdsym.errors import ParamsError

# Scherrer's shape factor K for the FWHM: 0.89 for spheres to 0.94 for cubes; 0.9 is the usual
# value when the crystallites' shape is not known.
SCHERRER_K = 0.9
PROFILES = ("gaussian", "pseudo_voigt")
# Thompson, Cox & Hastings (J. Appl. Cryst. 20, 79, 1987): FWHM and Lorentzian fraction of the
# pseudo-Voigt closest to the Voigt of a Gaussian and a Lorentzian (within 1 % in FWHM).
TCH_FWHM_COEFFICIENTS = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)
TCH_ETA_COEFFICIENTS = (1.36603, -0.47719, 0.11116)
# Half-width of the window each peak is evaluated over, in its FWHMs. A Gaussian is down to
# 3e-8 of its height at 2.5 FWHM; a Lorentzian falls slowly (1 % of its height at 5 FWHM), and
# what its window cuts off is given back to the window (see render_peaks), so areas are kept.
WINDOW_FWHM = {"gaussian": 2.5, "pseudo_voigt": 5.0}
# A Gaussian of FWHM 1 is exp(-4 ln 2 x²); the unit-area one has height √(4 ln 2 / π).
FOUR_LN2 = np.float32(4 * math.log(2))
GAUSS_NORM = np.float32(math.sqrt(4 * math.log(2) / math.pi))
# Preferred-orientation axes: the 13 directions with indices in {-1, 0, 1}, one of each ±
# pair. Platelets and needles of real powders mostly lie on low-index faces.
MARCH_DOLLASE_AXES = np.array(
    [v for v in itertools.product((-1, 0, 1), repeat=3) if any(v) and v[np.flatnonzero(v)[0]] > 0]
)
# Chebyshev degree of the background: smooth over the whole range, with at most two turning
# points (air scatter falling off at low angle, a broad amorphous hump).
BACKGROUND_DEGREE = 3
# Parts that draw random numbers, each from its own stream: switching one off leaves the
# others' draws, and so the rest of the pattern, unchanged.
_PARTS = ("orientation", "strain", "zero_offset", "width", "background", "noise")

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentSettings:
    """What augmentation perturbs and by how much.

    Every range is (low, high); each pattern draws its value uniformly from it (noise counts
    log-uniformly, as they span decades). None switches that part off.

    Attributes:
        instrument_fwhm_deg: instrument's peak FWHM in degrees 2θ, the same at every angle.
        profile: "gaussian" (size and instrument widths added in quadrature) or "pseudo_voigt"
            (size broadening Lorentzian, instrument Gaussian, combined as Thompson-Cox-Hastings).
        crystallite_nm: crystallite size L in nm for Scherrer broadening K λ / (L cos θ).
        strain: relative change of every d-spacing, d -> d (1 + strain).
        zero_offset_deg: shift of every peak in degrees 2θ.
        march_dollase_r: March-Dollase parameter r (< 1 platelets, > 1 needles, 1 random).
        background: height of the background's highest point, as a fraction of the highest
            point of the broadened peaks.
        noise_counts: counts at the highest point of the pattern (Poisson counting noise).
    """

    instrument_fwhm_deg: Range
    profile: str = "gaussian"
    crystallite_nm: Range | None = None
    strain: Range | None = None
    zero_offset_deg: Range | None = None
    march_dollase_r: Range | None = None
    background: Range | None = None
    noise_counts: Range | None = None

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> AugmentSettings | None:
        """Settings from the params section ``train.augment``; None when ``enabled`` is false.

        A range is a number (always that value) or [low, high]; null or 0 switches a part
        off. Raises ParamsError naming the first invalid key.
        """
        prefix = "train.augment"
        try:
            if not isinstance(section["enabled"], bool):
                raise _invalid(f"{prefix}.enabled", section["enabled"], "must be true or false")
            if not section["enabled"]:
                return None
            if section["profile"] not in PROFILES:
                raise _invalid(
                    f"{prefix}.profile", section["profile"], f"must be one of {', '.join(PROFILES)}"
                )
            instrument = _range(section, "instrument_fwhm_deg", minimum=0)
            if instrument is None:
                raise _invalid(
                    f"{prefix}.instrument_fwhm_deg",
                    section["instrument_fwhm_deg"],
                    "peaks need a width: must be > 0",
                )
            return cls(
                instrument_fwhm_deg=instrument,
                profile=section["profile"],
                crystallite_nm=_range(section, "crystallite_nm", minimum=0),
                strain=_range(section, "strain", minimum=-1),
                zero_offset_deg=_range(section, "zero_offset_deg", minimum=None),
                march_dollase_r=_range(section, "march_dollase_r", minimum=0),
                background=_range(section, "background", minimum=0, strict=False),
                noise_counts=_range(section, "noise_counts", minimum=0),
            )
        except KeyError as exc:
            raise ParamsError(f"params.yaml: missing key '{prefix}.{exc.args[0]}'") from exc


def _invalid(key: str, value: Any, why: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key}={value!r} is invalid: {why}")


def _range(
    section: dict[str, Any], name: str, *, minimum: float | None, strict: bool = True
) -> Range | None:
    """(low, high) from a number or a [low, high] list; None for null or 0. Values must be
    finite and, when ``minimum`` is given, greater than it (or equal, if not ``strict``)."""
    value, key = section[name], f"train.augment.{name}"
    if value is None or (isinstance(value, Real) and value == 0):
        return None
    bounds = [value, value] if isinstance(value, Real) and not isinstance(value, bool) else value
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise _invalid(key, value, "must be a number, [low, high] or null")
    for bound in bounds:
        if isinstance(bound, bool) or not isinstance(bound, Real) or not math.isfinite(bound):
            raise _invalid(key, value, "bounds must be finite numbers")
        if minimum is not None and (bound <= minimum if strict else bound < minimum):
            raise _invalid(key, value, f"bounds must be {'>' if strict else '>='} {minimum:g}")
    if bounds[0] > bounds[1]:
        raise _invalid(key, value, "low must not exceed high")
    return float(bounds[0]), float(bounds[1])


def scherrer_fwhm_deg(
    two_theta_deg: np.ndarray, crystallite_nm: np.ndarray | float, wavelength_angstrom: float
) -> np.ndarray:
    """Scherrer broadening: FWHM in degrees 2θ of a peak at ``two_theta_deg`` from crystallites
    of size ``crystallite_nm``, β = K λ / (L cos θ) (radians), K = SCHERRER_K."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=float) / 2)
    length_angstrom = 10.0 * np.asarray(crystallite_nm, dtype=float)
    return np.degrees(SCHERRER_K * wavelength_angstrom / (length_angstrom * np.cos(theta)))


def strained_two_theta(two_theta_deg: np.ndarray, strain: np.ndarray | float) -> np.ndarray:
    """Peak positions in degrees 2θ after every d-spacing becomes d (1 + strain).

    Bragg's law at fixed wavelength: sin θ' = λ / (2 d (1 + ε)) = sin θ / (1 + ε). A peak
    pushed past 2θ = 180° (compression of a back-reflection) no longer exists: NaN.
    """
    sin_theta = np.sin(np.radians(np.asarray(two_theta_deg, dtype=float) / 2))
    with np.errstate(invalid="ignore"):
        return 2 * np.degrees(np.arcsin(sin_theta / (1 + np.asarray(strain, dtype=float))))


def march_dollase_factors(
    hkl: np.ndarray,
    reciprocal_lattice: np.ndarray,
    axis_hkl: np.ndarray,
    r: np.ndarray | float,
) -> np.ndarray:
    """March-Dollase intensity factors (r² cos²α + sin²α / r)^(-3/2) of reflections ``hkl``.

    α is the angle between a reflection's scattering vector and the preferred-orientation axis,
    the normal of the planes ``axis_hkl``; both are taken in the reciprocal basis
    ``reciprocal_lattice`` (rows a*, b*, c*). r < 1 (platelets lying on those planes) boosts
    reflections parallel to the axis by up to r⁻³; r = 1 changes nothing. A powder peak's
    factor is the mean over all its reflections (:func:`peak_reflections`). Arrays broadcast:
    one lattice, axis and r for all reflections, or one each (n x 3 x 3, n x 3, n).
    """
    g = (np.asarray(hkl, dtype=float)[..., None, :] @ reciprocal_lattice)[..., 0, :]
    axis = (np.asarray(axis_hkl, dtype=float)[..., None, :] @ reciprocal_lattice)[..., 0, :]
    cos2 = np.sum(g * axis, axis=-1) ** 2 / (np.sum(g * g, axis=-1) * np.sum(axis * axis, axis=-1))
    r = np.asarray(r, dtype=float)
    return (r**2 * cos2 + (1 - cos2) / r) ** -1.5


# Reflections whose Bragg angle lies this close (degrees 2θ) to a stored peak's belong to it:
# pymatgen's merge tolerance (1e-5 degrees), doubled against rounding.
SAME_PEAK_DEG = 2e-5


@dataclass(frozen=True)
class PeakReflections:
    """Every reflection (h k l) of each stored peak of a PeakTable: the reflections of table
    row ``i`` are rows ``offsets[i]:offsets[i + 1]`` of ``hkl``."""

    hkl: np.ndarray
    offsets: np.ndarray

    def of_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices into ``hkl`` of the reflections of table ``rows``, and for each its place
        in ``rows``."""
        return gather_ranges(self.offsets, rows)


def peak_reflections(table: PeakTable, wavelength_angstrom: float) -> PeakReflections:
    """All reflections of every stored peak: the reciprocal-lattice vectors whose Bragg angle
    is within SAME_PEAK_DEG of the peak's. These are the symmetry-equivalent members of its
    family (which share one structure factor), and any reflection that coincides by accident
    and was merged into the same peak. Preferred orientation acts on each of them differently,
    so a peak's March-Dollase factor is their mean."""
    hkl_of_rows: list[np.ndarray] = []
    for position in range(len(table)):
        rows = slice(table.offsets[position], table.offsets[position + 1])
        peak_angles = table.two_theta[rows]
        if len(peak_angles) == 0:
            continue
        basis = table.reciprocal_lattices[position]  # rows a*, b*, c*
        g_max = 2 * np.sin(np.radians(peak_angles.max()) / 2) / wavelength_angstrom
        # |h| <= |g| |a| for every reflection inside the sphere of radius g_max.
        real_lengths = np.linalg.norm(np.linalg.inv(basis).T, axis=1)
        limits = np.floor(g_max * real_lengths + 1e-9).astype(int)
        axes = [np.arange(-n, n + 1) for n in limits]
        candidates = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        g = np.linalg.norm(candidates @ basis, axis=1)
        inside = (g > 0) & (g <= g_max * (1 + 1e-9))
        candidates, g = candidates[inside], g[inside]
        angles = np.degrees(2 * np.arcsin(np.clip(g * wavelength_angstrom / 2, 0, 1)))
        order = np.argsort(peak_angles)
        nearest = np.clip(np.searchsorted(peak_angles[order], angles), 1, len(order) - 1)
        below = order[nearest - 1]
        above = order[np.minimum(nearest, len(order) - 1)]
        peak = np.where(
            np.abs(peak_angles[below] - angles) <= np.abs(peak_angles[above] - angles), below, above
        )
        matched = np.abs(peak_angles[peak] - angles) <= SAME_PEAK_DEG
        for index in range(len(peak_angles)):
            members = candidates[matched & (peak == index)]
            # A stored peak always has its own reflection; keep it should rounding miss it.
            hkl_of_rows.append(members if len(members) else table.hkl[rows][index : index + 1])
    counts = [len(members) for members in hkl_of_rows]
    return PeakReflections(
        hkl=np.concatenate(hkl_of_rows or [np.zeros((0, 3))]).astype(np.int16),
        offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
    )


def profile_shape(
    instrument_fwhm_deg: np.ndarray, size_fwhm_deg: np.ndarray, profile: str
) -> tuple[np.ndarray, np.ndarray]:
    """FWHM (degrees) and Lorentzian fraction η of the combined profile of each peak.

    "gaussian": both broadenings Gaussian, so their FWHMs add in quadrature (η = 0).
    "pseudo_voigt": instrument Gaussian and size Lorentzian, as the Thompson-Cox-Hastings
    pseudo-Voigt of their convolution.
    """
    gauss = np.asarray(instrument_fwhm_deg, dtype=float)
    lorentz = np.asarray(size_fwhm_deg, dtype=float)
    if profile == "gaussian":
        return np.hypot(gauss, lorentz), np.zeros(np.broadcast(gauss, lorentz).shape)
    fwhm = (
        sum(c * gauss ** (5 - k) * lorentz**k for k, c in enumerate(TCH_FWHM_COEFFICIENTS)) ** 0.2
    )
    q = lorentz / fwhm
    eta = sum(c * q ** (k + 1) for k, c in enumerate(TCH_ETA_COEFFICIENTS))
    return fwhm, eta


def render_peaks(
    two_theta_deg: np.ndarray,
    areas: np.ndarray,
    fwhm_deg: np.ndarray,
    lorentz_fraction: np.ndarray,
    pattern_of_peak: np.ndarray,
    n_patterns: int,
    grid: TwoThetaGrid,
    window_fwhm: float,
) -> np.ndarray:
    """Peaks as pseudo-Voigt profiles on ``grid``: n_patterns x grid.size, float64.

    Peak i (centre ``two_theta_deg[i]``, FWHM ``fwhm_deg[i]``, Lorentzian fraction
    ``lorentz_fraction[i]``; 0 is a Gaussian) goes to row ``pattern_of_peak[i]``. It is
    evaluated at the grid points within ``window_fwhm`` FWHMs of its centre and scaled so that
    the sum of its values times the step is ``areas[i]``: the integrated intensity is kept
    whatever the sampling, and what falls beyond the grid's ends is lost, as in a measurement.
    """
    position = (two_theta_deg - grid.start) / grid.step  # in grid points
    nearest = np.rint(position).astype(np.int64)
    # Peaks are evaluated in groups of similar width, each over the window of its widest
    # member (steps of √2 in width), so that a few broad peaks do not widen every window.
    groups = np.ceil(2 * np.log2(np.maximum(window_fwhm * fwhm_deg / grid.step, 1)))
    half_points = np.ceil(2 ** (groups / 2)).astype(np.int64)
    # Rows padded by two windows at each end: a peak whose window reaches the grid lands
    # within its own row without a per-point bounds check; the padding is cut off at the end.
    pad = 2 * int(half_points.max(initial=0))
    width = grid.size + 2 * pad
    reaches = (nearest + half_points >= 0) & (nearest - half_points < grid.size)
    out = np.zeros(n_patterns * width)
    for half in np.unique(half_points[reaches]):
        chosen = np.flatnonzero(reaches & (half_points == half))
        offsets = np.arange(-half, half + 1)
        # Squared distance from the centre in FWHMs, in float32 (half the cost of float64).
        from_centre = (offsets + (nearest[chosen] - position[chosen])[:, None]).astype(np.float32)
        u = (from_centre * (grid.step / fwhm_deg[chosen, None]).astype(np.float32)) ** 2
        # Unit-area shapes up to the common factor 1/FWHM, which the scaling below removes.
        values = GAUSS_NORM * np.exp(-FOUR_LN2 * u)
        eta = lorentz_fraction[chosen, None].astype(np.float32)
        if eta.any():
            values = (1 - eta) * values + eta * (2 / math.pi) / (1 + 4 * u)
        values *= (areas[chosen] / (grid.step * values.sum(axis=1)))[:, None]
        start = pattern_of_peak[chosen] * width + pad + nearest[chosen]
        out += np.bincount(
            (start[:, None] + offsets).ravel(), weights=values.ravel(), minlength=out.size
        )
    return out.reshape(n_patterns, width)[:, pad : pad + grid.size]


def chebyshev_backgrounds(
    grid: TwoThetaGrid, heights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Smooth backgrounds, one per row (len(heights) x grid.size): Chebyshev series of degree
    BACKGROUND_DEGREE over the grid with normal random coefficients, shifted to a minimum of 0
    and scaled to a maximum of ``heights``."""
    basis = chebyshev.chebvander(np.linspace(-1, 1, grid.size), BACKGROUND_DEGREE)
    shapes = rng.normal(size=(len(heights), BACKGROUND_DEGREE + 1)) @ basis.T
    shapes -= shapes.min(axis=1, keepdims=True)
    return shapes * (np.asarray(heights) / shapes.max(axis=1))[:, None]


def counting_noise(
    patterns: np.ndarray, peak_counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Poisson counting noise: each row scaled so its highest point is ``peak_counts`` counts,
    counted, and scaled back."""
    highest = patterns.max(axis=1)
    # An empty row has nothing to count: it stays empty.
    counts_per_unit = np.asarray(peak_counts, dtype=float) / np.where(highest > 0, highest, 1.0)
    return rng.poisson(patterns * counts_per_unit[:, None]) / counts_per_unit[:, None]


def augment_patterns(
    table: PeakTable,
    positions: np.ndarray,
    grid: TwoThetaGrid,
    wavelength_angstrom: float,
    settings: AugmentSettings,
    rng: np.random.Generator,
    reflections: PeakReflections | None = None,
) -> np.ndarray:
    """Newly perturbed patterns of the structures at ``positions`` of ``table``:
    len(positions) x grid.size, float32, each rescaled to [0, 1] as the stored patterns.

    ``reflections``: :func:`peak_reflections` of ``table``, computed here when not given (give
    it when making many batches from one table)."""
    positions = np.asarray(positions, dtype=np.int64)
    n = len(positions)
    streams = dict(zip(_PARTS, rng.spawn(len(_PARTS)), strict=True))
    rows, owner = table.rows(positions)
    two_theta = table.two_theta[rows]
    intensities = table.intensities[rows]
    if settings.march_dollase_r is not None:
        stream = streams["orientation"]
        r = stream.uniform(*settings.march_dollase_r, n)
        axes = MARCH_DOLLASE_AXES[stream.integers(len(MARCH_DOLLASE_AXES), size=n)]
        lattices = table.reciprocal_lattices[positions]
        if reflections is None:
            reflections = peak_reflections(table, wavelength_angstrom)
        members, peak = reflections.of_rows(rows)
        structure = owner[peak]
        factors = march_dollase_factors(
            reflections.hkl[members], lattices[structure], axes[structure], r[structure]
        )
        # Each peak's factor: the mean over its reflections.
        intensities = intensities * (
            np.bincount(peak, weights=factors, minlength=len(rows))
            / np.bincount(peak, minlength=len(rows))
        )
    if settings.strain is not None:
        two_theta = strained_two_theta(
            two_theta, streams["strain"].uniform(*settings.strain, n)[owner]
        )
    width = streams["width"]
    instrument = width.uniform(*settings.instrument_fwhm_deg, n)[owner]
    size = np.zeros_like(instrument)
    if settings.crystallite_nm is not None:
        crystallite_nm = width.uniform(*settings.crystallite_nm, n)[owner]
        # At the Bragg angle: the zero offset below moves where a peak is seen, not its width.
        size = scherrer_fwhm_deg(two_theta, crystallite_nm, wavelength_angstrom)
    fwhm, eta = profile_shape(instrument, size, settings.profile)
    if settings.zero_offset_deg is not None:
        two_theta = two_theta + streams["zero_offset"].uniform(*settings.zero_offset_deg, n)[owner]
    # Strain can push a back-reflection past 180 degrees: it has no position left (NaN).
    kept = np.isfinite(two_theta)
    patterns = render_peaks(
        two_theta[kept],
        intensities[kept],
        fwhm[kept],
        eta[kept],
        owner[kept],
        n,
        grid,
        WINDOW_FWHM[settings.profile],
    )
    if settings.background is not None:
        stream = streams["background"]
        fractions = stream.uniform(*settings.background, n)
        patterns += chebyshev_backgrounds(grid, fractions * patterns.max(axis=1), stream)
    if settings.noise_counts is not None:
        low, high = np.log(settings.noise_counts)
        peak_counts = np.exp(streams["noise"].uniform(low, high, n))
        patterns = counting_noise(patterns, peak_counts, streams["noise"])
    # A structure whose peaks all left the grid (strain, offset) keeps an empty pattern.
    has_intensity = patterns.max(axis=1) > patterns.min(axis=1)
    out = np.zeros(patterns.shape, dtype=np.float32)
    out[has_intensity] = normalise(patterns[has_intensity])
    return out
