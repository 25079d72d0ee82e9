"""Synthetic crystals drawn from the Wyckoff and element statistics of real ones (after
Schopmans et al. 2023).

From the training structures: how often each space group occurs; per space group, how many
Wyckoff orbits are occupied and how often each Wyckoff letter is; how many distinct elements
share the orbits; which elements sit on orbits of each multiplicity; and how a cell's volume
compares with its atoms' covalent volumes. A synthetic crystal is drawn from these one choice
at a time (space group, number of orbits, a letter per orbit, an element per orbit, a volume),
so that new combinations of sites arise rather than copies of the real structure types, and
PyXtal places the atoms. Every item has its own random stream derived from (seed, index), so
the same seed gives the same crystals whatever the number of worker processes.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.synthetic import PlacementFailed, place_atoms
from xrdsym.symmetry import analyse_orbits

if TYPE_CHECKING:
    from pymatgen.core import Structure

K = TypeVar("K", int, str)

SOURCE_NAME = "synthesize"
ID_FORMAT = "synthetic:{:06d}"
# Pseudo-count of the overall element distribution added to each multiplicity's: an orbit
# of a multiplicity seen only a few times in training still draws from every element, in
# proportion to how often it occurs overall.
ELEMENT_PRIOR_COUNT = 10.0
# Volume ratios are drawn within this many standard deviations of the lognormal's mean: its
# tails hold badly stored cells (and molecules in large boxes), not plausible crystals.
VOLUME_CLIP_SIGMA = 2.5
# Chi-square: bins expected to hold fewer than this many draws are pooled into one, as the
# test's chi-square approximation needs about five per bin.
MIN_EXPECTED_COUNT = 5.0


@dataclass(frozen=True)
class OrbitSummary:
    """What the statistics keep of one training structure.

    Attributes:
        space_group: spglib's space-group number.
        letters: the Wyckoff letter of every occupied orbit.
        elements: the element on every orbit, in the order of ``letters``.
        volume_ratio: cell volume over the sum of its atoms' covalent sphere volumes.
    """

    space_group: int
    letters: tuple[str, ...]
    elements: tuple[str, ...]
    volume_ratio: float


@dataclass(frozen=True)
class WyckoffStatistics:
    """Counts over the training structures that synthetic crystals are drawn from.

    Attributes:
        n_structures: training structures counted.
        space_groups: structures per space-group number.
        n_orbits: per space group, structures per number of occupied orbits.
        letters: per space group, occupied orbits per Wyckoff letter.
        n_elements: per number of orbits, structures per number of distinct elements.
        elements: per Wyckoff multiplicity (conventional cell), orbits per element.
        log_volume_ratio_mean: mean of ln(volume / sum of covalent sphere volumes).
        log_volume_ratio_std: its standard deviation.
    """

    n_structures: int
    space_groups: dict[int, int]
    n_orbits: dict[int, dict[int, int]]
    letters: dict[int, dict[str, int]]
    n_elements: dict[int, dict[int, int]]
    elements: dict[int, dict[str, int]]
    log_volume_ratio_mean: float
    log_volume_ratio_std: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WyckoffStatistics:
        """The statistics from :meth:`to_json`'s dict, also after a JSON round trip (which
        turns the integer keys into text)."""

        def ints(counts: Mapping[Any, int]) -> dict[int, int]:
            return {int(key): int(value) for key, value in counts.items()}

        def nested(counts: Mapping[Any, Mapping[Any, int]], inner) -> dict[int, dict]:
            return {int(key): inner(value) for key, value in counts.items()}

        def texts(counts: Mapping[str, int]) -> dict[str, int]:
            return {str(key): int(value) for key, value in counts.items()}

        return cls(
            n_structures=int(data["n_structures"]),
            space_groups=ints(data["space_groups"]),
            n_orbits=nested(data["n_orbits"], ints),
            letters=nested(data["letters"], texts),
            n_elements=nested(data["n_elements"], ints),
            elements=nested(data["elements"], texts),
            log_volume_ratio_mean=float(data["log_volume_ratio_mean"]),
            log_volume_ratio_std=float(data["log_volume_ratio_std"]),
        )


@dataclass(frozen=True)
class WyckoffSettings:
    """How crystals are drawn from the statistics.

    Attributes:
        max_atoms: most atoms in the conventional cell.
        max_attempts: draws (orbits, elements, volume, positions) in the item's space group
            before giving up on an item.
        attempt_timeout_s: seconds one PyXtal placement may take before it counts as failed.
    """

    max_atoms: int
    max_attempts: int
    attempt_timeout_s: float


@dataclass(frozen=True)
class CrystalDraw:
    """One draw from the statistics: the space group, the occupied orbits as (Wyckoff letter,
    element) and the conventional cell's volume in Å³."""

    space_group: int
    sites: tuple[tuple[str, str], ...]
    volume: float

    def pyxtal_inputs(self) -> tuple[list[str], list[int], list[list[str]]]:
        """Species, atoms of each in the conventional cell, and each one's Wyckoff sites as
        PyXtal names them ("4a"), for ``pyxtal.from_random``."""
        table = wyckoff_table(self.space_group)
        sites: dict[str, list[str]] = {}
        for letter, element in self.sites:
            sites.setdefault(element, []).append(f"{table[letter][0]}{letter}")
        counts = [sum(int(name[:-1]) for name in names) for names in sites.values()]
        return list(sites), counts, list(sites.values())


