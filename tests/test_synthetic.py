import numpy as np
from pyxtal.symmetry import Group

from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.synthetic import SyntheticSettings, iter_synthetic, random_composition
from xrdsym.symmetry import SPACE_GROUP_RANGES

SETTINGS = SyntheticSettings(
    elements=("Na", "Cl", "Mg", "O", "Si", "Ti", "Fe", "Ba"),
    max_species=3,
    max_atoms=24,
    volume_factor=1.1,
    max_attempts=20,
)
CLASSES = ["cubic", "monoclinic", "trigonal"]


def _structures(seed, n_jobs):
    return [
        item
        for item in iter_synthetic(CLASSES, 3, seed, n_jobs, SETTINGS)
        if isinstance(item, StructureRecord)
    ]


def test_balanced_and_built_in_the_asked_system():
    items = list(iter_synthetic(CLASSES, 3, 7, 1, SETTINGS))
    assert len(items) == 9
    assert not [item for item in items if isinstance(item, Reject)]
    for item in items:
        system = item.meta["requested_crystal_system"]
        assert item.meta["requested_space_group"] in SPACE_GROUP_RANGES[system]
        assert item.id.startswith(f"syn-{system}-")
        assert len(item.structure) <= SETTINGS.max_atoms


def test_same_seed_same_structures_whatever_the_number_of_workers():
    serial = _structures(seed=7, n_jobs=1)
    parallel = _structures(seed=7, n_jobs=2)
    assert [s.id for s in serial] == [s.id for s in parallel]
    assert all(a.structure == b.structure for a, b in zip(serial, parallel, strict=True))


def test_other_seed_other_structures():
    first, other = _structures(seed=7, n_jobs=1), _structures(seed=8, n_jobs=1)
    assert any(a.structure != b.structure for a, b in zip(first, other, strict=True))


def test_random_composition_fills_whole_orbits():
    rng = np.random.default_rng(0)
    group = Group(225)
    for _ in range(50):
        composition = random_composition(group, rng, SETTINGS)
        if composition is None:
            continue
        species, counts = composition
        assert len(set(species)) == len(species) <= SETTINGS.max_species
        assert sum(counts) <= SETTINGS.max_atoms
        assert group.check_compatible(counts)[0]


def test_records_survive_a_json_round_trip():
    record = _structures(seed=7, n_jobs=1)[0]
    again = StructureRecord.from_json(record.to_json())
    assert again.id == record.id and again.meta == record.meta
    assert again.structure == record.structure
