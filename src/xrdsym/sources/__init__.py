"""Sources of crystal structures: each yields structure records or rejects.

A source is a generator of :class:`StructureRecord` (a structure to keep) or :class:`Reject`
(an item that failed, with its reason); :func:`iter_source` picks one by name. A new source
is one module here and one branch there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def iter_source(
    name: str,
    *,
    classes: Sequence[str],
    n_per_class: int | None,
    seed: int,
    n_jobs: int,
    settings: dict[str, Any],
) -> Iterator[StructureRecord | Reject]:
    """Records (or rejects) from the source called ``name``, configured by ``settings``
    (params' ``download`` section). ``n_per_class`` is the number of structures per crystal
    system made by ``synthetic`` or drawn from ``cif_table``; None (cif_table only): all."""
    if name == "synthetic":
        from xrdsym.sources.synthetic import SyntheticSettings, iter_synthetic

        section = settings["synthetic"]
        synthetic = SyntheticSettings(**{**section, "elements": tuple(section["elements"])})
        yield from iter_synthetic(classes, n_per_class, seed, n_jobs, synthetic)
    elif name == "cif_dir":
        from xrdsym.sources.cif_dir import iter_cif_dir

        yield from iter_cif_dir(Path(settings["cif_dir"]), n_jobs)
    elif name == "cif_table":
        from xrdsym.sources.cif_table import CifTableSettings, iter_cif_table

        table_settings = CifTableSettings.from_params(settings["cif_table"])
        yield from iter_cif_table(table_settings, classes, n_per_class, seed, n_jobs)
    elif name == "amcsd":
        from xrdsym.sources.amcsd import iter_amcsd

        yield from iter_amcsd(settings["amcsd"]["limit"], seed, n_jobs)
    elif name == "matminer":
        from xrdsym.sources.matminer import iter_matminer

        section = settings["matminer"]
        yield from iter_matminer(Path(section["data_home"]), section["limit"], seed)
    elif name == "mp_api":
        from xrdsym.sources.mp_api import iter_mp_api

        yield from iter_mp_api(settings["mp_api"]["per_system"])
    else:
        raise ValueError(f"unknown source {name!r}")
