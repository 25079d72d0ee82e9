"""Stage 1, download: the table of crystal structures from the configured sources."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xrdsym.io import atomic_path, rejects_table, write_json, write_jsonl_gz, write_table
from xrdsym.sources import Reject, StructureRecord, iter_source
from xrdsym.sources.combine import crystal_systems, remove_duplicates, remove_same_material_ids
from xrdsym.symmetry import CRYSTAL_SYSTEMS

PARAMS = ("seed", "classes", "source", "n_per_class", "n_jobs", "dask_scheduler", "download")
STRUCTURES_FILE = "structures.jsonl.gz"
REJECTS_FILE = "rejects.csv"


def _counts(rows: Sequence[tuple[str, str, bool]], systems: Sequence[str]) -> dict[str, Any]:
    """Structures read and kept, in all and per crystal system, of (source, crystal system,
    kept) rows."""
    return {
        "read": len(rows),
        "kept": sum(kept for _, _, kept in rows),
        "read_per_class": {c: sum(system == c for _, system, _ in rows) for c in systems},
        "kept_per_class": {
            c: sum(system == c and kept for _, system, kept in rows) for c in systems
        },
    }


def run(params: dict[str, Any], out_dir: Path, metrics_path: Path) -> None:
    """Write ``out_dir/structures.jsonl.gz`` and ``out_dir/rejects.csv``, and the counts.

    ``source`` is one source name or a list of them; their structures are combined in that
    order and duplicates removed, first by Materials Project id, then by structure (see
    :mod:`xrdsym.sources.combine`). The metrics count the structures per source and per
    crystal system, read and kept.
    """
    sources = [params["source"]] if isinstance(params["source"], str) else params["source"]
    records: list[StructureRecord] = []
    rejects: list[Reject] = []
    for name in sources:
        for item in iter_source(
            name,
            classes=params["classes"],
            n_per_class=params["n_per_class"],
            seed=params["seed"],
            n_jobs=params["n_jobs"],
            settings=params["download"],
        ):
            (rejects if isinstance(item, Reject) else records).append(item)
    unreadable = len(rejects)
    unique, same_ids = remove_same_material_ids(records)
    kept, duplicates = remove_duplicates(unique, params["n_jobs"])
    rejects += same_ids + duplicates
    # By object identity: two sources may give records the same id.
    kept_objects = {id(record) for record in kept}
    rows = [
        (record.source, system, id(record) in kept_objects)
        for record, system in zip(records, crystal_systems(records, params["n_jobs"]), strict=True)
    ]
    systems = [*CRYSTAL_SYSTEMS, *sorted({system for _, system, _ in rows} - set(CRYSTAL_SYSTEMS))]
    totals = _counts(rows, systems)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        count = write_jsonl_gz(tmp / STRUCTURES_FILE, (record.to_json() for record in kept))
        write_table(tmp / REJECTS_FILE, rejects_table(r.to_row() for r in rejects))
    write_json(
        metrics_path,
        {
            "n_structures": count,
            "n_rejected": len(rejects),
            "n_unreadable": unreadable,
            "n_same_material_id": len(same_ids),
            "n_duplicates": len(duplicates),
            "per_source": {
                name: _counts([row for row in rows if row[0] == name], systems) for name in sources
            },
            "per_class": {"read": totals["read_per_class"], "kept": totals["kept_per_class"]},
        },
    )
    print(
        f"download: {count} structures, {unreadable} rejected, {len(same_ids)} repeated "
        f"Materials Project ids and {len(duplicates)} duplicates removed -> {out_dir}"
    )
