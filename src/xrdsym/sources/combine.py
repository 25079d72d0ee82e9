"""Combining sources: the same material from two sources is kept once, and counted by class.

Two Materials Project sources (matminer's 2018 copy, the API) name the same material by the
same material id: a later record with an id already read is dropped first, cheaply. The
remaining duplicates are found by pymatgen's StructureMatcher among structures with the same
reduced formula (comparing across formulas could never match, and grouping keeps it fast). In
both, the first occurrence in source order is kept; every later one becomes a reject naming
the one kept. Only the second step needs the structures themselves, and only those of one
reduced formula at a time (:func:`formula_buckets`); the first works on :class:`RecordSummary`
alone: a million of them fit in memory, where a million structures would not.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord
from xrdsym.symmetry import analyse_symmetry

# The tolerances of the Materials Project's own symmetry field (emmet-core's SYMPREC in Å and
# ANGLE_TOL in degrees): structures whose source states no crystal system are analysed with
# them, so that every source's counts mean the same thing.
MP_SYMPREC_ANGSTROM = 0.1
MP_ANGLE_TOLERANCE_DEGREES = 5.0
# Counted for a structure spglib cannot analyse; the patterns stage rejects it with the reason.
UNKNOWN_SYSTEM = "unknown"


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What combining needs of a record, without its structure: ``formula`` is the reduced
    formula, ``material_id`` the Materials Project id where the source gives one."""

    id: str
    source: str
    formula: str
    material_id: str | None = None

    @classmethod
    def of(cls, record: StructureRecord) -> RecordSummary:
        # Interned: a million records share a few sources and far fewer formulas.
        return cls(
            id=record.id,
            source=sys.intern(record.source),
            formula=sys.intern(record.structure.composition.reduced_formula),
            material_id=record.meta.get("material_id"),
        )


def remove_same_material_ids(
    records: Iterable[RecordSummary],
) -> tuple[list[RecordSummary], list[Reject]]:
    """The records whose Materials Project id an earlier record already has removed, and a
    reject for each one removed; records without one all stay."""
    first_source: dict[str, str] = {}
    kept, rejects = [], []
    for record in records:
        if record.material_id in first_source:
            reason = (
                f"Materials Project id {record.material_id} already read from "
                f"{first_source[record.material_id]}"
            )
            rejects.append(Reject(record.id, "download:dedup", reason))
            continue
        if record.material_id is not None:
            first_source[record.material_id] = record.source
        kept.append(record)
    return kept, rejects


def matching_groups(structures: Sequence[Structure]) -> list[list[int]]:
    """Positions of ``structures`` grouped by StructureMatcher, each group in ascending order."""
    # group_structures reduces every structure once, where pairwise fit() would redo it
    # for every comparison.
    # Found again by identity, and a source may give one structure object twice: each
    # object's positions are handed out in turn.
    positions_of: dict[int, list[int]] = defaultdict(list)
    for position, structure in reversed(list(enumerate(structures))):
        positions_of[id(structure)].append(position)
    groups = StructureMatcher().group_structures(list(structures))
    return [sorted(positions_of[id(structure)].pop() for structure in group) for group in groups]


def remove_duplicates(
    records: Iterable[StructureRecord], n_jobs: int = 1
) -> tuple[list[StructureRecord], list[Reject]]:
    """The records with duplicate structures removed, and a reject for each one removed."""
    records = list(records)
    by_formula: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_formula[record.structure.composition.reduced_formula].append(position)
    candidates = [positions for positions in by_formula.values() if len(positions) > 1]
    duplicate_of: dict[int, int] = {}
    structures = [[records[p].structure for p in positions] for positions in candidates]
    groups = parallel_map(matching_groups, structures, n_jobs, "removing duplicates")
    for positions, formula_groups in zip(candidates, groups, strict=True):
        for group in formula_groups:
            for member in group[1:]:
                duplicate_of[positions[member]] = positions[group[0]]
    kept = [record for position, record in enumerate(records) if position not in duplicate_of]
    rejects = [
        Reject(records[p].id, "download:dedup", f"duplicate of {records[first].id}")
        for p, first in sorted(duplicate_of.items())
    ]
    return kept, rejects


def formula_buckets(formulas: Iterable[str], bucket_records: int) -> dict[str, int]:
    """The bucket of every reduced formula that more than one record has, given the formula
    of every record: whole formulas, in order of first appearance, packed into buckets of at
    most ``bucket_records`` records (one formula with more has a bucket of its own).

    Formulas of one record each are left out: they cannot have duplicates.
    """
    counts: dict[str, int] = defaultdict(int)
    for formula in formulas:
        counts[formula] += 1
    buckets: dict[str, int] = {}
    bucket, filled = 0, 0
    for formula, count in counts.items():
        if count < 2:
            continue
        if filled and filled + count > bucket_records:
            bucket, filled = bucket + 1, 0
        buckets[formula] = bucket
        filled += count
    return buckets


def symmetry_of_structure(structure: Structure) -> tuple[int | None, str]:
    """The space group and crystal system spglib finds at the Materials Project's tolerances,
    or (None, "unknown")."""
    try:
        space_group, system, _ = analyse_symmetry(
            structure, MP_SYMPREC_ANGSTROM, MP_ANGLE_TOLERANCE_DEGREES
        )
    except Exception:  # spglib fails on a few odd cells, with several exception types
        return None, UNKNOWN_SYSTEM
    return space_group, system


def record_symmetries(
    records: Sequence[StructureRecord], n_jobs: int = 1
) -> list[tuple[str, int | None]]:
    """The crystal system of every record, and spglib's space group where it was analysed.

    The crystal system is the one the source states (``meta["crystal_system"]``, as the
    Materials Project's API does), else spglib's (:func:`symmetry_of_structure`). A record
    whose source states a space group (``meta["stated_space_group"]``) is always analysed, so
    that the two can be compared.
    """
    stated = [record.meta.get("crystal_system") for record in records]
    analysed = [
        system is None or record.meta.get("stated_space_group") is not None
        for record, system in zip(records, stated, strict=True)
    ]
    structures = [r.structure for r, wanted in zip(records, analysed, strict=True) if wanted]
    found = iter(list(parallel_map(symmetry_of_structure, structures, n_jobs, "symmetry")))
    result = []
    for system, wanted in zip(stated, analysed, strict=True):
        space_group, found_system = next(found) if wanted else (None, None)
        result.append((system if system is not None else found_system, space_group))
    return result
