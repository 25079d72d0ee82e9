"""Combining sources: the same material from two sources is kept once.

Duplicates are found by pymatgen's StructureMatcher among structures with the same reduced
formula (comparing across formulas could never match, and grouping keeps it fast). The first
occurrence, in source order, is kept; every later one becomes a reject naming the one kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord


def matching_groups(structures: Sequence[Structure]) -> list[list[int]]:
    """Positions of ``structures`` grouped by StructureMatcher, each group in ascending order."""
    # group_structures reduces every structure once, where pairwise fit() would redo it
    # for every comparison.
    position_of = {id(structure): p for p, structure in enumerate(structures)}
    groups = StructureMatcher().group_structures(list(structures))
    return [sorted(position_of[id(structure)] for structure in group) for group in groups]


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
