"""Powder indexing: the unit cell and lattice system that explain a list of peak positions.

Every lattice is written through its reciprocal metric, Q(hkl) = 1 / d² = A h² + B k² + C l²
+ D kl + E hl + F hk (Å⁻²), with the parameters each lattice system leaves free (cubic: one;
hexagonal, rhombohedral in hexagonal axes and tetragonal: two; orthorhombic: three;
monoclinic, b unique: four; triclinic: six). The search, per lattice system:

1. **Trial cells** from the first lines (``IndexSettings.base_lines``) taken to be low-index
   reflections (TREOR's idea, Werner 1964, 1985): P lines with P low-index hkl assigned give P
   linear equations in the P parameters, solved for every choice at once (numpy); the
   triclinic cell is built from three lines taken as its reduced reciprocal axes and the cross
   terms the lines at Q(a*) + Q(b*) ± F allow (Ito's relation, Visser 1969). Each trial is
   made at every zero shift of a small grid, since the zero error moves low-angle lines most.
2. **A quick count** (compiled with numba): how many of the first lines each trial cell
   indexes within the search tolerance, every line's hkl solved for directly (l from the
   quadratic at each h, k inside the cell's reach); the trials that index enough lines go on,
   less those equal to an earlier one. A centring only removes reflections, so the centred
   settings are counted only on the trials the P count keeps.
3. **Least squares** on every indexed line of the ``n_lines`` together with the zero shift,
   alternating with re-indexing, then the figures of merit: de Wolff's M(N) = Q_N / (2 ε̄
   N_calc) (de Wolff 1968) and Smith & Snyder's F(N) = N / (|Δ2θ|̄ N_calc) (1979), N_calc
   counting the lines the lattice system allows (for its centring) up to the N-th observed
   line; the centring of each system is the one that indexes most lines, then with the
   highest M(N).

The decision (:func:`choose`) prefers the more symmetric lattice when it explains the lines
as well as any less symmetric one does, as DICVOL and Conograph do. Cells are given as the
conventional cell of their lattice system (triclinic: Niggli-reduced by spglib).

Only numpy, scipy-free linear algebra, numba and spglib are used here: the module sits low in
the package, beside :mod:`xrdsym.diffraction`.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numba
import numpy as np

from xrdsym.errors import XrdsymError
from xrdsym.settings import settings_from_params

LATTICE_SYSTEMS = (
    "cubic",
    "hexagonal",
    "tetragonal",
    "rhombohedral",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)
"""Lattice systems from the most symmetric (order of the holohedry: 48, 24, 16, 12, 8, 4, 2)."""

CRYSTAL_SYSTEM_OF_LATTICE = {
    "cubic": "cubic",
    "hexagonal": "hexagonal",
    "tetragonal": "tetragonal",
    "rhombohedral": "trigonal",
    "orthorhombic": "orthorhombic",
    "monoclinic": "monoclinic",
    "triclinic": "triclinic",
}
"""Crystal system a lattice system is read as. A hexagonal lattice is also that of every
trigonal crystal with a P lattice (quartz): powder positions cannot tell them apart."""

# Reflection conditions of the centrings (h, k, l in the conventional cell).
CENTRING_CODES = {"P": 0, "I": 1, "F": 2, "C": 3, "R": 4, "A": 5, "B": 6}

# A trial cell's axes come in any order, so a C-centred lattice may show up A- or B-centred:
# each is counted, and its parameters reordered into the conventional C setting (centred
# in the ab face; monoclinic b unique, so A-centred becomes C by exchanging a and c).
CENTRING_SETTINGS: dict[tuple[str, str], tuple[tuple[str, tuple[int, ...] | None], ...]] = {
    ("orthorhombic", "C"): (("C", None), ("A", (1, 2, 0)), ("B", (2, 0, 1))),
    ("monoclinic", "C"): (("C", None), ("A", (2, 1, 0, 3))),
}

SEARCH_MISSES_PER_LINE = 0.2
"""Share of the quick-count lines a trial cell may leave unindexed (impurities, merged or
spurious lines), rounded down: 2 of 12, as a solution may leave 2 of 20 unindexed."""

MAX_TRIALS_REFINED = 24
"""Trial cells refined per lattice system and centring: the best by quick count; more add
time, not solutions (the right cell is among the first few when it is found at all)."""

LSQ_ROUNDS = 4
"""Rounds of re-indexing and least squares: the assignment settles in two or three."""

UNINDEXED_PENALTY = 6
"""Exponent of the share of lines indexed in a cell's merit: one unindexed line of 20 costs
a quarter of its M(N), two nearly half, one of 10 half. A less symmetric cell with more
free parameters indexes an impurity line now and then; a more symmetric one that leaves a
line or two unindexed still wins when its M(N) is much higher (a garnet's cubic cell, M 149
with 16 of 18 lines, over a tetragonal 66 with 17), while a pseudo-symmetric cell that
leaves the split lines unindexed loses to the true one."""

MIN_CELL_EDGE = 2.0
"""Shortest cell edge considered, Å: no crystal has a lattice translation much under 2.3 Å
(beryllium's a, 2.29 Å), while cells with shorter edges fit a few lines by accident."""

MIN_SIGMA_DEG = 0.002
"""Floor of a line's position uncertainty in the fit, degrees 2θ: no peak position is known
better than the angle encoder's resolution."""


# Settings that may be 0: it switches their part off (or keeps every line).
ZERO_ALLOWED = frozenset(
    {
        "min_relative_intensity",
        "zero_shift_deg",
        "zero_step_deg",
        "min_figure_of_merit",
        "max_unindexed_share",
        "symmetry_ratio",
        "settled_figure_of_merit",
        "metric_tolerance",
    }
)


@dataclass(frozen=True)
class IndexSettings:
    """How a pattern is indexed (params section ``index``; every angle in degrees 2θ).

    Attributes:
        n_lines: lines indexed and scored, the first N (de Wolff's 20).
        min_relative_intensity: lines weaker than this share of the strongest are left out
            (impurities and spurious fits live among the weakest lines), unless fewer than
            half of ``n_lines`` would remain.
        min_lines: fewer significant lines than this: not indexed.
        tolerance_deg: a line is indexed when it lies this close to a calculated line of the
            refined cell and zero shift.
        search_tolerance_deg: the same for the quick count of trial cells (wider: their
            parameters come from a few lines, unrefined).
        quick_lines: lines counted for a trial cell.
        base_lines: the first lines trial cells are made from.
        zero_shift_deg: largest zero shift searched and refined (±).
        zero_step_deg: the zero-shift grid's step in the search.
        max_volume: largest cell volume considered, Å³.
        min_figure_of_merit: M(N) a cell needs to be a solution (de Wolff: 10 for 20 lines).
        max_unindexed_share: share of the N lines a solution may leave unindexed, rounded
            down (impurity lines): 3 of 20, 1 of 7 to 13, none of fewer.
        symmetry_ratio: a more symmetric solution is preferred while its merit (M(N)
            discounted for unindexed lines, :attr:`Cell.merit`) is at least this share of
            every less symmetric one's.
        time_budget_s: seconds one pattern may take; the lattice systems not yet searched
            when it is spent are skipped and the result says so.
        settled_figure_of_merit: a solution that indexes every line with an M(N) of at least
            this (raised as 20 / N for fewer lines, like ``min_figure_of_merit``) ends the
            search: the less symmetric lattice systems, which could only win with a far
            higher M(N), are not searched. 0 searches every system.
        metric_tolerance: the chosen cell is given the more symmetric lattice system its
            metric has within this share of the cell size (spglib on the lattice alone),
            refined in that system, when that still indexes the lines; 0: never.
    """

    n_lines: int = 20
    min_relative_intensity: float = 0.02
    min_lines: int = 5
    tolerance_deg: float = 0.03
    search_tolerance_deg: float = 0.06
    quick_lines: int = 12
    base_lines: int = 6
    zero_shift_deg: float = 0.1
    zero_step_deg: float = 0.05
    max_volume: float = 4000.0
    min_figure_of_merit: float = 10.0
    max_unindexed_share: float = 0.15
    symmetry_ratio: float = 0.7
    time_budget_s: float = 10.0
    settled_figure_of_merit: float = 20.0
    metric_tolerance: float = 0.003

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> IndexSettings:
        """Settings from a params section (missing keys keep their defaults); an unknown
        key or a bad value raises ParamsError naming it. The shares, zero shifts and
        thresholds may be 0 (off)."""
        return settings_from_params(cls, section, "index", zero_allowed=ZERO_ALLOWED)


@dataclass(frozen=True)
class LatticeForm:
    """A lattice system's free parameters: ``basis`` maps them to (A, B, C, D, E, F)."""

    name: str
    basis: np.ndarray
    centrings: tuple[str, ...]

    @property
    def n_parameters(self) -> int:
        return self.basis.shape[1]


def _basis(*columns: tuple[float, ...]) -> np.ndarray:
    return np.array(columns, dtype=float).T


FORMS = {
    "cubic": LatticeForm("cubic", _basis((1, 1, 1, 0, 0, 0)), ("P", "I", "F")),
    "hexagonal": LatticeForm("hexagonal", _basis((1, 1, 0, 0, 0, 1), (0, 0, 1, 0, 0, 0)), ("P",)),
    "tetragonal": LatticeForm(
        "tetragonal", _basis((1, 1, 0, 0, 0, 0), (0, 0, 1, 0, 0, 0)), ("P", "I")
    ),
    "rhombohedral": LatticeForm(
        "rhombohedral", _basis((1, 1, 0, 0, 0, 1), (0, 0, 1, 0, 0, 0)), ("R",)
    ),
    "orthorhombic": LatticeForm(
        "orthorhombic",
        _basis((1, 0, 0, 0, 0, 0), (0, 1, 0, 0, 0, 0), (0, 0, 1, 0, 0, 0)),
        ("P", "C", "I", "F"),
    ),
    "monoclinic": LatticeForm(
        "monoclinic",
        _basis((1, 0, 0, 0, 0, 0), (0, 1, 0, 0, 0, 0), (0, 0, 1, 0, 0, 0), (0, 0, 0, 0, 1, 0)),
        ("P", "C"),
    ),
    "triclinic": LatticeForm("triclinic", np.eye(6), ("P",)),
}


# --- geometry ---------------------------------------------------------------------------


def q_of_two_theta(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """1 / d², Å⁻², of lines at ``two_theta_deg`` for ``wavelength`` Å."""
    return (2 * np.sin(np.radians(np.asarray(two_theta_deg, dtype=float) / 2)) / wavelength) ** 2


def two_theta_of_q(q: np.ndarray, wavelength: float) -> np.ndarray:
    """2θ, degrees, of lines at 1 / d² = ``q`` Å⁻²; NaN beyond the reach of ``wavelength``."""
    sine = np.sqrt(np.maximum(np.asarray(q, dtype=float), 0)) * wavelength / 2
    with np.errstate(invalid="ignore"):
        return np.degrees(2 * np.arcsin(np.where(sine <= 1, sine, np.nan)))


def dq_dtwo_theta(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """dQ / d(2θ), Å⁻² per degree."""
    return 2 / wavelength**2 * np.sin(np.radians(two_theta_deg)) * math.pi / 180


def metric_matrix(g6: np.ndarray) -> np.ndarray:
    """The reciprocal metric tensor G* (3 x 3) of (A, B, C, D, E, F)."""
    a, b, c, d, e, f = g6
    return np.array([[a, f / 2, e / 2], [f / 2, b, d / 2], [e / 2, d / 2, c]])


def cell_of_metric(g6: np.ndarray) -> dict[str, float]:
    """a, b, c (Å), alpha, beta, gamma (degrees) and volume (Å³) of the direct cell."""
    direct = np.linalg.inv(metric_matrix(g6))
    lengths = np.sqrt(np.diag(direct))

    def angle(i: int, j: int) -> float:
        return math.degrees(math.acos(np.clip(direct[i, j] / lengths[i] / lengths[j], -1, 1)))

    return {
        "a": float(lengths[0]),
        "b": float(lengths[1]),
        "c": float(lengths[2]),
        "alpha": angle(1, 2),
        "beta": angle(0, 2),
        "gamma": angle(0, 1),
        "volume": float(math.sqrt(max(np.linalg.det(direct), 0.0))),
    }


def lattice_vectors(cell: dict[str, float]) -> np.ndarray:
    """Row vectors (Å) of a cell given by its lengths and angles."""
    a, b, c = cell["a"], cell["b"], cell["c"]
    alpha, beta, gamma = (math.radians(cell[k]) for k in ("alpha", "beta", "gamma"))
    cx = c * math.cos(beta)
    cy = c * (math.cos(alpha) - math.cos(beta) * math.cos(gamma)) / math.sin(gamma)
    cz = math.sqrt(max(c * c - cx * cx - cy * cy, 0.0))
    return np.array(
        [[a, 0, 0], [b * math.cos(gamma), b * math.sin(gamma), 0], [cx, cy, cz]], dtype=float
    )


def metric_of_lattice(vectors: np.ndarray) -> np.ndarray:
    """(A, B, C, D, E, F) of direct lattice row vectors."""
    g = np.linalg.inv(vectors @ vectors.T)
    return np.array([g[0, 0], g[1, 1], g[2, 2], 2 * g[1, 2], 2 * g[0, 2], 2 * g[0, 1]])


def hkl_coefficients(hkl: np.ndarray) -> np.ndarray:
    """(h², k², l², kl, hl, hk) of each row of ``hkl``, so that Q = coefficients @ g6."""
    h, k, ell = (hkl[:, i].astype(float) for i in range(3))
    return np.stack([h * h, k * k, ell * ell, k * ell, h * ell, h * k], axis=1)


def allowed(hkl: np.ndarray, centring: str) -> np.ndarray:
    """Whether each reflection is allowed by the lattice centring (conventional cell; R in
    hexagonal axes, obverse)."""
    h, k, ell = hkl[:, 0], hkl[:, 1], hkl[:, 2]
    if centring == "P":
        return np.ones(len(hkl), dtype=bool)
    if centring == "I":
        return (h + k + ell) % 2 == 0
    if centring == "F":
        return ((h + k) % 2 == 0) & ((k + ell) % 2 == 0)
    if centring == "C":
        return (h + k) % 2 == 0
    if centring == "R":
        return (-h + k + ell) % 3 == 0
    if centring == "A":
        return (k + ell) % 2 == 0
    if centring == "B":
        return (h + ell) % 2 == 0
    raise ValueError(f"unknown centring {centring!r}")


def reflections(g6: np.ndarray, q_max: float, centring: str) -> np.ndarray:
    """Every hkl (one of each ±pair) with 0 < Q <= ``q_max`` that the centring allows."""
    return _enumerate_reflections(
        np.asarray(g6, dtype=float), float(q_max), CENTRING_CODES[centring]
    )


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A refined cell of one lattice system and what it explains.

    ``hkl`` and ``two_theta_calc`` hold, per line used, its indices and the calculated
    position (zero shift included), or -0/NaN for an unindexed line.
    """

    lattice_system: str
    centring: str
    parameters: np.ndarray
    zero_shift_deg: float
    m: float
    f: float
    lines_indexed: int
    lines_used: int
    hkl: np.ndarray
    two_theta_calc: np.ndarray
    cell: dict[str, float] = field(default_factory=dict)

    @property
    def merit(self) -> float:
        """M(N) times (lines indexed / lines used) ** UNINDEXED_PENALTY: what lattice
        systems are compared on."""
        return self.m * (self.lines_indexed / max(self.lines_used, 1)) ** UNINDEXED_PENALTY

    def to_dict(self) -> dict[str, Any]:
        """The cell's fields for JSON (the ``xrdsym index`` record format)."""
        return {
            "lattice_system": self.lattice_system,
            "centring": self.centring,
            "cell": {key: round(value, 5) for key, value in self.cell.items()},
            "zero_shift_deg": round(self.zero_shift_deg, 4),
            "figures_of_merit": {
                "M": round(self.m, 2),
                "F": round(self.f, 2),
                "lines_indexed": self.lines_indexed,
                "lines_used": self.lines_used,
            },
        }


@dataclass(frozen=True)
class IndexResult:
    """The outcome of indexing one pattern.

    Attributes:
        best: the chosen cell, None when no lattice system gives a solution.
        reason: why there is no solution (None when there is one).
        candidates: the best cell of each lattice system searched, most symmetric first.
        two_theta: the lines used, degrees (Kα1 positions).
        wavelength: Å.
        seconds: time taken.
        budget_spent: the time budget ran out before every lattice system was searched.
        not_searched: lattice systems left out because a more symmetric solution settled
            the search (see ``IndexSettings.settled_figure_of_merit``) or the budget ran out.
    """

    best: Cell | None
    reason: str | None
    candidates: dict[str, Cell]
    two_theta: np.ndarray
    wavelength: float
    seconds: float
    budget_spent: bool
    not_searched: tuple[str, ...] = ()

    @property
    def lattice_system(self) -> str | None:
        return None if self.best is None else self.best.lattice_system

    def to_dict(self) -> dict[str, Any]:
        """The record ``xrdsym index --json`` writes, less ``source`` and ``peaks``."""
        empty = {
            "lattice_system": None,
            "centring": None,
            "cell": None,
            "zero_shift_deg": None,
            "figures_of_merit": None,
        }
        record = self.best.to_dict() if self.best is not None else empty
        record["reason"] = self.reason
        record["budget_spent"] = self.budget_spent
        record["not_searched"] = list(self.not_searched)
        record["candidates"] = [cell.to_dict() for cell in self.candidates.values()]
        return record


# --- the quick count (compiled) ---------------------------------------------------------


@numba.njit(cache=True)
def _allowed_one(h: int, k: int, ell: int, centring: int) -> bool:
    if centring == 0:
        return True
    if centring == 1:
        return (h + k + ell) % 2 == 0
    if centring == 2:
        return (h + k) % 2 == 0 and (k + ell) % 2 == 0
    if centring == 3:
        return (h + k) % 2 == 0
    if centring == 4:
        return (-h + k + ell) % 3 == 0
    if centring == 5:
        return (k + ell) % 2 == 0
    return (h + ell) % 2 == 0


@numba.njit(cache=True)
def _determinant(g6: np.ndarray) -> float:
    """det G* of a metric (A, B, C, D, E, F), Å⁻⁶: 1 / V²."""
    a, b, c, d, e, f = g6[0], g6[1], g6[2], g6[3], g6[4], g6[5]
    return (
        a * (b * c - d * d / 4)
        - f / 2 * (f / 2 * c - d / 2 * e / 2)
        + e / 2 * (f / 2 * d / 2 - b * e / 2)
    )


@numba.njit(cache=True)
def _enumerate_reflections(g6: np.ndarray, q_max: float, centring: int) -> np.ndarray:
    """hkl of :func:`reflections`: h and k over their reach, l over the interval the
    quadratic in l allows, so that no point outside the sphere Q <= q_max is visited."""
    a, b, c, d, e, f = g6[0], g6[1], g6[2], g6[3], g6[4], g6[5]
    det = _determinant(g6)
    out = np.empty((0, 3), dtype=np.int64)
    if det <= 0 or c <= 0:
        return out
    h_max = int(math.sqrt(q_max * (b * c - d * d / 4) / det)) + 1
    k_max = int(math.sqrt(q_max * (a * c - e * e / 4) / det)) + 1
    rows = []
    for h in range(0, h_max + 1):
        for k in range(-k_max, k_max + 1):
            if h == 0 and k < 0:
                continue
            lin = d * k + e * h
            rest = a * h * h + b * k * k + f * h * k - q_max
            disc = lin * lin - 4 * c * rest
            if disc < 0:
                continue
            root = math.sqrt(disc)
            l_low = math.ceil((-lin - root) / (2 * c))
            l_high = math.floor((-lin + root) / (2 * c))
            for ell in range(l_low, l_high + 1):
                if h == 0 and k == 0 and ell <= 0:
                    continue
                if _allowed_one(h, k, ell, centring):
                    rows.append((h, k, ell))
    out = np.empty((len(rows), 3), dtype=np.int64)
    for i in range(len(rows)):
        out[i, 0], out[i, 1], out[i, 2] = rows[i]
    return out


CLOSE_ENOUGH = 0.05
"""A line this close to a calculated one (in half-intervals of the search tolerance) needs
no nearer: the quick count stops looking."""


@numba.njit(cache=True)
def _count_indexed(
    g6s: np.ndarray, q_low: np.ndarray, q_high: np.ndarray, centring: int, max_misses: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each metric (rows of ``g6s``), how many lines (Q intervals [q_low, q_high]) an
    allowed hkl falls in, -1 once more than ``max_misses`` lines are missed (early exit); and
    the mean squared distance of the nearest hkl from each line indexed, in half-intervals.

    For each line, h and k run over their range and l is solved from the quadratic
    C l² + (D k + E h) l + (A h² + B k² + F hk - Q) = 0 at the interval's middle (its vertex
    when it has no real root); the two integers nearest each root are tried."""
    n_trials = g6s.shape[0]
    n_lines = q_low.shape[0]
    counts = np.full(n_trials, -1, dtype=np.int64)
    scores = np.full(n_trials, np.inf)
    for t in range(n_trials):
        a, b, c, d, e, f = g6s[t, 0], g6s[t, 1], g6s[t, 2], g6s[t, 3], g6s[t, 4], g6s[t, 5]
        # Direct-metric diagonal (cofactors of G*): the reach of h and k at a given Q.
        det = _determinant(g6s[t])
        if det <= 0 or c <= 0:
            continue
        gh = (b * c - d * d / 4) / det
        gk = (a * c - e * e / 4) / det
        # Q minimised over a real l: kk k² + hk h k + hh h², the metric of the projection
        # along c*; the k whose minimum lies beyond the line cannot index it.
        inverse_2c = 1 / (2 * c)
        kk = b - d * d / (4 * c)
        hk = f - d * e / (2 * c)
        hh = a - e * e / (4 * c)
        misses = 0
        found = 0
        total = 0.0
        for i in range(n_lines):
            q_mid = 0.5 * (q_low[i] + q_high[i])
            half = 0.5 * (q_high[i] - q_low[i])
            h_max = int(math.sqrt(q_high[i] * gh)) + 1
            k_max = int(math.sqrt(q_high[i] * gk)) + 1
            # Distances |Q - Q_mid| in Å⁻², in half-intervals once the line is done.
            enough = CLOSE_ENOUGH * half
            nearest = np.inf
            for h in range(0, h_max + 1):
                if nearest < enough:
                    break
                k_start = -k_max if h > 0 else 0
                k_stop = k_max
                reach = hk * hk * h * h - 4 * kk * (hh * h * h - q_high[i])
                if reach < 0:
                    continue
                k_start = max(k_start, math.floor((-hk * h - math.sqrt(reach)) / (2 * kk)) - 1)
                k_stop = min(k_stop, math.ceil((-hk * h + math.sqrt(reach)) / (2 * kk)) + 1)
                for k in range(k_start, k_stop + 1):
                    lin = d * k + e * h
                    base = a * h * h + b * k * k + f * h * k
                    disc = lin * lin - 4 * c * (base - q_mid)
                    root = math.sqrt(disc) if disc > 0 else 0.0
                    for sign in (-1.0, 1.0):
                        if sign > 0 and root == 0.0:
                            break
                        l0 = math.floor((-lin + sign * root) * inverse_2c)
                        for ell in (l0, l0 + 1):
                            if h == 0 and k == 0 and ell <= 0:
                                continue
                            if not _allowed_one(h, k, ell, centring):
                                continue
                            distance = abs((c * ell + lin) * ell + base - q_mid)
                            if distance < nearest:
                                nearest = distance
            nearest /= half
            if nearest <= 1.0:
                found += 1
                total += nearest * nearest
            else:
                misses += 1
                if misses > max_misses:
                    break
        if misses <= max_misses:
            counts[t] = found
            scores[t] = total / max(found, 1)
    return counts, scores


# --- trial cells ------------------------------------------------------------------------


@cache
def _seed_coefficients(system: str) -> np.ndarray:
    """Low-index reflections' coefficients in the system's parameters, most likely first:
    the hkl that the first lines of a pattern usually are."""
    limit = {"cubic": 4, "hexagonal": 3, "tetragonal": 3, "rhombohedral": 3}.get(system, 2)
    ranges = np.arange(-limit, limit + 1)
    hkl = np.stack(np.meshgrid(ranges, ranges, ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    if system == "rhombohedral":
        hkl = hkl[allowed(hkl, "R")]
    if system == "monoclinic":
        # Two indices of 2 at most one at a time: (200), (-102), (021)..., not (220).
        hkl = hkl[np.sum(np.abs(hkl) == 2, axis=1) <= 1]
    coefficients = hkl_coefficients(hkl) @ FORMS[system].basis
    unique = np.unique(np.round(coefficients).astype(np.int64), axis=0)
    # Simplest first: the smallest Q for a cell with unit parameters.
    order = np.lexsort((np.abs(unique).sum(axis=1), unique.sum(axis=1)))
    seeds = unique[order]
    cap = {"cubic": 24, "hexagonal": 16, "tetragonal": 16, "rhombohedral": 16}.get(system, 40)
    if system == "orthorhombic":
        cap = 26
    if system == "monoclinic":
        cap = 14
    return seeds[:cap].astype(float)


@cache
def _assignments(system: str) -> np.ndarray:
    """Every choice of distinct seed coefficients for the P base lines (P x P per row), one
    of each set of choices that an exchange of axes turns into each other."""
    seeds = _seed_coefficients(system)
    p = FORMS[system].n_parameters
    if p == 1:
        return seeds[:, None, :]
    choices = np.array(list(itertools.permutations(range(len(seeds)), p)))
    chosen = seeds[choices]  # trials x P lines x P parameters
    if system == "orthorhombic":
        # Any permutation of the axes gives the same cells: keep one representative.
        variants = [chosen[:, :, list(perm)] for perm in itertools.permutations(range(3))]
        stacked = np.stack([v.reshape(len(chosen), -1) for v in variants])
        chosen = chosen[_lexicographic_minimum(stacked)]
    if system == "monoclinic":
        # a <-> c (h <-> l) and the sign of hl give the same cells.
        variants = [chosen]
        swapped = chosen[:, :, [2, 1, 0, 3]]
        variants.append(swapped)
        flipped = chosen * np.array([1, 1, 1, -1])
        variants.append(flipped)
        variants.append(swapped * np.array([1, 1, 1, -1]))
        stacked = np.stack([v.reshape(len(chosen), -1) for v in variants])
        chosen = chosen[_lexicographic_minimum(stacked)]
    return chosen


def _lexicographic_minimum(stacked: np.ndarray) -> np.ndarray:
    """Mask of the rows whose first variant (``stacked[0]``) is the lexicographically least
    of all its variants (``stacked``: variants x rows x values), first occurrence only."""
    first = stacked[0]
    keep = np.ones(len(first), dtype=bool)
    for other in stacked[1:]:
        difference = other - first
        nonzero = difference != 0
        leading = np.argmax(nonzero, axis=1)
        sign = difference[np.arange(len(first)), leading]
        # other < first somewhere first: first is not the minimum.
        keep &= ~(nonzero.any(axis=1) & (sign < 0))
    _, unique_rows = np.unique(first[keep], axis=0, return_index=True)
    mask = np.zeros(len(first), dtype=bool)
    mask[np.flatnonzero(keep)[unique_rows]] = True
    return mask


@cache
def _inverse_assignments(system: str) -> np.ndarray:
    """The inverses of the regular :func:`_assignments` (trials x P x P): one matrix product
    per choice of base lines gives every trial."""
    assignments = _assignments(system)
    regular = np.abs(np.linalg.det(assignments)) > 1e-9
    return np.linalg.inv(assignments[regular])


def _solve_trials(system: str, q_base: np.ndarray) -> np.ndarray:
    """Trial parameters (trials x P) from every P of the base lines' Q and every seed
    assignment (the choices of lines in turn, each with every assignment)."""
    p = FORMS[system].n_parameters
    lines = np.array(list(itertools.combinations(range(len(q_base)), p)))
    rhs = q_base[lines]  # choices x P
    if p == 1:
        return (rhs / _assignments(system)[:, 0, 0]).reshape(-1, 1)
    inverses = _inverse_assignments(system)
    return np.ascontiguousarray((inverses @ rhs.T).transpose(2, 0, 1)).reshape(-1, p)


def _triclinic_trials(q_base: np.ndarray, q_lines: np.ndarray) -> np.ndarray:
    """Reciprocal cells on three base lines as Q(a*) <= Q(b*) <= Q(c*). The cross terms F
    and E are 0 or what makes a line Q(a*) + Q(b*) ± |F| (Ito's zone relation), |F| < 2
    √(Q(a*) Q(b*)) as a positive-definite metric allows: not only the reduced cell's |F| <=
    the smaller Q, so that a cell whose reduced b* or c* is too weak to be among the base
    lines is still found in a setting with a longer axis; D likewise from Q(b*) + Q(c*) ± D,
    or from a line at Q(±a* ± b* + c*) once E and F are fixed, for a b* ± c* too weak to be
    seen. The signs of E and F are fixed by choosing the axes' directions."""
    trials = []
    tol = 1e-9

    def cross(q1: float, q2: float) -> np.ndarray:
        gap = np.abs(q_lines - q1 - q2)
        return np.concatenate([[0.0], gap[(gap < 2 * math.sqrt(q1 * q2)) & (gap > tol)]])

    for i, j, k in itertools.combinations_with_replacement(range(len(q_base)), 3):
        qa, qb, qc = q_base[i], q_base[j], q_base[k]
        f_values = cross(qa, qb)
        e_pair = cross(qa, qc)
        d_pair = cross(qb, qc)
        d_pair = np.concatenate([d_pair, -d_pair[1:]])
        blocks = [np.stack(np.meshgrid(d_pair, e_pair, f_values, indexing="ij"), -1).reshape(-1, 3)]
        # A line at Q(s a* + t b* + c*) = qa + qb + qc + t D + s E + s t F (s, t = ±1) fixes
        # D when E and F are known.
        total = qa + qb + qc
        e_grid, f_of_e = (g.ravel() for g in np.meshgrid(e_pair, f_values, indexing="ij"))
        for s_sign in (1.0, -1.0):
            for t_sign in (1.0, -1.0):
                d_new = (
                    q_lines[:, None] - total - s_sign * e_grid - s_sign * t_sign * f_of_e
                ) * t_sign
                rows, cols = np.nonzero(np.abs(d_new) <= 2 * math.sqrt(qb * qc))
                blocks.append(np.stack([d_new[rows, cols], e_grid[cols], f_of_e[cols]], -1))
        grid = np.concatenate(blocks)
        block = np.empty((len(grid), 6))
        block[:, :3] = (qa, qb, qc)
        block[:, 3:] = grid
        trials.append(block)
    return np.concatenate(trials)


# --- refinement -------------------------------------------------------------------------


def _line_q(two_theta: np.ndarray, zero: float, wavelength: float) -> np.ndarray:
    """Q of lines seen at ``two_theta`` (degrees) once the zero shift is taken off."""
    return q_of_two_theta(two_theta - zero, wavelength)


def refine(
    system: str,
    centring: str,
    parameters: np.ndarray,
    two_theta: np.ndarray,
    sigma_deg: np.ndarray,
    wavelength: float,
    settings: IndexSettings,
    zero_shift_deg: float = 0.0,
) -> Cell | None:
    """Least-squares cell and zero shift from the lines (2θ, degrees, with 1σ uncertainties)
    that ``parameters`` index, alternating with re-indexing; None when too few lines stay
    indexed to fix the parameters and the zero shift."""
    form = FORMS[system]
    p = form.n_parameters
    params = np.asarray(parameters, dtype=float)
    zero = zero_shift_deg
    weights = 1 / np.maximum(sigma_deg, MIN_SIGMA_DEG)
    for _ in range(LSQ_ROUNDS):
        g6 = form.basis @ params
        if not _plausible(g6, settings):
            return None
        q_obs = _line_q(two_theta, zero, wavelength)
        q_max = q_obs.max() * 1.02 + 1e-6
        hkl_of_line, delta = _assign_lines(
            g6, q_max, CENTRING_CODES[centring], two_theta, zero, wavelength
        )
        indexed = delta <= settings.tolerance_deg
        if indexed.sum() < p + 2:
            return None
        design = hkl_coefficients(hkl_of_line[indexed]) @ form.basis
        slope = dq_dtwo_theta(two_theta[indexed] - zero, wavelength)
        scale = weights[indexed] / slope
        refine_zero = settings.zero_shift_deg > 0
        columns = [design] + ([slope[:, None]] if refine_zero else [])
        matrix = np.hstack(columns) * scale[:, None]
        solution, *_ = np.linalg.lstsq(matrix, q_obs[indexed] * scale)
        if not np.all(np.isfinite(solution)):
            return None
        params = solution[:p]
        if refine_zero:
            limit = settings.zero_shift_deg
            zero = float(np.clip(zero + solution[p], -limit, limit))
    return _scored(system, centring, params, zero, two_theta, wavelength, settings)


def _plausible(g6: np.ndarray, settings: IndexSettings) -> bool:
    """A cell the search considers: positive definite, within the volume and edge limits (a
    least-squares step can run off to a degenerate cell with millions of reflections)."""
    return bool(_plausible_one(g6, settings.max_volume, MIN_CELL_EDGE))


@numba.njit(cache=True)
def _plausible_one(g6: np.ndarray, max_volume: float, min_edge: float) -> bool:
    """Whether a metric (A, B, C, D, E, F) is positive definite, its cell no larger than
    ``max_volume`` Å³ and its shortest edge at least ``min_edge`` Å."""
    a, b, c, d, e, f = g6[0], g6[1], g6[2], g6[3], g6[4], g6[5]
    det = _determinant(g6)
    if not (a > 0 and a * b - f * f / 4 > 0 and det > 0):
        return False
    if 1 / math.sqrt(max(det, 1e-300)) > max_volume:
        return False
    shortest = min(b * c - d * d / 4, a * c - e * e / 4, a * b - f * f / 4) / det
    return math.sqrt(max(shortest, 0.0)) >= min_edge


@numba.njit(cache=True)
def _assign_lines(
    g6: np.ndarray,
    q_max: float,
    centring: int,
    two_theta: np.ndarray,
    zero: float,
    wavelength: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The hkl of the calculated line (2θ with the zero shift, degrees) nearest each line at
    ``two_theta`` among :func:`reflections` up to ``q_max``, and how far it is, degrees
    (infinite when there is none): one pass in place of enumerating, sorting and searching
    the reflections with numpy in every round of the least squares."""
    hkl = _enumerate_reflections(g6, q_max, centring)
    n = two_theta.shape[0]
    hkl_of_line = np.zeros((n, 3), dtype=np.int64)
    delta = np.full(n, np.inf)
    for r in range(hkl.shape[0]):
        h, k, ell = hkl[r, 0], hkl[r, 1], hkl[r, 2]
        q = (
            g6[0] * h * h
            + g6[1] * k * k
            + g6[2] * ell * ell
            + g6[3] * k * ell
            + g6[4] * h * ell
            + g6[5] * h * k
        )
        sine = math.sqrt(max(q, 0.0)) * wavelength / 2
        if sine > 1:
            continue
        calc = math.degrees(2 * math.asin(sine)) + zero
        for i in range(n):
            distance = abs(calc - two_theta[i])
            if distance < delta[i]:
                delta[i] = distance
                hkl_of_line[i, 0], hkl_of_line[i, 1], hkl_of_line[i, 2] = h, k, ell
    return hkl_of_line, delta


def _scored(
    system: str,
    centring: str,
    params: np.ndarray,
    zero: float,
    two_theta: np.ndarray,
    wavelength: float,
    settings: IndexSettings,
) -> Cell | None:
    """The cell with its figures of merit on the lines ``two_theta``."""
    form = FORMS[system]
    g6 = form.basis @ params
    if not _plausible(g6, settings):
        return None
    q_obs = _line_q(two_theta, zero, wavelength)
    q_n = float(q_obs.max())
    q_max = q_n * 1.02 + 1e-6
    hkl_of_line, delta = _assign_lines(
        g6, q_max, CENTRING_CODES[centring], two_theta, zero, wavelength
    )
    indexed = delta <= settings.tolerance_deg
    n_indexed = int(indexed.sum())
    if n_indexed == 0:
        return None
    hkl_of_line = np.where(indexed[:, None], hkl_of_line, 0)
    q_of_line = hkl_coefficients(hkl_of_line) @ g6
    # Distinct lines the lattice system allows up to the last line used (the ones whose
    # coefficients differ: symmetry-equivalent reflections are one line).
    coefficients = hkl_coefficients(reflections(g6, q_max, centring)) @ form.basis
    within = coefficients @ params <= q_n * (1 + 1e-9) + 1e-12
    n_calc = _distinct_rows(coefficients[within])
    # Discrepancies below the angle encoder's resolution are not information: floored there,
    # so that exact (simulated) positions give a finite M(N).
    slope = dq_dtwo_theta(two_theta[indexed] - zero, wavelength)
    residual = np.maximum(np.abs(q_obs[indexed] - q_of_line[indexed]), slope * MIN_SIGMA_DEG)
    epsilon = float(np.mean(residual))
    mean_delta = float(np.mean(np.maximum(delta[indexed], MIN_SIGMA_DEG)))
    m = q_n / (2 * epsilon * max(n_calc, 1))
    f = n_indexed / (mean_delta * max(n_calc, 1))
    calc_of_line = np.where(indexed, two_theta_of_q(q_of_line, wavelength) + zero, np.nan)
    return Cell(
        lattice_system=system,
        centring=centring,
        parameters=params,
        zero_shift_deg=zero,
        m=float(m),
        f=float(f),
        lines_indexed=n_indexed,
        lines_used=len(two_theta),
        hkl=hkl_of_line,
        two_theta_calc=calc_of_line,
        cell=conventional_cell(system, centring, g6),
    )


def _distinct_rows(coefficients: np.ndarray) -> int:
    """How many distinct rows ``coefficients`` (whole numbers) has: each row read as one
    integer in a mixed radix, which sorts far faster than rows do."""
    if len(coefficients) == 0:
        return 0
    whole = np.round(coefficients).astype(np.int64)
    whole -= whole.min(axis=0)
    radix = whole.max(axis=0) + 1
    if np.prod(radix.astype(float)) >= 2.0**62:
        return len(np.unique(whole, axis=0))
    places = np.concatenate([[1], np.cumprod(radix[:0:-1])])[::-1]
    return len(np.unique(whole @ places))


def conventional_cell(system: str, centring: str, g6: np.ndarray) -> dict[str, float]:
    """Lengths (Å), angles (degrees) and volume (Å³) of the conventional cell: orthorhombic
    axes in increasing length (a < b for C), monoclinic reduced in the ac plane with β >= 90
    degrees (a <= c for P), triclinic Niggli-reduced (spglib)."""
    cell = cell_of_metric(g6)
    if system == "orthorhombic":
        lengths = [cell["a"], cell["b"], cell["c"]]
        if centring == "C":
            lengths[:2] = sorted(lengths[:2])
        else:
            lengths = sorted(lengths)
        cell.update(a=lengths[0], b=lengths[1], c=lengths[2])
    elif system == "monoclinic":
        cell.update(_reduced_monoclinic(cell["a"], cell["c"], cell["beta"], centring))
    elif system == "triclinic":
        reduced = _spglib("niggli_reduce", lattice_vectors(cell))
        if reduced is not None:
            cell = cell_of_metric(metric_of_lattice(np.asarray(reduced)))
    return cell


def _reduced_monoclinic(a: float, c: float, beta: float, centring: str) -> dict[str, float]:
    """a, c (Å) and β (degrees) of the shortest monoclinic setting of the ac net: for P,
    Gauss-reduced (the two shortest vectors, then a <= c); for C (centred in the ab face),
    c shortened by whole vectors a only, which keeps the centring. β made obtuse."""
    angle = math.radians(beta)
    u = np.array([a, 0.0])
    v = np.array([c * math.cos(angle), c * math.sin(angle)])
    for _ in range(100):
        if centring == "P" and u @ u > v @ v:
            u, v = v, u
        shift = round(float(u @ v / (u @ u)))
        if shift == 0:
            break
        v = v - shift * u
    if centring == "P" and u @ u > v @ v:
        u, v = v, u
    beta_new = math.degrees(math.acos(np.clip(u @ v / math.hypot(*u) / math.hypot(*v), -1, 1)))
    return {"a": math.hypot(*u), "c": math.hypot(*v), "beta": max(beta_new, 180 - beta_new)}


# --- the search -------------------------------------------------------------------------


def _zero_grid(settings: IndexSettings) -> np.ndarray:
    if settings.zero_shift_deg <= 0 or settings.zero_step_deg <= 0:
        return np.zeros(1)
    steps = math.floor(settings.zero_shift_deg / settings.zero_step_deg + 1e-9)
    grid = np.arange(-steps, steps + 1) * settings.zero_step_deg
    return grid[np.argsort(np.abs(grid), kind="stable")]


def search(
    system: str,
    two_theta: np.ndarray,
    sigma_deg: np.ndarray,
    wavelength: float,
    settings: IndexSettings,
    deadline: float = math.inf,
) -> Cell | None:
    """The best cell of one lattice system for the lines at ``two_theta`` (degrees,
    increasing), or None when no trial cell indexes enough of the first lines."""
    form = FORMS[system]
    n_quick = min(settings.quick_lines, len(two_theta))
    quick = two_theta[:n_quick]
    max_misses = int(SEARCH_MISSES_PER_LINE * n_quick)
    base = min(settings.base_lines, len(two_theta))
    best: Cell | None = None
    # Zero shifts from 0 outwards; a settled cell (every line, a high M(N)) ends the scan.
    for zero in _zero_grid(settings):
        if time.perf_counter() > deadline or (best is not None and _settles(best, settings)):
            break
        q_lines = _line_q(two_theta, zero, wavelength)
        q_base = q_lines[:base]
        if system == "triclinic":
            params = _triclinic_trials(q_base, q_lines[: 2 * base])
        else:
            params = _solve_trials(system, q_base)
        g6s, keep = _trial_metrics(
            np.ascontiguousarray(params), form.basis, settings.max_volume, MIN_CELL_EDGE
        )
        params, g6s = params[keep], g6s[keep]
        if len(params) == 0:
            continue
        low = _line_q(quick - settings.search_tolerance_deg, zero, wavelength)
        high = _line_q(quick + settings.search_tolerance_deg, zero, wavelength)
        tallies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        primitive = None
        for centring in form.centrings:
            for setting, _ in CENTRING_SETTINGS.get((system, centring), ((centring, None),)):
                tallies[setting] = _counts(g6s, low, high, setting, max_misses, primitive)
                if setting == "P":
                    primitive = tallies[setting][0] >= 0
        # Trial cells equal to an earlier one dropped, among those the count keeps.
        passing = np.flatnonzero(np.any([count >= 0 for count, _ in tallies.values()], axis=0))
        distinct = np.zeros(len(g6s), dtype=bool)
        distinct[passing[_unique_rows(g6s[passing])]] = True
        for centring in form.centrings:
            found, counts, scores = [], [], []
            for setting, order in CENTRING_SETTINGS.get((system, centring), ((centring, None),)):
                count, score = tallies[setting]
                good = (count >= 0) & distinct
                found.append(params[good] if order is None else params[good][:, list(order)])
                counts.append(count[good])
                scores.append(score[good])
            trials, count = np.concatenate(found), np.concatenate(counts)
            # Most lines first; among equals the closest fit.
            for t in np.lexsort((np.concatenate(scores), -count))[:MAX_TRIALS_REFINED]:
                cell = refine(
                    system, centring, trials[t], two_theta, sigma_deg, wavelength, settings, zero
                )
                if cell is not None and (best is None or _better(cell, best, settings)):
                    best = cell
    return best


@numba.njit(cache=True)
def _trial_metrics(
    params: np.ndarray, basis: np.ndarray, max_volume: float, min_edge: float
) -> tuple[np.ndarray, np.ndarray]:
    """The metrics (A, B, C, D, E, F) of trial parameters (rows) and whether each is a cell
    the search considers (:func:`_plausible`): one pass over the hundreds of thousands of
    triclinic trials."""
    n, p = params.shape
    g6s = np.zeros((n, 6))
    keep = np.zeros(n, dtype=np.bool_)
    for t in range(n):
        for i in range(6):
            total = 0.0
            for j in range(p):
                if basis[i, j] != 0:
                    total += basis[i, j] * params[t, j]
            g6s[t, i] = total
        keep[t] = _plausible_one(g6s[t], max_volume, min_edge)
    return g6s, keep


def _counts(
    g6s: np.ndarray,
    q_low: np.ndarray,
    q_high: np.ndarray,
    centring: str,
    max_misses: int,
    primitive: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_count_indexed` of the trial cells for one centring setting. A centring only
    removes reflections, so a cell that misses too many lines as P (``primitive``: the
    P count's passes, None when not counted) misses them centred too: only the others are
    counted."""
    code = CENTRING_CODES[centring]
    if primitive is None or centring == "P":
        return _count_indexed(g6s, q_low, q_high, code, max_misses)
    counts = np.full(len(g6s), -1, dtype=np.int64)
    scores = np.full(len(g6s), np.inf)
    rows = np.flatnonzero(primitive)
    if len(rows):
        counts[rows], scores[rows] = _count_indexed(
            np.ascontiguousarray(g6s[rows]), q_low, q_high, code, max_misses
        )
    return counts, scores


def _unique_rows(g6s: np.ndarray) -> np.ndarray:
    """Rows of the trial cells (metrics) that no earlier one equals to 1 part in 10⁵, in
    order."""
    if len(g6s) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.round(g6s / np.abs(g6s).max(axis=1, keepdims=True).clip(1e-12) * 1e5)
    keys = keys + np.round(np.log(np.abs(g6s[:, :1]) + 1e-12) * 1e5) * 1e6
    # One number per row: a fixed random projection of the integer keys.
    hashes = keys @ np.random.default_rng(0).uniform(1, 2, g6s.shape[1])
    _, first = np.unique(hashes, return_index=True)
    first.sort()
    return first


def _better(cell: Cell, other: Cell, settings: IndexSettings) -> bool:
    """Of two cells of one lattice system, the one that indexes the lines a solution must
    (:func:`required_lines`) with the higher merit (M(N) discounted for unindexed lines,
    :attr:`Cell.merit`), as DICVOL ranks its solutions by M(N); among cells that index
    fewer, the one that indexes more. A large wrong cell can index every line, but only with
    a low M(N); a sub-cell that leaves the superstructure lines out pays for each."""

    def key(c: Cell) -> tuple[bool, float, float]:
        enough = c.lines_indexed >= required_lines(c.lattice_system, c.lines_used, settings)
        return (enough, c.merit if enough else c.lines_indexed, c.merit)

    return key(cell) > key(other)


def required_lines(system: str, n_lines: int, settings: IndexSettings) -> int:
    """Lines a solution of ``system`` must index out of ``n_lines``: all but the unindexed
    share, and at least twice its parameters plus the zero shift, so that a cell with many
    free parameters cannot fit a few lines by construction."""
    allowed_misses = int(settings.max_unindexed_share * n_lines + 1e-9)
    return max(n_lines - allowed_misses, 2 * (FORMS[system].n_parameters + 1))


def is_solution(cell: Cell, settings: IndexSettings) -> bool:
    """Whether a cell passes: M(N) >= the threshold (higher with fewer than 20 lines: de
    Wolff's M(N) of a right cell grows with fewer lines) and enough lines indexed."""
    threshold = settings.min_figure_of_merit * max(1.0, 20 / max(cell.lines_used, 1))
    return cell.m >= threshold and cell.lines_indexed >= required_lines(
        cell.lattice_system, cell.lines_used, settings
    )


def choose(candidates: dict[str, Cell], settings: IndexSettings) -> tuple[Cell | None, str | None]:
    """The most symmetric solution whose merit (:attr:`Cell.merit`: M(N) discounted for
    unindexed lines) is at least ``symmetry_ratio`` of every less symmetric solution's; with
    the reason when no lattice system gives a solution."""
    solutions = [candidates[s] for s in LATTICE_SYSTEMS if s in candidates]
    solutions = [cell for cell in solutions if is_solution(cell, settings)]
    for position, cell in enumerate(solutions):
        lower = solutions[position + 1 :]
        if all(cell.merit >= settings.symmetry_ratio * other.merit for other in lower):
            return cell, None
    if not candidates:
        return None, "no trial cell of any lattice system indexes the first lines"
    best = max(candidates.values(), key=lambda cell: (cell.lines_indexed, cell.m))
    return None, (
        f"no cell passes (best: {best.lattice_system} {best.centring}, M = {best.m:.1f}, "
        f"{best.lines_indexed} of {best.lines_used} lines indexed)"
    )


def _settles(cell: Cell, settings: IndexSettings) -> bool:
    """Whether ``cell`` is a solution whose merit reaches ``settled_figure_of_merit``
    (raised as 20 / N for fewer lines, as in :func:`is_solution`)."""
    if settings.settled_figure_of_merit <= 0 or not is_solution(cell, settings):
        return False
    scale = max(1.0, 20 / max(cell.lines_used, 1))
    return cell.merit >= settings.settled_figure_of_merit * scale


def _settled(candidates: dict[str, Cell], settings: IndexSettings) -> bool:
    """Whether the solution so far settles the search (:func:`_settles`)."""
    best, _ = choose(candidates, settings)
    return best is not None and _settles(best, settings)


def index_lines(
    two_theta_deg: np.ndarray,
    wavelength: float,
    sigma_deg: np.ndarray | None = None,
    settings: IndexSettings | None = None,
    intensity: np.ndarray | None = None,
) -> IndexResult:
    """Index lines at ``two_theta_deg`` (Kα1 positions, degrees) for ``wavelength`` Å.

    Args:
        two_theta_deg: peak positions, degrees 2θ; the first ``settings.n_lines`` in
            increasing order are used.
        wavelength: Å (the Kα1 line when the peaks are Kα1 positions).
        sigma_deg: 1σ position uncertainty of each line, degrees (weights of the fit).
        settings: search settings; the defaults when None.
        intensity: each line's intensity; lines weaker than
            ``settings.min_relative_intensity`` of the strongest are left out.
    """
    settings = settings or IndexSettings()
    started = time.perf_counter()
    two_theta = np.asarray(two_theta_deg, dtype=float)
    if two_theta.ndim != 1 or not np.all(np.isfinite(two_theta)):
        raise XrdsymError("peak positions must be a list of finite angles")
    if not wavelength > 0:
        raise XrdsymError(f"wavelength must be > 0 Å, not {wavelength!r}")
    sigma = (
        np.full(len(two_theta), MIN_SIGMA_DEG)
        if sigma_deg is None
        else np.asarray(sigma_deg, dtype=float)
    )
    strong = np.ones(len(two_theta), dtype=bool)
    if intensity is not None and len(two_theta):
        intensity = np.asarray(intensity, dtype=float)
        strong = intensity >= settings.min_relative_intensity * intensity.max()
        # A scan with few lines needs every one of them.
        if strong.sum() < settings.n_lines // 2:
            strong[:] = True
    order = np.flatnonzero(strong)[np.argsort(two_theta[strong], kind="stable")]
    order = order[: settings.n_lines]
    two_theta, sigma = two_theta[order], sigma[order]
    keep = (two_theta > 0) & (two_theta < 180)
    two_theta, sigma = two_theta[keep], sigma[keep]

    def result(best, reason, candidates, spent, not_searched=()) -> IndexResult:
        return IndexResult(
            not_searched=tuple(not_searched),
            best=best,
            reason=reason,
            candidates=candidates,
            two_theta=two_theta,
            wavelength=wavelength,
            seconds=time.perf_counter() - started,
            budget_spent=spent,
        )

    if len(two_theta) < settings.min_lines:
        return result(
            None,
            f"{len(two_theta)} significant peaks, fewer than the {settings.min_lines} "
            "needed to index",
            {},
            False,
        )
    deadline = started + settings.time_budget_s
    candidates: dict[str, Cell] = {}
    spent = False
    not_searched = []
    for system in LATTICE_SYSTEMS:
        if spent or time.perf_counter() > deadline or _settled(candidates, settings):
            spent = spent or time.perf_counter() > deadline
            not_searched.append(system)
            continue
        if len(two_theta) < 2 * (FORMS[system].n_parameters + 1):
            continue
        cell = search(system, two_theta, sigma, wavelength, settings, deadline)
        if cell is not None and (
            system not in candidates or _better(cell, candidates[system], settings)
        ):
            candidates[system] = cell
        if system == "hexagonal" and cell is not None:
            # The rhombohedral condition on the hexagonal cell: an R lattice's lines are a
            # subset of its hexagonal cell's, so a P cell always fits them too.
            derived = refine(
                "rhombohedral",
                "R",
                cell.parameters,
                two_theta,
                sigma,
                wavelength,
                settings,
                cell.zero_shift_deg,
            )
            if derived is not None:
                candidates["rhombohedral"] = derived
    best, reason = choose(candidates, settings)
    if best is not None and settings.metric_tolerance > 0:
        promoted = promote(best, two_theta, sigma, wavelength, settings)
        if promoted is not None:
            candidates[promoted.lattice_system] = promoted
            best = promoted
    if spent and best is None:
        reason = f"time budget of {settings.time_budget_s:g} s spent; {reason}"
    return result(best, reason, candidates, spent, not_searched)


def promote(
    cell: Cell,
    two_theta: np.ndarray,
    sigma_deg: np.ndarray,
    wavelength: float,
    settings: IndexSettings,
) -> Cell | None:
    """The cell of the more symmetric lattice system that ``cell``'s metric has within
    ``settings.metric_tolerance`` of the cell size, refined in that system on the same
    lines, when it is still a solution; None when the metric is no more symmetric or the
    refined cell fails. Lines split by less than the powder resolution (a monoclinic β of
    90.02 degrees, an orthorhombic a = b to 0.1 %) do not make a lower lattice system: the
    positions do not fix it, as Conograph and the metric oracle read them."""
    vectors = lattice_vectors(cell.cell)
    points = CENTRING_TRANSLATIONS[cell.centring]
    structure = (vectors, points, [1] * len(points))
    size = abs(np.linalg.det(vectors)) ** (1 / 3)
    dataset = _spglib("get_symmetry_dataset", structure, symprec=settings.metric_tolerance * size)
    if dataset is None:
        return None
    system = _lattice_system_of_space_group(dataset.number, dataset.international)
    if LATTICE_SYSTEMS.index(system) >= LATTICE_SYSTEMS.index(cell.lattice_system):
        return None
    centring = dataset.international[0]
    if centring not in FORMS[system].centrings:
        return None
    conventional = np.asarray(dataset.std_lattice)
    form = FORMS[system]
    # The standardized cell's metric in the system's parameters (exact up to the tolerance).
    parameters, *_ = np.linalg.lstsq(form.basis, metric_of_lattice(conventional))
    promoted = refine(
        system,
        centring,
        parameters,
        two_theta,
        sigma_deg,
        wavelength,
        settings,
        cell.zero_shift_deg,
    )
    if promoted is None or not is_solution(promoted, settings):
        return None
    return promoted


# --- comparison with known lattices -------------------------------------------------------

CENTRING_TRANSLATIONS = {
    "P": [[0, 0, 0]],
    "I": [[0, 0, 0], [0.5, 0.5, 0.5]],
    "F": [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
    "C": [[0, 0, 0], [0.5, 0.5, 0]],
    "R": [[0, 0, 0], [2 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 2 / 3]],
}
"""Lattice points of each centring in the conventional cell (R: hexagonal axes, obverse)."""

ORACLE_TOLERANCE = 0.003
"""Tolerance of the metric oracle, a share of the cell size (the cube root of its volume):
0.3 %, a lattice's shape as far as powder peak positions fix it."""


def _lattice_system_of_space_group(number: int, symbol: str) -> str:
    if number <= 2:
        return "triclinic"
    if number <= 15:
        return "monoclinic"
    if number <= 74:
        return "orthorhombic"
    if number <= 142:
        return "tetragonal"
    if number <= 167:
        return "rhombohedral" if symbol.startswith("R") else "hexagonal"
    if number <= 194:
        return "hexagonal"
    return "cubic"


def _spglib(name: str, *args: Any, **kwargs: Any) -> Any:
    """spglib's ``name`` called with its old error handling (None on failure) and without the
    deprecation warning spglib 2.5+ gives for it on every call."""
    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(spglib, name)(*args, **kwargs)


def metric_lattice_system(
    vectors: np.ndarray, tolerance: float = ORACLE_TOLERANCE
) -> tuple[str, str]:
    """The lattice system and centring of a lattice (row vectors, Å) from its metric alone:
    spglib on the lattice with one atom, at ``tolerance`` of the cell size. What the peak
    positions of any crystal on this lattice allow, whatever its atoms (the metric oracle)."""
    vectors = np.asarray(vectors, dtype=float)
    size = abs(np.linalg.det(vectors)) ** (1 / 3)
    cell = (vectors, [[0.0, 0.0, 0.0]], [1])
    dataset = _spglib("get_symmetry_dataset", cell, symprec=tolerance * size)
    if dataset is None:
        return "triclinic", "P"
    symbol = dataset.international
    system = _lattice_system_of_space_group(dataset.number, symbol)
    return system, symbol[0] if symbol[0] in CENTRING_TRANSLATIONS else "P"


def reduced_cell(cell: dict[str, float], centring: str) -> np.ndarray:
    """a, b, c (Å) and alpha, beta, gamma (degrees) of the Niggli-reduced primitive cell of a
    conventional cell with ``centring``: unique for a lattice, so two descriptions of one
    lattice (a centred cell, a supercell's primitive, another monoclinic setting) compare."""
    vectors = lattice_vectors(cell)
    points = CENTRING_TRANSLATIONS[centring]
    primitive = _spglib(
        "find_primitive",
        (vectors, points, [1] * len(points)),
        symprec=1e-4 * abs(np.linalg.det(vectors)) ** (1 / 3),
    )
    lattice = vectors if primitive is None else np.asarray(primitive[0])
    reduced = _spglib("niggli_reduce", lattice)
    lattice = lattice if reduced is None else np.asarray(reduced)
    parameters = cell_of_metric(metric_of_lattice(lattice))
    return np.array([parameters[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")])
