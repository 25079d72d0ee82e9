"""Physics-based augmentation: fresh, perturbed patterns made from stored peak lists.

A batch of peak lists becomes patterns the way different samples on different instruments
would have given them. The sample: preferred orientation (March-Dollase), the texture of a film
and grain statistics reweight the peaks; lattice strain moves them; crystallite size (Scherrer)
broadens them. The instrument: the Kα2 line doubles every peak, a zero offset and the sample's
displacement from the goniometer axis move them, its own width broadens them into profiles whose
width follows 2θ. What else reaches the detector: a smooth background, an amorphous hump, weak
peaks of an impurity. The measurement: a scan of limited range and coarser step, counting
(Poisson) and detector (Gaussian) noise, brought back onto the model's grid as ``predict`` brings
a measured file. Optionally, the atoms' thermal motion (Debye-Waller) weakens the high-angle
peaks, which the simulation, of atoms at rest, leaves at full strength (off by default: see
params train.augment). Every quantity is drawn per pattern from a range; each part can be
switched off. Pure numpy: all randomness comes from the
``numpy.random.Generator`` passed in, so a seed reproduces a batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from xrdsym.diffraction import PeakTable, TwoThetaGrid, gather_ranges, normalise
from xrdsym.errors import ParamsError
from xrdsym.wavelengths import kalpha2_ratio

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
# Goniometer radius of the sample-displacement shift, mm: 240 mm is the radius of the common
# laboratory Bragg-Brentano instruments (Bruker D8, PANalytical X'Pert and Empyrean).
GONIOMETER_RADIUS_MM = 240.0
# Film texture: a reflection whose scattering vector lies within acos 0.98 = 11.5 degrees of
# the film's axis diffracts (the mosaic spread of a strongly textured film is a few degrees);
# every other keeps this fraction of its powder intensity (the film's small untextured part).
FILM_COS = 0.98
FILM_OTHERS = 0.02
# Impurity phases show only their few strongest peaks: 0 to this many per pattern.
MAX_IMPURITY_PEAKS = 3
# Amorphous hump (glass, polymer, amorphous silica of a sample holder, an amorphous fraction of
# the sample): FWHM and centre in degrees 2θ, as seen with Cu Kα (centres at d 2.6-5.9 Å).
AMORPHOUS_FWHM_DEG = (5.0, 15.0)
AMORPHOUS_CENTRE_DEG = (15.0, 35.0)
# Parts that draw random numbers, each from its own stream: switching one off leaves the
# others' draws, and so the rest of the pattern, unchanged. New parts go at the end, so that
# the streams of the others stay those of earlier versions.
_PARTS = (
    "orientation",
    "strain",
    "zero_offset",
    "width",
    "background",
    "noise",
    "ka2",
    "displacement",
    "scan_start",
    "scan_end",
    "step",
    "detector",
    "jitter",
    "film",
    "impurity",
    "amorphous",
    "thermal",
)

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentSettings:
    """What augmentation perturbs and by how much.

    Every range is (low, high); each pattern draws its value uniformly from it (noise counts
    log-uniformly, as they span decades). None switches that part off. "The highest peak" is
    the highest point of the broadened peaks of the sample.

    Attributes:
        instrument_fwhm_deg: instrument's peak FWHM in degrees 2θ, the same at every angle.
        profile: "gaussian" (size and instrument widths added in quadrature) or "pseudo_voigt"
            (size broadening Lorentzian, instrument Gaussian, combined as Thompson-Cox-Hastings).
        crystallite_nm: crystallite size L in nm for Scherrer broadening K λ / (L cos θ).
        strain: relative change of every d-spacing, d -> d (1 + strain).
        zero_offset_deg: shift of every peak in degrees 2θ.
        march_dollase_r: March-Dollase parameter r (< 1 platelets, > 1 needles, 1 random).
        background: height of the background's highest point, as a fraction of the highest peak.
        noise_counts: counts at the highest point of the scan (Poisson counting noise).
        ka2_ratio: intensity of every peak's Kα2 line over its Kα1 line's (0.5 unfiltered,
            0 monochromated); see :func:`kalpha2_ratio` for the wavelengths that have one.
        displacement_mm: sample displacement s in mm, shift -2 s cos θ / R (GONIOMETER_RADIUS_MM).
        scan_start_deg, scan_end_deg: first and last angle of the scan, degrees 2θ; the pattern
            is zero outside it.
        step_deg: the scan's step, degrees 2θ: the pattern is counted at that step and
            interpolated back onto the grid (see :func:`coarse_scan`); a step finer than the
            grid's counts as the grid's, which shows no more of it.
        detector_noise: standard deviation of Gaussian detector noise, as a fraction of the
            scan's highest point.
        intensity_jitter: standard deviation of the natural log of a random factor on each
            peak's intensity (grain statistics, texture March-Dollase does not describe).
        film_probability: probability that a sample is a strongly textured film (see
            :func:`film_factors`), a number in (0, 1].
        impurity_peaks: the highest of 0 to MAX_IMPURITY_PEAKS weak Gaussian peaks at random
            angles, as a fraction of the highest peak; each peak's height is drawn below it.
        amorphous_hump: height of one broad Gaussian hump (AMORPHOUS_FWHM_DEG,
            AMORPHOUS_CENTRE_DEG), as a fraction of the highest peak.
        debye_waller_b_angstrom2: overall isotropic displacement parameter B in Å² of every
            atom: each peak's intensity times exp(-2 B (sin θ / λ)²) (see
            :func:`debye_waller_factors`).
    """

    instrument_fwhm_deg: Range
    profile: str = "gaussian"
    crystallite_nm: Range | None = None
    strain: Range | None = None
    zero_offset_deg: Range | None = None
    march_dollase_r: Range | None = None
    background: Range | None = None
    noise_counts: Range | None = None
    ka2_ratio: Range | None = None
    displacement_mm: Range | None = None
    scan_start_deg: Range | None = None
    scan_end_deg: Range | None = None
    step_deg: Range | None = None
    detector_noise: Range | None = None
    intensity_jitter: Range | None = None
    film_probability: float | None = None
    impurity_peaks: Range | None = None
    amorphous_hump: Range | None = None
    debye_waller_b_angstrom2: Range | None = None

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
            scan_start = _range(section, "scan_start_deg", minimum=0, strict=False, maximum=180)
            scan_end = _range(section, "scan_end_deg", minimum=0, strict=False, maximum=180)
            if scan_start is not None and scan_end is not None and scan_start[1] >= scan_end[0]:
                raise _invalid(
                    f"{prefix}.scan_end_deg",
                    section["scan_end_deg"],
                    f"every scan must end after it starts: low must exceed {scan_start[1]:g}, "
                    "the highest scan_start_deg",
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
                ka2_ratio=_range(section, "ka2_ratio", minimum=0, strict=False, maximum=1),
                displacement_mm=_range(section, "displacement_mm", minimum=None),
                scan_start_deg=scan_start,
                scan_end_deg=scan_end,
                step_deg=_range(section, "step_deg", minimum=0),
                detector_noise=_range(section, "detector_noise", minimum=0, strict=False),
                intensity_jitter=_range(section, "intensity_jitter", minimum=0, strict=False),
                film_probability=_probability(section, "film_probability"),
                impurity_peaks=_range(
                    section, "impurity_peaks", minimum=0, strict=False, maximum=1
                ),
                amorphous_hump=_range(section, "amorphous_hump", minimum=0, strict=False),
                debye_waller_b_angstrom2=_range(
                    section, "debye_waller_b_angstrom2", minimum=0, strict=False
                ),
            )
        except KeyError as exc:
            raise ParamsError(f"params.yaml: missing key '{prefix}.{exc.args[0]}'") from exc


def _invalid(key: str, value: Any, why: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key}={value!r} is invalid: {why}")


def _range(
    section: dict[str, Any],
    name: str,
    *,
    minimum: float | None,
    strict: bool = True,
    maximum: float | None = None,
) -> Range | None:
    """(low, high) from a number or a [low, high] list; None for null or 0. Values must be
    finite and, when ``minimum`` is given, greater than it (or equal, if not ``strict``); when
    ``maximum`` is given, at most that."""
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
        if maximum is not None and bound > maximum:
            raise _invalid(key, value, f"bounds must be <= {maximum:g}")
    if bounds[0] > bounds[1]:
        raise _invalid(key, value, "low must not exceed high")
    return float(bounds[0]), float(bounds[1])


def _probability(section: dict[str, Any], name: str) -> float | None:
    """A probability in (0, 1]; None for null or 0."""
    value = section[name]
    if value is None or (isinstance(value, Real) and value == 0):
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise _invalid(f"train.augment.{name}", value, "must be a probability in [0, 1] or null")
    return float(value)


def scherrer_fwhm_deg(
    two_theta_deg: np.ndarray, crystallite_nm: np.ndarray | float, wavelength_angstrom: float
) -> np.ndarray:
    """Scherrer broadening: FWHM in degrees 2θ of a peak at ``two_theta_deg`` from crystallites
    of size ``crystallite_nm``, β = K λ / (L cos θ) (radians), K = SCHERRER_K."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=float) / 2)
    length_angstrom = 10.0 * np.asarray(crystallite_nm, dtype=float)
    return np.degrees(SCHERRER_K * wavelength_angstrom / (length_angstrom * np.cos(theta)))


