import time
from pathlib import Path

import numpy as np
import pytest
from pyxtal.symmetry import Group

from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.synthetic import (
    AttemptTimeout,
    SyntheticSettings,
    _time_limit,
    iter_synthetic,
    random_composition,
)
from xrdsym.symmetry import SPACE_GROUP_RANGES

SETTINGS = SyntheticSettings(
    elements=("Na", "Cl", "Mg", "O", "Si", "Ti", "Fe", "Ba"),
    max_species=3,
    max_atoms=24,
    volume_factor=1.1,
    max_attempts=20,
    attempt_timeout_s=10,
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


def test_a_placement_that_never_ends_is_cut_off():
    # Item 288 of the cubic class under seed 42 and the default params draws a placement that
    # PyXtal does not finish; with a short limit the item still comes out, from a later draw.
    import dataclasses

    import yaml

    from xrdsym.sources.synthetic import _generate_item

    root = Path(__file__).resolve().parents[1]
    section = yaml.safe_load((root / "params.yaml").read_text())["download"]["synthetic"]
    settings = SyntheticSettings(
        tuple(section["elements"]),
        section["max_species"],
        section["max_atoms"],
        section["volume_factor"],
        section["max_attempts"],
        attempt_timeout_s=10,
    )
    start = time.perf_counter()
    item = _generate_item(("cubic", 288), 42, dataclasses.replace(settings, attempt_timeout_s=0.5))
    assert isinstance(item, StructureRecord)
    assert time.perf_counter() - start < 10


def test_time_limit_interrupts_and_is_cleared_afterwards():
    with pytest.raises(AttemptTimeout), _time_limit(0.1):
        time.sleep(5)
    with _time_limit(0.1):
        pass
    time.sleep(0.2)  # no alarm left armed
