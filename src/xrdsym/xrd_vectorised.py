"""Powder XRD peaks with pymatgen's physics, vectorised over all reflections and atoms at once.

The same calculation as pymatgen's ``XRDCalculator.get_pattern``, which stays the reference
(its wavelengths, scattering parameters and tolerances are used here): every reciprocal-lattice
point in the limiting sphere, atomic scattering factors, site occupancies, Debye-Waller factors,
the Lorentz-polarisation factor, reflections merged within ``TWO_THETA_TOL``, intensities scaled
to 100 and those below ``SCALED_INTENSITY_TOL`` left out; the peaks' 2θ agree with pymatgen's
to the bit. It never loops over reflections in Python, takes the structure factors of all
reflections from one complex matrix product (:func:`phase_sums`), and does not collect the hkl
families of every peak (pymatgen's ``get_unique_families``, most of pymatgen's cost): each peak
keeps the one reflection that pymatgen lists first.

Miller indices are held as 3 x M arrays (one row per index), so that per-index operations run
over contiguous memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.analysis.diffraction.core import (
    AbstractDiffractionPatternCalculator,
    get_anisotropic_debye_waller_factors,
    get_ustar,
)
from pymatgen.analysis.diffraction.xrd import (
    ATOMIC_SCATTERING_PARAMS,
    XRDCalculator,
)

from xrdsym.diffraction import Peaks
from xrdsym.measured import parse_wavelength

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from pymatgen.core.periodic_table import Element, Species

# pymatgen's tolerances, taken from its calculator so that both always merge and drop alike.
TWO_THETA_TOL = AbstractDiffractionPatternCalculator.TWO_THETA_TOL
SCALED_INTENSITY_TOL = AbstractDiffractionPatternCalculator.SCALED_INTENSITY_TOL
# Most complex entries of one block of phase terms (pymatgen's value, 64 MB): bounds the memory
# that large cells take, has no effect on the results.
PHASE_CHUNK_ENTRIES = XRDCalculator.PHASE_CHUNK_ENTRIES
# pymatgen's form factor f(s) = Z - 41.78214 s² Σ a exp(-b s²), s = sin θ / λ in 1/Å.
FORM_FACTOR_CONSTANT = 41.78214
# pymatgen's sphere search (find_points_in_spheres) takes a point of a sphere of radius r
# (1/Å) below 1 when |g| <= r, and from 1 on when |g|² < r² + 1e-8; the same rules here count
# the same reflections at the sphere's edge.
SPHERE_SEARCH_MIN_RADIUS = 1.0
SPHERE_SEARCH_TOL = 1e-8


def reciprocal_points(
    lattice_matrix: np.ndarray, min_radius: float, max_radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Reflections with ``min_radius <= |g| <= max_radius`` (1/Å), one of each Friedel pair.

    Args:
        lattice_matrix: the real-space lattice vectors as rows, in Å.
        min_radius, max_radius: the shell of the reciprocal space wanted, in 1/Å.

    Returns Miller indices (3 x M integers) with (h, k, l) lexicographically positive, so not
    000, and their |g| = 1/d in 1/Å, computed with the same floating-point operations as pymatgen
    so that reflections of equal |g| tie (and merge) exactly as they do there.
    """
    # pymatgen's reciprocal_lattice_crystallographic: inv(A)ᵀ · 2π, then divided by 2π.
    reciprocal = np.linalg.inv(lattice_matrix).T * 2 * np.pi / (2 * np.pi)
    # |h| = |g · a1| <= |g| |a1| and so on: this box holds the whole sphere.
    bounds = (max_radius * np.sqrt((lattice_matrix**2).sum(axis=1))).astype(int) + 1
    h = np.arange(0, bounds[0] + 1)[:, None, None]
    k = np.arange(-bounds[1], bounds[1] + 1)[None, :, None]
    ell = np.arange(-bounds[2], bounds[2] + 1)[None, None, :]
    # Cartesian g = h b1 + k b2 + l b3 and |g|², summed in the order of pymatgen's search.
    x, y, z = (
        (h * reciprocal[0, i] + k * reciprocal[1, i]) + ell * reciprocal[2, i] for i in range(3)
    )
    g_squared = (x * x + y * y) + z * z
    g = np.sqrt(g_squared)
    if max_radius < SPHERE_SEARCH_MIN_RADIUS:
        inside = g <= max_radius
    else:
        inside = g_squared < max_radius * max_radius + SPHERE_SEARCH_TOL
    if min_radius:
        inside &= g >= min_radius
    # Friedel half-space: h > 0, or h = 0 and k > 0, or h = k = 0 and l > 0; so at h = 0 (the
    # first plane of the box) drop k < 0, and l <= 0 where k = 0.
    inside[0, : bounds[1]] = False
    inside[0, bounds[1], : bounds[2] + 1] = False
    ih, ik, il = np.nonzero(inside)
    return np.stack([ih, ik - bounds[1], il - bounds[2]]), g[ih, ik, il]


