"""Crystal systems and the symmetry analysis that labels every structure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

if TYPE_CHECKING:
    from pymatgen.core import Structure

# The seven crystal systems with their space-group numbers (International Tables, Vol. A).
SPACE_GROUP_RANGES: dict[str, range] = {
    "triclinic": range(1, 3),
    "monoclinic": range(3, 16),
    "orthorhombic": range(16, 75),
    "tetragonal": range(75, 143),
    "trigonal": range(143, 168),
    "hexagonal": range(168, 195),
    "cubic": range(195, 231),
}
CRYSTAL_SYSTEMS: tuple[str, ...] = tuple(sorted(SPACE_GROUP_RANGES))


# What a model can be trained to predict (params: target).
TARGETS = ("crystal_system", "space_group")


def target_classes(target: str, crystal_systems: Sequence[str]) -> list[str]:
    """The class names of ``target``: the crystal systems themselves, or every space-group
    number (as text, "1" to "230") of those crystal systems, in numerical order."""
    if target == "crystal_system":
        return list(crystal_systems)
    numbers = (n for system in crystal_systems for n in SPACE_GROUP_RANGES[system])
    return [str(n) for n in sorted(numbers)]


def crystal_system_of_space_group(number: int) -> str:
    """The crystal system a space group (1-230) belongs to."""
    for system, numbers in SPACE_GROUP_RANGES.items():
        if number in numbers:
            return system
    raise ValueError(f"space group number must be in 1..230, got {number}")


# Trigonal space groups on a rhombohedral lattice (R3, R-3, R32, R3m, R3c, R-3m, R-3c); the
# other trigonal groups have a hexagonal lattice.
RHOMBOHEDRAL_SPACE_GROUPS = frozenset({146, 148, 155, 160, 161, 166, 167})


def lattice_system_of_space_group(number: int) -> str:
    """The lattice system of a space group (1-230): its crystal system's, except that trigonal
    groups have a rhombohedral lattice (R) or a hexagonal one (P, as quartz's)."""
    system = crystal_system_of_space_group(number)
    if system == "trigonal":
        return "rhombohedral" if number in RHOMBOHEDRAL_SPACE_GROUPS else "hexagonal"
    return system


def structure_type_key(space_group: int, wyckoff_letters: Sequence[str]) -> str:
    """An element-agnostic structure type: the space group and the sorted Wyckoff letters of
    the occupied orbits (AFLOW's prototype idea), e.g. ``225:ab`` for rock salt."""
    return f"{space_group}:{''.join(sorted(wyckoff_letters))}"


@dataclass(frozen=True)
class SymmetryOrbits:
    """What spglib finds for a structure: its space group and, per crystallographic orbit (in
    the order of the orbit's first site), the Wyckoff letter and the element on it (the most
    abundant one on a disordered site)."""

    space_group: int
    crystal_system: str
    letters: tuple[str, ...]
    elements: tuple[str, ...]

    @property
    def structure_type(self) -> str:
        return structure_type_key(self.space_group, self.letters)


def analyse_orbits(structure: Structure, symprec: float, angle_tolerance: float) -> SymmetryOrbits:
    """Space group, crystal system and occupied Wyckoff orbits that spglib finds for
    ``structure``.

    Args:
        structure: the crystal structure.
        symprec: distance tolerance in Å.
        angle_tolerance: angle tolerance in degrees.
    """
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    dataset = analyzer.get_symmetry_dataset()
    # One letter per crystallographic orbit: its first atom stands for all of it.
    orbits = sorted(set(dataset.equivalent_atoms))
    elements = []
    for atom in orbits:
        species, _ = max(structure[int(atom)].species.items(), key=lambda item: item[1])
        elements.append(species.symbol)
    return SymmetryOrbits(
        space_group=analyzer.get_space_group_number(),
        crystal_system=analyzer.get_crystal_system(),
        letters=tuple(str(dataset.wyckoffs[atom]) for atom in orbits),
        elements=tuple(elements),
    )


def analyse_symmetry(
    structure: Structure, symprec: float, angle_tolerance: float
) -> tuple[int, str, str]:
    """Space-group number, crystal system and structure type that spglib finds for
    ``structure`` (see :func:`structure_type_key` and :func:`analyse_orbits`)."""
    orbits = analyse_orbits(structure, symprec, angle_tolerance)
    return orbits.space_group, orbits.crystal_system, orbits.structure_type
