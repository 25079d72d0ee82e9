import json
import math
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.stats import chisquare

from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.wyckoff import (
    CrystalDraw,
    OrbitSummary,
    WyckoffSettings,
    WyckoffStatistics,
    chi_square_fit,
    covalent_volume,
    draw_elements,
    draw_letters,
    draw_space_group,
    generate_item,
    summarise_record,
    wyckoff_statistics,
    wyckoff_table,
)
from xrdsym.symmetry import analyse_orbits, analyse_symmetry

SETTINGS = WyckoffSettings(max_atoms=24, max_attempts=20, attempt_timeout_s=10)


def _real_structures() -> list[Structure]:
    """Small real structure types of five space groups (two of rock salt)."""
    return [
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        Structure.from_spacegroup(
            "P4_2/mnm",
            Lattice.tetragonal(4.594, 2.959),
            ["Ti", "O"],
            [[0, 0, 0], [0.305, 0.305, 0]],
        ),
        Structure.from_spacegroup(
            "Pm-3m",
            Lattice.cubic(3.905),
            ["Sr", "Ti", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
        ),
        Structure.from_spacegroup(
            "P6_3mc",
            Lattice.hexagonal(3.25, 5.21),
            ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
        ),
        Structure.from_spacegroup(
            "P2_1/c",
            Lattice.monoclinic(5.1, 5.2, 5.3, 99),
            ["Zr", "O", "O"],
            [[0.276, 0.040, 0.208], [0.070, 0.332, 0.345], [0.450, 0.757, 0.479]],
        ),
    ]


@pytest.fixture(scope="module")
def statistics() -> WyckoffStatistics:
    summaries = [
        summarise_record(StructureRecord(f"r{i}", "test", s).to_json(), 0.1, 5)
        for i, s in enumerate(_real_structures())
    ]
    return wyckoff_statistics(summaries)


def test_orbits_of_a_structure_and_its_structure_type(rock_salt, rutile):
    orbits = analyse_orbits(rutile, 0.1, 5)
    assert (orbits.space_group, orbits.crystal_system) == (136, "tetragonal")
    assert sorted(zip(orbits.letters, orbits.elements, strict=True)) == [("a", "Ti"), ("f", "O")]
    assert analyse_symmetry(rock_salt, 0.1, 5) == (225, "cubic", "225:ab")


def test_summary_of_rock_salt(rock_salt):
    summary = summarise_record(StructureRecord("x", "test", rock_salt).to_json(), 0.1, 5)
    assert summary.space_group == 225
    assert sorted(zip(summary.letters, summary.elements, strict=True)) == [
        ("a", "Na"),
        ("b", "Cl"),
    ]
    reference = 4 * covalent_volume("Na") + 4 * covalent_volume("Cl")
    assert math.isclose(summary.volume_ratio, 5.64**3 / reference)


def test_a_structure_that_cannot_be_counted_is_a_reject(rock_salt):
    data = StructureRecord("bad", "test", rock_salt).to_json()
    data["structure"]["sites"] = "not a list of sites"
    reject = summarise_record(data, 0.1, 5)
    assert isinstance(reject, Reject)
    assert (reject.id, reject.stage) == ("bad", "synthesize:statistics")
    assert reject.reason


def test_statistics_count_groups_orbits_letters_and_elements(statistics):
    assert statistics.n_structures == 6
    assert statistics.space_groups == {14: 1, 136: 1, 186: 1, 221: 1, 225: 2}
    assert statistics.n_orbits[225] == {2: 2}
    assert statistics.letters[225] == {"a": 2, "b": 2}
    assert statistics.letters[14] == {"e": 3}
    # Orbits of four atoms: rock salt's 4a and 4b, rutile's 4f (O), baddeleyite's three 4e.
    assert statistics.elements[4] == {"Cl": 1, "Mg": 1, "Na": 1, "O": 4, "Zr": 1}
    assert statistics.n_elements[3] == {2: 1, 3: 1}
    assert statistics.log_volume_ratio_std > 0


def test_statistics_survive_a_json_round_trip(statistics):
    again = WyckoffStatistics.from_json(json.loads(json.dumps(statistics.to_json())))
    assert again == statistics


def test_space_group_sampler_reproduces_the_training_frequencies():
    frequencies = {2: 40, 14: 250, 62: 120, 136: 30, 194: 60, 225: 100}
    statistics = wyckoff_statistics([])
    statistics = WyckoffStatistics(**{**statistics.to_json(), "space_groups": frequencies})
    rng = np.random.default_rng(0)
    draws = Counter(draw_space_group(statistics, rng) for _ in range(4000))
    fit = chi_square_fit(draws, frequencies)
    assert fit["n"] == 4000 and fit["dof"] == 5
    assert fit["p_value"] > 0.01
    # The test has the power to tell: uniform draws over the same groups fail it.
    uniform = Counter(int(g) for g in rng.choice(sorted(frequencies), size=4000))
    assert chi_square_fit(uniform, frequencies)["p_value"] < 1e-6
    # The same statistic as scipy's on the raw bins (no bin is small here).
    expected = [4000 * frequencies[g] / 600 for g in sorted(frequencies)]
    reference = chisquare([draws[g] for g in sorted(frequencies)], expected)
    assert math.isclose(fit["statistic"], reference.statistic, rel_tol=1e-4)


def test_chi_square_pools_small_bins_and_counts_groups_outside():
    fit = chi_square_fit({1: 50, 2: 48, 3: 1, 230: 7}, {1: 500, 2: 500, 3: 10, 4: 10})
    assert fit["n"] == 99 and fit["n_outside"] == 7
    assert fit["dof"] == 2  # groups 3 and 4 expected once each: pooled into one bin
    assert chi_square_fit({}, {1: 5})["p_value"] is None


def test_letters_fit_and_fixed_positions_are_occupied_once(statistics):
    rng = np.random.default_rng(1)
    table = wyckoff_table(136)
    for _ in range(200):
        letters = draw_letters(statistics, 136, rng, max_atoms=12)
        assert letters is not None
        assert set(letters) <= set(statistics.letters[136])
        assert sum(table[letter][0] for letter in letters) <= 12
        fixed = [letter for letter in letters if table[letter][1] == 0]
        assert len(fixed) == len(set(fixed))
    # Rock salt's 4a and 4b have no free parameter: two orbits, never the same letter twice.
    for _ in range(50):
        assert sorted(draw_letters(statistics, 225, rng, max_atoms=24)) == ["a", "b"]
    assert draw_letters(statistics, 225, rng, max_atoms=4) is None


def test_elements_come_from_the_training_elements(statistics):
    rng = np.random.default_rng(2)
    known = {e for counts in statistics.elements.values() for e in counts}
    for _ in range(100):
        elements = draw_elements(statistics, [4, 4, 8], rng)
        assert len(elements) == 3 and set(elements) <= known
        # Three orbits held two or three distinct elements in training.
        assert len(set(elements)) in (2, 3)


def test_pyxtal_inputs_group_the_orbits_by_element():
    draw = CrystalDraw(136, (("a", "Ti"), ("f", "O"), ("g", "O")), 120.0)
    assert draw.pyxtal_inputs() == (["Ti", "O"], [2, 8], [["2a"], ["4f", "4g"]])


def test_crystals_are_built_in_the_drawn_group_within_max_atoms(statistics):
    items = [generate_item(index, statistics, 7, SETTINGS) for index in range(30)]
    records = [item for _, item in items if isinstance(item, StructureRecord)]
    assert len(records) >= 27
    agree = 0
    for group, record in items:
        assert group in statistics.space_groups
        if isinstance(record, Reject):
            continue
        assert record.id.startswith("synthetic:0000")
        assert record.meta["requested_space_group"] == group
        assert len(record.structure) <= SETTINGS.max_atoms
        assert record.structure.is_valid(tol=0.5)
        agree += analyse_symmetry(record.structure, 0.1, 5)[0] == group
        # The cell has the drawn volume.
        assert math.isclose(record.structure.volume, record.meta["requested_volume"], rel_tol=1e-3)
    # Labels come from analysis; PyXtal's crystals nearly always keep the group they were
    # built in.
    assert agree >= 0.8 * len(records)


def test_an_item_is_the_same_whatever_is_drawn_before_it(statistics):
    forward = [generate_item(index, statistics, 3, SETTINGS)[1] for index in range(6)]
    backward = [generate_item(index, statistics, 3, SETTINGS)[1] for index in reversed(range(6))]
    for a, b in zip(forward, reversed(backward), strict=True):
        assert a.id == b.id and a.structure == b.structure
    other = generate_item(0, statistics, 4, SETTINGS)[1]
    assert other.structure != forward[0].structure


def test_an_item_that_cannot_fit_is_a_reject_with_a_reason(statistics):
    tiny = WyckoffSettings(max_atoms=1, max_attempts=3, attempt_timeout_s=10)
    group, reject = generate_item(0, statistics, 0, tiny)
    assert isinstance(reject, Reject)
    assert reject.stage == "synthesize:generate"
    assert reject.reason == (
        f"space group {group}: no orbits fit within max_atoms=1 (after 3 attempts)"
    )


def test_summary_is_a_plain_value():
    summary = OrbitSummary(225, ("a", "b"), ("Na", "Cl"), 1.5)
    assert wyckoff_statistics([summary]).letters == {225: {"a": 1, "b": 1}}