def site_table(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[Element | Species]]:
    """Fractional coordinates (n_sites x 3), occupancies (n_sites x n_species), the species.

    A disordered site counts with each of its species at that species' occupancy, as in
    pymatgen; species of one element (Fe2+ and Fe3+) share a column, as they share a form factor.
    """
    frac_coords = np.empty((len(structure), 3))
    columns: dict[str, int] = {}
    species = []
    entries = []
    for index, site in enumerate(structure):
        frac_coords[index] = site.frac_coords
        for specie, occupancy in site.species.items():
            column = columns.setdefault(specie.symbol, len(columns))
            if column == len(species):
                species.append(specie)
            entries.append((index, column, occupancy))
    occupancies = np.zeros((len(structure), len(columns)))
    for index, column, occupancy in entries:
        occupancies[index, column] += occupancy
    return frac_coords, occupancies, species


def form_factors(species: list[Element | Species], s_squared: np.ndarray) -> np.ndarray:
    """pymatgen's atomic scattering factors (M x n_species) at s² = (sin θ / λ)² in 1/Å².

    Raises ValueError for an element without scattering parameters, as pymatgen does.
    """
    try:
        coefficients = np.array([ATOMIC_SCATTERING_PARAMS[sp.symbol] for sp in species])
    except KeyError as exc:
        raise ValueError(f"no atomic scattering parameters for {exc.args[0]}") from None
    atomic_numbers = np.array([sp.Z for sp in species], dtype=float)
    a, b = coefficients[..., 0], coefficients[..., 1]  # n_species x 4 each
    gaussians = np.exp(-b * s_squared[:, None, None])  # M x n_species x 4
    sums = np.einsum("mek,ek->me", gaussians, a)
    return atomic_numbers - FORM_FACTOR_CONSTANT * s_squared[:, None] * sums