@functools.cache
def wyckoff_table(space_group: int) -> dict[str, tuple[int, int]]:
    """Multiplicity (conventional cell) and free parameters of every Wyckoff letter of a space
    group, from PyXtal's tables (ITA standard settings, as spglib's letters)."""
    from pyxtal.symmetry import Group

    return {
        wp.letter: (int(wp.multiplicity), int(wp.get_dof()))
        for wp in Group(space_group).Wyckoff_positions
    }


@functools.cache
def covalent_volume(element: str) -> float:
    """Volume of an atom's covalent sphere, Å³, with PyXtal's radii (those its distance checks
    use)."""
    from pyxtal.database.element import Element

    radius = Element(element).covalent_radius
    if radius is None or not radius > 0:
        raise ValueError(f"no covalent radius for {element}")
    return 4 / 3 * math.pi * radius**3


def summarise_record(
    data: dict[str, Any], symprec: float, angle_tolerance: float
) -> OrbitSummary | Reject:
    """The orbits, elements and volume ratio of one stored structure, or why it cannot be
    counted."""
    record_id = data.get("id", "<no id>")
    try:
        structure = StructureRecord.from_json(data).structure
        orbits = analyse_orbits(structure, symprec, angle_tolerance)
        table = wyckoff_table(orbits.space_group)
        missing = [letter for letter in orbits.letters if letter not in table]
        if missing:
            raise ValueError(
                f"Wyckoff letter {missing[0]} is not in PyXtal's table of space group "
                f"{orbits.space_group}"
            )
        atoms = Counter(
            max(site.species.items(), key=lambda item: item[1])[0].symbol for site in structure
        )
        reference = sum(count * covalent_volume(element) for element, count in atoms.items())
        for element in orbits.elements:
            covalent_volume(element)
    except Exception as exc:  # any failure of one structure is recorded, never fatal
        return Reject(record_id, "synthesize:statistics", f"{exc.__class__.__name__}: {exc}")
    return OrbitSummary(
        orbits.space_group, orbits.letters, orbits.elements, structure.volume / reference
    )


def _sorted_counts(counts: Mapping[K, Counter]) -> dict[K, dict]:
    return {key: dict(sorted(counts[key].items())) for key in sorted(counts)}


def wyckoff_statistics(summaries: Iterable[OrbitSummary]) -> WyckoffStatistics:
    """The counts of :class:`WyckoffStatistics` over ``summaries``."""
    space_groups: Counter = Counter()
    n_orbits: dict[int, Counter] = defaultdict(Counter)
    letters: dict[int, Counter] = defaultdict(Counter)
    n_elements: dict[int, Counter] = defaultdict(Counter)
    elements: dict[int, Counter] = defaultdict(Counter)
    log_ratios = []
    for summary in summaries:
        group = summary.space_group
        table = wyckoff_table(group)
        space_groups[group] += 1
        n_orbits[group][len(summary.letters)] += 1
        letters[group].update(summary.letters)
        n_elements[len(summary.letters)][len(set(summary.elements))] += 1
        for letter, element in zip(summary.letters, summary.elements, strict=True):
            elements[table[letter][0]][element] += 1
        log_ratios.append(math.log(summary.volume_ratio))
    return WyckoffStatistics(
        n_structures=len(log_ratios),
        space_groups=dict(sorted(space_groups.items())),
        n_orbits=_sorted_counts(n_orbits),
        letters=_sorted_counts(letters),
        n_elements=_sorted_counts(n_elements),
        elements=_sorted_counts(elements),
        log_volume_ratio_mean=float(np.mean(log_ratios)) if log_ratios else 0.0,
        log_volume_ratio_std=float(np.std(log_ratios)) if log_ratios else 0.0,
    )