def scaled_sine_two_theta(two_theta_deg: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    """Angles 2θ' (degrees) with sin θ' = ``factor`` sin θ: by Bragg's law, where a peak at
    2θ moves when λ / d is multiplied by ``factor``. Where factor sin θ > 1 the peak no longer
    exists: NaN."""
    sin_theta = np.sin(np.radians(np.asarray(two_theta_deg, dtype=float) / 2))
    with np.errstate(invalid="ignore"):
        return 2 * np.degrees(np.arcsin(sin_theta * np.asarray(factor, dtype=float)))


def strained_two_theta(two_theta_deg: np.ndarray, strain: np.ndarray | float) -> np.ndarray:
    """Peak positions in degrees 2θ after every d-spacing becomes d (1 + strain).

    Bragg's law at fixed wavelength: sin θ' = λ / (2 d (1 + ε)) = sin θ / (1 + ε). A peak
    pushed past 2θ = 180° (compression of a back-reflection) no longer exists: NaN.
    """
    return scaled_sine_two_theta(two_theta_deg, 1 / (1 + np.asarray(strain, dtype=float)))


def debye_waller_factors(
    two_theta_deg: np.ndarray, b_angstrom2: np.ndarray | float, wavelength_angstrom: float
) -> np.ndarray:
    """Intensity factors exp(-2 B s²), s = sin θ / λ in 1/Å, of peaks at ``two_theta_deg``
    when every atom has the isotropic displacement parameter ``b_angstrom2`` (B = 8π² <u²>):
    each atomic scattering factor is damped by exp(-B s²), as in pymatgen's XRDCalculator with
    ``debye_waller_factors``, so the intensity |F|² by its square. s is 1 / (2 d): the Kα2
    line of a reflection has its Kα1 line's factor."""
    s = np.sin(np.radians(np.asarray(two_theta_deg, dtype=float) / 2)) / wavelength_angstrom
    return np.exp(-2 * np.asarray(b_angstrom2, dtype=float) * s**2)


def displacement_shift_deg(
    two_theta_deg: np.ndarray, displacement_mm: np.ndarray | float
) -> np.ndarray:
    """Shift in degrees 2θ of a peak at ``two_theta_deg`` when the sample surface lies
    ``displacement_mm`` off the goniometer axis (Bragg-Brentano): Δ2θ = -2 s cos θ / R radians,
    R = GONIOMETER_RADIUS_MM. Largest at low angle, unlike a zero offset the same everywhere."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=float) / 2)
    return np.degrees(
        -2 * np.asarray(displacement_mm, dtype=float) * np.cos(theta) / GONIOMETER_RADIUS_MM
    )


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
    cos2 = axis_cos2(hkl, reciprocal_lattice, axis_hkl)
    r = np.asarray(r, dtype=float)
    return (r**2 * cos2 + (1 - cos2) / r) ** -1.5


def axis_cos2(hkl: np.ndarray, reciprocal_lattice: np.ndarray, axis_hkl: np.ndarray) -> np.ndarray:
    """cos² of the angle between the scattering vectors of reflections ``hkl`` and the normal of
    the planes ``axis_hkl``, both in the reciprocal basis ``reciprocal_lattice`` (rows a*, b*,
    c*); broadcasts as :func:`march_dollase_factors`."""
    g = (np.asarray(hkl, dtype=float)[..., None, :] @ reciprocal_lattice)[..., 0, :]
    axis = (np.asarray(axis_hkl, dtype=float)[..., None, :] @ reciprocal_lattice)[..., 0, :]
    return np.sum(g * axis, axis=-1) ** 2 / (np.sum(g * g, axis=-1) * np.sum(axis * axis, axis=-1))


def film_factors(
    hkl: np.ndarray, reciprocal_lattice: np.ndarray, axis_hkl: np.ndarray
) -> np.ndarray:
    """Intensity factors of reflections ``hkl`` in a strongly textured film whose crystallites
    all have the normal of ``axis_hkl`` along the film's normal: 1 within acos FILM_COS of it
    (the planes parallel to the surface, the only ones a symmetric scan sees), FILM_OTHERS for
    every other. A powder peak's factor is the mean over its reflections, as for
    :func:`march_dollase_factors` (which this broadcasts like); when no reflection lies along
    the axis every peak is scaled alike and the normalised pattern does not change."""
    along = axis_cos2(hkl, reciprocal_lattice, axis_hkl) > FILM_COS**2
    return np.where(along, 1.0, FILM_OTHERS)


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


def detector_noise(
    patterns: np.ndarray, fractions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian detector (electronic) noise of standard deviation ``fractions`` times each row's
    highest point, independent of the counts; clipped at 0, as a detector reports no negative
    intensity."""
    sd = np.asarray(fractions, dtype=float) * patterns.max(axis=1)
    return np.maximum(patterns + sd[:, None] * rng.standard_normal(patterns.shape), 0.0)


def coarse_scan(
    patterns: np.ndarray,
    grid: TwoThetaGrid,
    starts_deg: np.ndarray,
    steps_deg: np.ndarray,
    n_points: int,
) -> np.ndarray:
    """What a continuous scan counts at its points ``starts_deg[i] + k steps_deg[i]``
    (k < ``n_points``, degrees 2θ) from the pattern in row i of ``patterns`` on ``grid``: the
    mean of the pattern over [point - step / 2, point + step / 2], the range the detector
    sweeps while it counts that point. Each grid value stands for a bin one grid step wide;
    only the part of a range on the grid is averaged over, and a point with none of it is 0.
    n x n_points."""
    n, n_bins = patterns.shape
    # The pattern's integral from the grid's low edge to every bin edge.
    bin_integrals = np.zeros((n, n_bins + 1))
    np.cumsum(patterns * grid.step, axis=1, out=bin_integrals[:, 1:])
    # Neighbouring points' ranges meet: the integral up to every range edge, once.
    edges = starts_deg[:, None] + steps_deg[:, None] * (np.arange(n_points + 1) - 0.5)
    bins = np.clip((edges - grid.start) / grid.step + 0.5, 0, n_bins)  # edges in bins
    whole = np.minimum(bins.astype(np.int64), n_bins - 1)
    rows = np.arange(n)[:, None]
    integrals = bin_integrals[rows, whole] + (bins - whole) * patterns[rows, whole] * grid.step
    covered = np.diff(bins, axis=1) * grid.step
    return np.where(covered > 0, np.diff(integrals, axis=1) / np.where(covered > 0, covered, 1), 0)


def scan_onto_grid(
    counts: np.ndarray, grid: TwoThetaGrid, starts_deg: np.ndarray, steps_deg: np.ndarray
) -> np.ndarray:
    """Scans whose row i holds points ``starts_deg[i] + k steps_deg[i]`` (k = 0, 1, ...)
    interpolated linearly onto ``grid``, as ``predict`` brings a measured file onto the model's
    grid; grid points before a scan's first point take that point's value."""
    points = (grid.values - starts_deg[:, None]) / steps_deg[:, None]  # in scan steps
    left = np.clip(np.floor(points).astype(np.int64), 0, counts.shape[1] - 2)
    fraction = np.clip(points - left, 0.0, 1.0)
    rows = np.arange(len(counts))[:, None]
    below = counts[rows, left]
    return below + fraction * (counts[rows, left + 1] - below)


def _gaussian(x: np.ndarray, centre: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Gaussians of height 1 at ``x`` (broadcast)."""
    return np.exp(-FOUR_LN2 * ((x - centre) / fwhm) ** 2)


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
    len(positions) x grid.size, float32, each rescaled to [0, 1] as the stored patterns (zero
    outside a truncated scan, its highest point 1).

    ``reflections``: :func:`peak_reflections` of ``table``, computed here when not given (give
    it when making many batches from one table)."""
    positions = np.asarray(positions, dtype=np.int64)
    n = len(positions)
    streams = dict(zip(_PARTS, rng.spawn(len(_PARTS)), strict=True))
    rows, owner = table.rows(positions)
    if reflections is None and (
        settings.march_dollase_r is not None or settings.film_probability is not None
    ):
        reflections = peak_reflections(table, wavelength_angstrom)
    intensities = _sample_intensities(table, positions, rows, owner, settings, streams, reflections)
    two_theta = table.two_theta[rows]
    if settings.debye_waller_b_angstrom2 is not None:
        b = streams["thermal"].uniform(*settings.debye_waller_b_angstrom2, n)[owner]
        intensities = intensities * debye_waller_factors(two_theta, b, wavelength_angstrom)
    if settings.strain is not None:
        two_theta = strained_two_theta(
            two_theta, streams["strain"].uniform(*settings.strain, n)[owner]
        )
    line_ratio = kalpha2_ratio(wavelength_angstrom)
    if settings.ka2_ratio is not None and line_ratio is not None:
        share = streams["ka2"].uniform(*settings.ka2_ratio, n)[owner]
        two_theta = np.concatenate([two_theta, scaled_sine_two_theta(two_theta, line_ratio)])
        intensities = np.concatenate([intensities, share * intensities])
        owner = np.concatenate([owner, owner])
    width = streams["width"]
    instrument = width.uniform(*settings.instrument_fwhm_deg, n)
    size = np.zeros(len(owner))
    if settings.crystallite_nm is not None:
        crystallite_nm = width.uniform(*settings.crystallite_nm, n)[owner]
        # At the Bragg angle: the shifts below move where a peak is seen, not its width.
        size = scherrer_fwhm_deg(two_theta, crystallite_nm, wavelength_angstrom)
    fwhm, eta = profile_shape(instrument[owner], size, settings.profile)
    if settings.displacement_mm is not None:
        displacement = streams["displacement"].uniform(*settings.displacement_mm, n)[owner]
        two_theta = two_theta + displacement_shift_deg(two_theta, displacement)
    if settings.zero_offset_deg is not None:
        two_theta = two_theta + streams["zero_offset"].uniform(*settings.zero_offset_deg, n)[owner]
    # Strain or the Kα2 line can push a back-reflection past 180 degrees: it has no position
    # left (NaN).
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
    highest_peak = patterns.max(axis=1)
    if settings.background is not None:
        stream = streams["background"]
        fractions = stream.uniform(*settings.background, n)
        patterns += chebyshev_backgrounds(grid, fractions * highest_peak, stream)
    if settings.amorphous_hump is not None:
        stream = streams["amorphous"]
        heights = stream.uniform(*settings.amorphous_hump, n) * highest_peak
        centres = stream.uniform(*AMORPHOUS_CENTRE_DEG, n)
        widths = stream.uniform(*AMORPHOUS_FWHM_DEG, n)
        patterns += heights[:, None] * _gaussian(grid.values, centres[:, None], widths[:, None])
    if settings.impurity_peaks is not None:
        patterns += _impurity_peaks(
            grid, highest_peak, instrument, settings.impurity_peaks, streams["impurity"]
        )
    patterns = _measure(patterns, grid, settings, streams)
    # A structure whose peaks all left the grid or the scan keeps an empty pattern.
    has_intensity = patterns.max(axis=1) > patterns.min(axis=1)
    out = np.zeros(patterns.shape, dtype=np.float32)
    out[has_intensity] = normalise(patterns[has_intensity])
    return out


def _sample_intensities(
    table: PeakTable,
    positions: np.ndarray,
    rows: np.ndarray,
    owner: np.ndarray,
    settings: AugmentSettings,
    streams: dict[str, np.random.Generator],
    reflections: PeakReflections | None,
) -> np.ndarray:
    """Intensities of table ``rows`` (structure ``owner`` of ``positions``) after preferred
    orientation, film texture and per-peak jitter."""
    n = len(positions)
    intensities = table.intensities[rows]
    lattices = table.reciprocal_lattices[positions]

    def mean_over_reflections(
        chosen: np.ndarray, factors_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Each of the ``chosen`` rows' mean over its reflections of the factors that
        ``factors_of(hkl, structure)`` gives reflections ``hkl`` of structures ``structure``
        (places in ``positions``)."""
        members, peak = reflections.of_rows(rows[chosen])
        factors = factors_of(reflections.hkl[members], owner[chosen][peak])
        return np.bincount(peak, weights=factors, minlength=len(chosen)) / np.bincount(
            peak, minlength=len(chosen)
        )

    if settings.march_dollase_r is not None:
        stream = streams["orientation"]
        r = stream.uniform(*settings.march_dollase_r, n)
        axes = MARCH_DOLLASE_AXES[stream.integers(len(MARCH_DOLLASE_AXES), size=n)]
        intensities = intensities * mean_over_reflections(
            np.arange(len(rows)),
            lambda hkl, of: march_dollase_factors(hkl, lattices[of], axes[of], r[of]),
        )
    if settings.film_probability is not None:
        stream = streams["film"]
        is_film = stream.random(n) < settings.film_probability
        axes = MARCH_DOLLASE_AXES[stream.integers(len(MARCH_DOLLASE_AXES), size=n)]
        in_film = np.flatnonzero(is_film[owner])
        intensities[in_film] *= mean_over_reflections(
            in_film, lambda hkl, of: film_factors(hkl, lattices[of], axes[of])
        )
    if settings.intensity_jitter is not None:
        stream = streams["jitter"]
        sd = stream.uniform(*settings.intensity_jitter, n)[owner]
        intensities = intensities * np.exp(sd * stream.standard_normal(len(rows)))
    return intensities


def _impurity_peaks(
    grid: TwoThetaGrid,
    highest_peak: np.ndarray,
    fwhm_deg: np.ndarray,
    heights: Range,
    stream: np.random.Generator,
) -> np.ndarray:
    """0 to MAX_IMPURITY_PEAKS Gaussian peaks per pattern at random angles on the grid, each of
    FWHM ``fwhm_deg`` of its pattern and height uniform below a fraction drawn from
    ``heights`` of ``highest_peak``: n x grid.size."""
    n = len(highest_peak)
    highest = stream.uniform(*heights, n) * highest_peak
    pattern = np.repeat(np.arange(n), stream.integers(MAX_IMPURITY_PEAKS + 1, size=n))
    centres = stream.uniform(grid.start, grid.stop, len(pattern))
    tops = highest[pattern] * stream.random(len(pattern))
    widths = fwhm_deg[pattern]
    # A Gaussian of FWHM w and area A has height A GAUSS_NORM / w.
    return render_peaks(
        centres,
        tops * widths / GAUSS_NORM,
        widths,
        np.zeros(len(pattern)),
        pattern,
        n,
        grid,
        WINDOW_FWHM["gaussian"],
    )


def _measure(
    patterns: np.ndarray,
    grid: TwoThetaGrid,
    settings: AugmentSettings,
    streams: dict[str, np.random.Generator],
) -> np.ndarray:
    """The scan of each row of ``patterns`` (n x grid.size) back on the grid: counted over the
    scan's range, at its step, with counting and detector noise; zero outside the range."""
    n = len(patterns)
    starts = np.full(n, float(grid.start))
    ends = np.full(n, float(grid.stop))
    if settings.scan_start_deg is not None:
        starts = streams["scan_start"].uniform(*settings.scan_start_deg, n)
    if settings.scan_end_deg is not None:
        ends = streams["scan_end"].uniform(*settings.scan_end_deg, n)
    if settings.step_deg is not None:
        # A scan finer than the grid shows no more on it than the grid's own step would.
        steps = np.maximum(streams["step"].uniform(*settings.step_deg, n), grid.step)
        # Every row's points from its start past the grid's end (the last may lie beyond).
        n_points = int(np.max(np.floor((grid.stop - starts) / steps), initial=0)) + 2
        angles = starts[:, None] + steps[:, None] * np.arange(n_points)
        counted = coarse_scan(patterns, grid, starts, steps, n_points)
    else:
        angles, counted = grid.values[None, :], patterns
    inside = (angles >= starts[:, None]) & (angles <= ends[:, None])
    counted = np.where(inside, counted, 0.0)
    if settings.noise_counts is not None:
        low, high = np.log(settings.noise_counts)
        peak_counts = np.exp(streams["noise"].uniform(low, high, n))
        counted = counting_noise(counted, peak_counts, streams["noise"])
    if settings.detector_noise is not None:
        stream = streams["detector"]
        counted = detector_noise(counted, stream.uniform(*settings.detector_noise, n), stream)
    if settings.step_deg is None:
        return np.where(inside, counted, 0.0)
    # The scan covers the grid from its first point to its last inside the range.
    last = np.max(np.where(inside, angles, -np.inf), axis=1)
    on_grid = scan_onto_grid(counted, grid, starts, steps)
    return np.where((grid.values >= starts[:, None]) & (grid.values <= last[:, None]), on_grid, 0.0)