def phase_sums(hkl: np.ndarray, frac_coords: np.ndarray, occupancies: np.ndarray) -> np.ndarray:
    """Σ_j occ_je exp(2πi hkl·r_j) for every reflection (3 x M) and species: M x n_species.

    exp(2πi(hx + ky + lz)) = exp(2πi hx) exp(2πi ky) exp(2πi lz): the three factors are
    tabulated per index value and site, and the sums over sites for the whole box of (h, k, l)
    values become one complex matrix product ((h, k) x sites) @ (sites x (l, species)), from
    which the reflections are picked. This takes far less time than an exponential per
    reflection and site; a few h at a time, no block exceeds ``PHASE_CHUNK_ENTRIES``.
    """
    low, high = hkl.min(axis=1), hkl.max(axis=1)
    x, y, z = (
        np.exp((2j * np.pi) * np.arange(low[i], high[i] + 1)[:, None] * frac_coords[:, i])
        for i in range(3)
    )
    n_sites, n_species = occupancies.shape
    z_occupancies = (z.T[:, :, None] * occupancies[:, None, :]).reshape(n_sites, -1)
    h, k, ell = hkl - low[:, None]
    sums = np.empty((hkl.shape[1], n_species), dtype=complex)
    h_per_block = max(1, PHASE_CHUNK_ENTRIES // (len(y) * max(n_sites, z_occupancies.shape[1])))
    for start in range(0, len(x), h_per_block):
        xy = (x[start : start + h_per_block, None, :] * y[None, :, :]).reshape(-1, n_sites)
        box = (xy @ z_occupancies).reshape(-1, len(y), len(z), n_species)
        picked = (
            np.flatnonzero((h >= start) & (h < start + h_per_block))
            if h_per_block < len(x)
            else slice(None)
        )
        sums[picked] = box[h[picked] - start, k[picked], ell[picked]]
    return sums


def damped_phase_sums(
    hkl: np.ndarray, frac_coords: np.ndarray, occupancies: np.ndarray, ustar: np.ndarray
) -> np.ndarray:
    """As :func:`phase_sums`, each site's term damped by its anisotropic Debye-Waller factor.

    ``ustar`` (n_sites x 3 x 3) is pymatgen's U* of the sites. The damping does not factorise
    over h, k and l, so this is the (reflections x sites) phase matrix times the occupancies, as
    in pymatgen, for a block of reflections at a time.
    """
    hkl_float = hkl.T.astype(float)
    sums = np.empty((len(hkl_float), occupancies.shape[1]), dtype=complex)
    rows_per_block = max(1, PHASE_CHUNK_ENTRIES // len(frac_coords))
    for start in range(0, len(hkl_float), rows_per_block):
        block = hkl_float[start : start + rows_per_block]
        phases = np.exp(2j * np.pi * (block @ frac_coords.T))
        phases *= get_anisotropic_debye_waller_factors(block, ustar)
        sums[start : start + rows_per_block] = phases @ occupancies
    return sums


def _lexicographic_codes(hkl: np.ndarray) -> np.ndarray:
    """Integers ordered as the reflections (columns of ``hkl``) are lexicographically.

    The indices are digits of a balanced base 2 b + 1 (b the largest |index|), so comparing
    codes compares h, then k, then l.
    """
    base = 2 * int(np.abs(hkl).max()) + 1
    return (hkl[0] * base + hkl[1]) * base + hkl[2]


def _representative_hkl(
    hkl: np.ndarray, codes: np.ndarray, first: np.ndarray, hexagonal: bool
) -> np.ndarray:
    """For each merged peak, the reflection that pymatgen lists first (its ``hkls[i][0]``).

    pymatgen lists each peak's reflections, in order, with their Friedel mates, groups them into
    families (the same absolute indices in any order, four-index ones for a hexagonal cell) and
    names each family by its lexicographically largest member; the first family is that of the
    peak's first reflection. Here each Friedel pair is represented by its lexicographically
    larger member, so the mates never win, and (h, k, i, l) orders as (h, k, l) does since i
    follows from h and k: the largest ``codes`` of the family is pymatgen's. Returns n_peaks x 3.
    """
    families = np.abs(hkl)
    if hexagonal:
        families = np.concatenate([families, np.abs(hkl[:1] + hkl[1:2])])
    # Power sums 1..n of n non-negative integers fix them up to order (Newton's identities),
    # so equal power sums of the absolute indices mean one family.
    power_sums = (families ** np.arange(1, len(families) + 1)[:, None, None]).sum(axis=1)
    sizes = np.empty_like(first)  # reflections per peak
    sizes[:-1] = first[1:] - first[:-1]
    sizes[-1] = hkl.shape[1] - first[-1]
    in_family = (power_sums == power_sums[:, np.repeat(first, sizes)]).all(axis=0)
    # A peak's first reflection is in its family, so each peak's maximum is one of its codes,
    # and codes are unique: exactly one reflection per peak matches it.
    candidates = np.where(in_family, codes, codes.min() - 1)
    best = np.maximum.reduceat(candidates, first)
    return hkl[:, np.flatnonzero(candidates == np.repeat(best, sizes))].T


def simulate_peaks_vectorised(
    structure: Structure,
    wavelength: str | float,
    two_theta_range: tuple[float, float],
    debye_waller_factors: Mapping[str, float] | None = None,
) -> Peaks:
    """Powder diffraction peaks of ``structure`` as pymatgen's XRDCalculator gives them.

    A drop-in for :func:`xrdsym.diffraction.simulate_peaks`, many times faster.

    Args:
        structure: the crystal structure; site properties U11_cif, ..., U12_cif (Å²), when
            present, give anisotropic Debye-Waller factors, as in pymatgen.
        wavelength: an anode name known to pymatgen ("CuKa") or a wavelength in Å.
        two_theta_range: (min, max) in degrees.
        debye_waller_factors: isotropic B factors in Å² by element symbol, as pymatgen's
            ``debye_waller_factors``; not together with U_cif site properties.

    Returns the peaks in increasing 2θ (degrees), intensities scaled to a maximum of 100, and
    for each peak the hkl that pymatgen reports first. Raises ValueError when no reflection
    lies in the range (pymatgen raises ValueError there too).
    """
    wavelength_a = parse_wavelength(wavelength)
    if not len(structure):
        raise ValueError("the structure has no sites")
    ustar = get_ustar(structure)
    if ustar is not None and debye_waller_factors:
        raise ValueError("debye_waller_factors cannot be used with U11_cif, ... site properties")
    min_radius, max_radius = (
        2 * math.sin(math.radians(t / 2)) / wavelength_a for t in two_theta_range
    )
    hkl, g = reciprocal_points(structure.lattice.matrix, min_radius, max_radius)
    if not len(g):
        raise ValueError(f"no diffraction peaks in the 2θ range {tuple(two_theta_range)}")
    # pymatgen's order: by |g|, then by decreasing h, k, l; a merged peak keeps its first 2θ.
    codes = _lexicographic_codes(hkl)
    order = np.lexsort((-codes, g))
    hkl, g, codes = hkl[:, order], g[order], codes[order]

    # Bragg: sin θ = λ |g| / 2, at most 1 (pymatgen's sphere may reach just beyond 2θ = 180°).
    theta = np.arcsin(np.minimum(wavelength_a * g / 2, 1))
    s_squared = (g / 2) ** 2
    frac_coords, occupancies, species = site_table(structure)
    factors = form_factors(species, s_squared)
    if debye_waller_factors:
        b_factors = np.array([debye_waller_factors.get(sp.symbol, 0) for sp in species])
        factors = factors * np.exp(-b_factors * s_squared[:, None])
    if ustar is None:
        sums = phase_sums(hkl, frac_coords, occupancies)
    else:
        sums = damped_phase_sums(hkl, frac_coords, occupancies, ustar)
    structure_factors = (factors * sums).sum(axis=1)
    lorentz_polarisation = (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
    # Factor 2: the Friedel mate -g, left out above, scatters the same (real form factors).
    intensities = 2 * (structure_factors.real**2 + structure_factors.imag**2) * lorentz_polarisation

    # Merge reflections whose 2θ rounds to the same multiple of TWO_THETA_TOL, as pymatgen.
    two_theta = np.degrees(2 * theta)
    keys = np.rint(two_theta / TWO_THETA_TOL).astype(np.int64)
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    peak_intensities = np.add.reduceat(intensities, first)
    max_intensity = peak_intensities.max()
    kept = peak_intensities / max_intensity * 100 > SCALED_INTENSITY_TOL
    return Peaks(
        two_theta[first][kept],
        peak_intensities[kept] / (max_intensity / 100),
        _representative_hkl(hkl, codes, first, structure.lattice.is_hexagonal())[kept],
    )
