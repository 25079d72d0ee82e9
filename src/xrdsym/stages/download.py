"""Stage 1, download: the table of crystal structures from the configured sources."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from xrdsym.io import atomic_path, rejects_table, write_json, write_jsonl_gz, write_table
from xrdsym.sources import Reject, StructureRecord, iter_source
from xrdsym.sources.combine import remove_duplicates

PARAMS = ("seed", "classes", "source", "n_per_class", "n_jobs", "download")
STRUCTURES_FILE = "structures.jsonl.gz"
REJECTS_FILE = "rejects.csv"


def run(params: dict[str, Any], out_dir: Path, metrics_path: Path) -> None:
    """Write ``out_dir/structures.jsonl.gz`` and ``out_dir/rejects.csv``, and the counts.

    ``source`` is one source name or a list of them; their structures are combined in that
    order and duplicates removed (see :mod:`xrdsym.sources.combine`).
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
    read = Counter(record.source for record in records)
    unreadable = len(rejects)
    kept, duplicates = remove_duplicates(records, params["n_jobs"])
    rejects += duplicates
    kept_per_source = Counter(record.source for record in kept)

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
            "n_duplicates": len(duplicates),
            "per_source": {
                name: {"read": read[name], "kept": kept_per_source[name]} for name in sources
            },
        },
    )
    print(
        f"download: {count} structures, {unreadable} rejected, "
        f"{len(duplicates)} duplicates removed -> {out_dir}"
    )