def _choice(weights: Mapping[K, float], rng: np.random.Generator) -> K:
    """A key of ``weights`` drawn in proportion to its weight (keys in sorted order, so that a
    draw does not depend on the order the mapping was built in)."""
    keys = sorted(weights)
    p = np.asarray([weights[key] for key in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_space_group(statistics: WyckoffStatistics, rng: np.random.Generator) -> int:
    """A space-group number drawn with the training structures' frequencies."""
    if not statistics.space_groups:
        raise ValueError("no training structures to draw from")
    return _choice(statistics.space_groups, rng)


def draw_letters(
    statistics: WyckoffStatistics, space_group: int, rng: np.random.Generator, max_atoms: int
) -> list[str] | None:
    """Wyckoff letters of the occupied orbits of a crystal in ``space_group``: their number
    (among those that can fit within ``max_atoms`` atoms) and each letter drawn with the
    training frequencies, among the letters that still fit; a position without free
    parameters is occupied at most once.

    Returns None when no letter fits before the drawn number of orbits is reached.
    """
    table = wyckoff_table(space_group)
    frequencies = statistics.letters[space_group]
    # Only numbers of orbits that can fit: big cells of the training set would otherwise
    # fail every draw of their space group.
    smallest = min(table[letter][0] for letter in frequencies)
    fitting = {
        n: count
        for n, count in statistics.n_orbits[space_group].items()
        if n * smallest <= max_atoms
    }
    if not fitting:
        return None
    n_orbits = _choice(fitting, rng)
    letters: list[str] = []
    atoms = 0
    for _ in range(n_orbits):
        allowed = {
            letter: count
            for letter, count in frequencies.items()
            if atoms + table[letter][0] <= max_atoms
            and (table[letter][1] > 0 or letter not in letters)
        }
        if not allowed:
            return None
        letters.append(_choice(allowed, rng))
        atoms += table[letters[-1]][0]
    return letters


def _element_weights(statistics: WyckoffStatistics, multiplicity: int) -> dict[str, float]:
    """Element weights of an orbit of ``multiplicity``: the counts seen on such orbits plus
    ELEMENT_PRIOR_COUNT times the overall element frequencies."""
    overall: Counter = Counter()
    for counts in statistics.elements.values():
        overall.update(counts)
    total = sum(overall.values())
    seen = statistics.elements.get(multiplicity, {})
    return {
        element: seen.get(element, 0) + ELEMENT_PRIOR_COUNT * count / total
        for element, count in overall.items()
    }


def draw_elements(
    statistics: WyckoffStatistics, multiplicities: Sequence[int], rng: np.random.Generator
) -> list[str]:
    """An element for each orbit (of the given multiplicities): the number of distinct
    elements drawn with the training frequencies for that many orbits; in a random order, the
    first orbits each take a new element and the rest one of those, each drawn with the
    weights of its multiplicity (:func:`_element_weights`)."""
    n = len(multiplicities)
    n_distinct = min(_choice(statistics.n_elements[n], rng), n)
    elements: list[str | None] = [None] * n
    chosen: list[str] = []
    for position, orbit in enumerate(rng.permutation(n)):
        weights = _element_weights(statistics, multiplicities[orbit])
        if position < n_distinct:
            weights = {e: w for e, w in weights.items() if e not in chosen} or weights
        else:
            weights = {e: weights[e] for e in chosen}
        elements[orbit] = _choice(weights, rng)
        if elements[orbit] not in chosen:
            chosen.append(elements[orbit])
    return elements


def draw_volume(
    statistics: WyckoffStatistics, atoms: Mapping[str, int], rng: np.random.Generator
) -> float:
    """A conventional-cell volume in Å³ for ``atoms`` (atoms per element): their covalent
    volumes times a ratio drawn from the training lognormal, within VOLUME_CLIP_SIGMA."""
    z = float(np.clip(rng.standard_normal(), -VOLUME_CLIP_SIGMA, VOLUME_CLIP_SIGMA))
    ratio = math.exp(statistics.log_volume_ratio_mean + statistics.log_volume_ratio_std * z)
    return ratio * sum(count * covalent_volume(element) for element, count in atoms.items())


def draw_crystal(
    statistics: WyckoffStatistics, space_group: int, rng: np.random.Generator, max_atoms: int
) -> CrystalDraw | None:
    """Orbits, elements and volume of a crystal in ``space_group``, or None when the letters
    drawn do not fit within ``max_atoms``."""
    letters = draw_letters(statistics, space_group, rng, max_atoms)
    if letters is None:
        return None
    table = wyckoff_table(space_group)
    multiplicities = [table[letter][0] for letter in letters]
    elements = draw_elements(statistics, multiplicities, rng)
    atoms: Counter = Counter()
    for element, multiplicity in zip(elements, multiplicities, strict=True):
        atoms[element] += multiplicity
    volume = draw_volume(statistics, atoms, rng)
    return CrystalDraw(space_group, tuple(zip(letters, elements, strict=True)), volume)


def build_crystal(
    statistics: WyckoffStatistics,
    space_group: int,
    rng: np.random.Generator,
    settings: WyckoffSettings,
) -> tuple[Structure, CrystalDraw]:
    """A crystal drawn from ``statistics`` in ``space_group`` and placed by PyXtal in a cell
    of the drawn volume, with the draw it came from. Raises RuntimeError when no draw
    succeeds within ``settings.max_attempts``."""
    from pyxtal.lattice import Lattice

    last_error = f"no orbits fit within max_atoms={settings.max_atoms}"
    for _ in range(settings.max_attempts):
        draw = draw_crystal(statistics, space_group, rng, settings.max_atoms)
        if draw is None:
            continue
        species, counts, sites = draw.pyxtal_inputs()
        seed = int(rng.integers(2**31))
        try:
            # A lattice of the drawn volume whose shape PyXtal draws (again on each retry).
            lattice = Lattice(_lattice_type(space_group), draw.volume, random_state=seed)
        except Exception as exc:  # PyXtal signals failures with many exception types
            last_error = f"pyxtal lattice: {exc.__class__.__name__}: {exc}"
            continue
        try:
            structure = place_atoms(
                space_group,
                species,
                counts,
                settings.attempt_timeout_s,
                random_state=int(rng.integers(2**31)),
                lattice=lattice,
                sites=sites,
                # One PyXtal try per draw: a draw that does not fit at once is drawn anew
                # (another volume, other elements) rather than retried as it is.
                max_count=1,
            )
        except PlacementFailed as exc:
            last_error = str(exc)
            continue
        return structure, draw
    raise RuntimeError(f"{last_error} (after {settings.max_attempts} attempts)")


@functools.cache
def _lattice_type(space_group: int) -> str:
    from pyxtal.symmetry import Group

    return Group(space_group).lattice_type


def generate_item(
    index: int, statistics: WyckoffStatistics, seed: int, settings: WyckoffSettings
) -> tuple[int, StructureRecord | Reject]:
    """Synthetic crystal number ``index``: the space group drawn for it, and its record (or
    why none came out). The space group is drawn once per item, so that the items follow the
    training frequencies whatever fails afterwards."""
    item_id = ID_FORMAT.format(index)
    rng = np.random.default_rng([seed, index])
    space_group = draw_space_group(statistics, rng)
    try:
        structure, draw = build_crystal(statistics, space_group, rng, settings)
    except RuntimeError as exc:
        return space_group, Reject(
            item_id, "synthesize:generate", f"space group {space_group}: {exc}"
        )
    meta = {
        "requested_space_group": space_group,
        "requested_sites": [f"{letter} {element}" for letter, element in draw.sites],
        "requested_volume": round(draw.volume, 3),
    }
    return space_group, StructureRecord(item_id, SOURCE_NAME, structure, meta)


def chi_square_fit(observed: Mapping[int, int], frequencies: Mapping[int, int]) -> dict[str, Any]:
    """Chi-square goodness of fit of ``observed`` counts per space group against the
    ``frequencies`` they were meant to follow.

    Bins expected to hold fewer than MIN_EXPECTED_COUNT are pooled into one; space groups
    absent from ``frequencies`` are counted apart (``n_outside``), not tested.
    """
    from scipy.stats import chisquare

    inside = {group: observed.get(group, 0) for group in frequencies}
    n = sum(inside.values())
    result: dict[str, Any] = {
        "n": n,
        "n_outside": sum(c for g, c in observed.items() if g not in frequencies),
        "statistic": None,
        "dof": None,
        "p_value": None,
    }
    total = sum(frequencies.values())
    if n == 0 or total == 0:
        return result
    groups = sorted(frequencies)
    expected = np.asarray([n * frequencies[g] / total for g in groups])
    counts = np.asarray([inside[g] for g in groups], dtype=float)
    small = expected < MIN_EXPECTED_COUNT
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        counts = np.append(counts[~small], counts[small].sum())
    if len(expected) < 2:
        return result
    test = chisquare(counts, expected)
    result.update(
        statistic=round(float(test.statistic), 4),
        dof=len(expected) - 1,
        p_value=float(test.pvalue),
    )
    return result
