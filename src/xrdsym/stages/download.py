"""Stage 1, download: the table of crystal structures from the configured source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xrdsym.io import atomic_path, rejects_table, write_json, write_jsonl_gz, write_table
from xrdsym.sources import Reject, get_source
from xrdsym.sources.synthetic import SyntheticSettings

PARAMS = ("seed", "classes", "source", "n_per_class", "n_jobs", "download")
STRUCTURES_FILE = "structures.jsonl.gz"
REJECTS_FILE = "rejects.csv"


def run(params: dict[str, Any], out_dir: Path, metrics_path: Path) -> None:
    """Write ``out_dir/structures.jsonl.gz`` and ``out_dir/rejects.csv``, and the counts."""
    section = params["download"]
    settings = SyntheticSettings(
        elements=tuple(section["elements"]),
        max_species=section["max_species"],
        max_atoms=section["max_atoms"],
        volume_factor=section["volume_factor"],
        max_attempts=section["max_attempts"],
        attempt_timeout_s=section["attempt_timeout_s"],
    )
    items = get_source(params["source"])(
        params["classes"], params["n_per_class"], params["seed"], params["n_jobs"], settings
    )
    rejects: list[dict[str, str]] = []
    per_source: Counter[str] = Counter()

    def records() -> Iterator[dict[str, Any]]:
        for item in items:
            if isinstance(item, Reject):
                rejects.append(item.to_row())
                continue
            per_source[item.source] += 1
            yield item.to_json()

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        count = write_jsonl_gz(tmp / STRUCTURES_FILE, records())
        write_table(tmp / REJECTS_FILE, rejects_table(rejects))
    write_json(
        metrics_path,
        {
            "n_structures": count,
            "n_rejected": len(rejects),
            "per_source": dict(per_source),
        },
    )
    print(f"download: {count} structures, {len(rejects)} rejected -> {out_dir}")
