"""Combining sources: summaries, repeated material ids, formula buckets, structure matching."""

from xrdsym.sources import StructureRecord
from xrdsym.sources.combine import (
    RecordSummary,
    formula_buckets,
    matching_groups,
    remove_same_material_ids,
)


def test_summary_keeps_what_combining_needs(rock_salt):
    record = StructureRecord("mp-22862", "mp_api", rock_salt, {"material_id": "mp-22862"})
    assert RecordSummary.of(record) == RecordSummary("mp-22862", "mp_api", "NaCl", "mp-22862")


def test_a_repeated_material_id_is_removed_and_names_the_first_source():
    summaries = [
        RecordSummary("mp-1", "matminer", "NaCl", "mp-1"),
        RecordSummary("a.cif", "cif_dir", "NaCl"),
        RecordSummary("a.cif", "cif_dir", "NaCl"),  # no material id: never removed by it
        RecordSummary("mp-1", "mp_api", "NaCl", "mp-1"),
    ]
    kept, rejects = remove_same_material_ids(summaries)
    assert kept == summaries[:3]
    assert [r.to_row() for r in rejects] == [
        {
            "id": "mp-1",
            "stage": "download:dedup",
            "reason": "Materials Project id mp-1 already read from matminer",
        }
    ]


def test_buckets_hold_whole_formulas_of_several_records_in_order_of_first_appearance():
    formulas = ["A", "B", "A", "C", "B", "A", "D", "D", "E", "F", "F"]
    # A (3 records) fills the first bucket; B (2) and D (2) would overfill one: a bucket each;
    # F (2) joins no bucket over 3; C and E (1 record) cannot have duplicates.
    assert formula_buckets(formulas, bucket_records=3) == {"A": 0, "B": 1, "D": 2, "F": 3}
    assert formula_buckets(formulas, bucket_records=4) == {"A": 0, "B": 1, "D": 1, "F": 2}
    # A formula with more records than a bucket holds is a bucket of its own.
    assert formula_buckets(formulas, bucket_records=1) == {"A": 0, "B": 1, "D": 2, "F": 3}


def test_matching_groups_of_one_structure_object_given_twice(rock_salt, rutile):
    groups = matching_groups([rock_salt, rutile, rock_salt, rock_salt.copy()])
    assert sorted(groups) == [[0, 2, 3], [1]]
