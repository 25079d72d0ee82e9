import pytest
from pymatgen.core import Lattice, Structure

from xrdsym.symmetry import (
    CRYSTAL_SYSTEMS,
    SPACE_GROUP_RANGES,
    analyse_symmetry,
    crystal_system_of_space_group,
    target_classes,
)


def test_ranges_cover_all_230_space_groups_once():
    numbers = sorted(n for r in SPACE_GROUP_RANGES.values() for n in r)
    assert numbers == list(range(1, 231))
    assert len(CRYSTAL_SYSTEMS) == 7


@pytest.mark.parametrize(
    ("number", "system"),
    [
        (1, "triclinic"),
        (14, "monoclinic"),
        (62, "orthorhombic"),
        (136, "tetragonal"),
        (166, "trigonal"),
        (194, "hexagonal"),
        (225, "cubic"),
    ],
)
def test_crystal_system_of_space_group(number, system):
    assert crystal_system_of_space_group(number) == system


def test_space_group_out_of_range():
    with pytest.raises(ValueError):
        crystal_system_of_space_group(231)


def test_analysis_of_known_structures(rock_salt, rutile):
    assert analyse_symmetry(rock_salt, 0.1, 5) == (225, "cubic", "225:ab")
    # Ti on 2a, O on 4f.
    assert analyse_symmetry(rutile, 0.1, 5) == (136, "tetragonal", "136:af")


def test_structure_type_ignores_the_elements_but_not_the_arrangement():
    def rock_salt_of(a, cation, anion):
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(a), [cation, anion], [[0] * 3, [0.5] * 3]
        )

    nacl, kcl = rock_salt_of(5.64, "Na", "Cl"), rock_salt_of(6.29, "K", "Cl")
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    types = [analyse_symmetry(s, 0.1, 5)[2] for s in (nacl, kcl, cscl)]
    assert types[0] == types[1] == "225:ab"
    assert types[2] == "221:ab"
    # A supercell written in P1 is still rock salt.
    assert analyse_symmetry(nacl * (2, 1, 1), 0.1, 5)[2] == "225:ab"


def test_label_comes_from_the_atoms_not_from_how_the_cell_was_written():
    # An fcc arrangement written as a triclinic P1 cell with no symmetry declared.
    cell = Structure(
        Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    assert analyse_symmetry(cell, 0.1, 5)[:2] == (225, "cubic")


def test_target_classes():
    systems = ["cubic", "triclinic"]
    assert target_classes("crystal_system", systems) == systems
    assert target_classes("space_group", systems) == ["1", "2", *map(str, range(195, 231))]
    all_systems = ["cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal"]
    all_systems += ["triclinic", "trigonal"]
    assert target_classes("space_group", all_systems) == [str(n) for n in range(1, 231)]
