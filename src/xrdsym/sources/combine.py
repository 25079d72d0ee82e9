"""Combining sources: the same material from two sources is kept once.

Duplicates are found by pymatgen's StructureMatcher among structures with the same reduced
formula (comparing across formulas could never match, and grouping keeps it fast). The first
occurrence, in source order, is kept; every later one becomes a reject naming the one kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pymatgen.analysis.structure_matcher import StructureMatcher

from xrdsym.sources import Reject, StructureRecord


def remove_duplicates(
    records: Iterable[StructureRecord],
) -> tuple[list[StructureRecord], list[Reject]]:
    """The records with duplicate structures removed, and a reject for each one removed."""
    matcher = StructureMatcher()
    kept: list[StructureRecord] = []
    by_formula: dict[str, list[StructureRecord]] = defaultdict(list)
    rejects: list[Reject] = []
    for record in records:
        formula = record.structure.composition.reduced_formula
        match = next(
            (
                other
                for other in by_formula[formula]
                if matcher.fit(record.structure, other.structure)
            ),
            None,
        )
        if match is None:
            by_formula[formula].append(record)
            kept.append(record)
        else:
            rejects.append(Reject(record.id, "download:dedup", f"duplicate of {match.id}"))
    return kept, rejects
