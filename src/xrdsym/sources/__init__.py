"""Sources of crystal structures: each yields structure records or rejects.

A source is a function ``(classes, n_per_class, seed, n_jobs, settings) -> iterator`` whose items
are :class:`StructureRecord` (a structure to keep) or :class:`Reject` (an item that failed, with
its reason). New sources (Materials Project, a folder of CIFs) register in :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Structure


@dataclass(frozen=True)
class StructureRecord:
    """A structure with where it came from; ``meta`` holds source-specific provenance."""

    id: str
    source: str
    structure: Structure
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "meta": self.meta,
            "structure": self.structure.as_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StructureRecord:
        return cls(
            id=data["id"],
            source=data["source"],
            meta=data.get("meta", {}),
            structure=Structure.from_dict(data["structure"]),
        )


@dataclass(frozen=True)
class Reject:
    """An item that a stage could not use, and why."""

    id: str
    stage: str
    reason: str

    def to_row(self) -> dict[str, str]:
        return {"id": self.id, "stage": self.stage, "reason": self.reason}


Source = Callable[..., Iterator[StructureRecord | Reject]]


def get_source(name: str) -> Source:
    """The source function registered under ``name``."""
    from xrdsym.sources.synthetic import iter_synthetic

    sources: dict[str, Source] = {"synthetic": iter_synthetic}
    return sources[name]
