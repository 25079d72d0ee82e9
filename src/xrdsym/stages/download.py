"""Stage 1, download: the table of crystal structures from the configured sources.

Memory stays bounded whatever the number of structures: the records are streamed from the
sources into a temporary spool file beside the output, and only their summaries
(:class:`~xrdsym.sources.combine.RecordSummary`) stay in memory. A second pass over the spool
finds the crystal systems ``BATCH_RECORDS`` structures at a time and copies the records of
every reduced formula held more than once into bucket files of about ``BUCKET_RECORDS``; the
duplicates are then found one bucket (whole formulas) at a time, and a last pass copies the
records kept from the spool to the output, in source order.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from xrdsym.io import (
    append_jsonl_gz,
    atomic_path,
    read_jsonl_gz,
    rejects_table,
    write_json,
    write_jsonl_gz,
    write_table,
)
from xrdsym.sources import Reject, StructureRecord, iter_source
from xrdsym.sources.combine import (
    RecordSummary,
    formula_buckets,
    record_symmetries,
    remove_duplicates,
    remove_same_material_ids,
)
from xrdsym.symmetry import CRYSTAL_SYSTEMS, crystal_system_of_space_group

T = TypeVar("T")

PARAMS = ("seed", "classes", "source", "n_per_class", "n_jobs", "dask_scheduler", "download")
STRUCTURES_FILE = "structures.jsonl.gz"
REJECTS_FILE = "rejects.csv"
# Structures whose crystal systems are found at once: enough to keep the worker processes
# busy, few enough to take some 16 MB (about 13 kB each as pymatgen objects, 20 kB as JSON).
BATCH_RECORDS = 500
# Structures of one de-duplication bucket, in memory together as pymatgen objects (some 13 MB);
# a single formula with more records than this is one bucket of its own.
BUCKET_RECORDS = 1_000
# gzip levels. On these records level 9 (Python's default) compresses at some 3 MB/s, level 6
# (zlib's default) at 60 MB/s into a file 3 % larger, level 1 at 160 MB/s, 25 % larger: 6 for
# the output, 1 for the spool and bucket files, which are read back once and deleted.
STRUCTURES_COMPRESSLEVEL = 6
SPOOL_COMPRESSLEVEL = 1


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


def _agreement(pairs: Iterable[tuple[int, int] | None]) -> dict[str, int]:
    """How many (stated, found) space-group pairs there are, and how many agree on the space
    group and on its crystal system."""
    pairs = [pair for pair in pairs if pair is not None]
    return {
        "stated": len(pairs),
        "agree": sum(stated == found for stated, found in pairs),
        "agree_crystal_system": sum(
            found is not None
            and crystal_system_of_space_group(stated) == crystal_system_of_space_group(found)
            for stated, found in pairs
        ),
    }


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _removed(items: Sequence[Any], kept: Iterable[Any]) -> list[int]:
    """Positions of the items that are not in ``kept``."""
    # By object identity: two sources may give records the same id.
    kept_objects = {id(item) for item in kept}
    return [position for position, item in enumerate(items) if id(item) not in kept_objects]


def _spool(
    items: Iterable[StructureRecord | Reject], path: Path
) -> tuple[list[RecordSummary], list[Reject]]:
    """Write the records among ``items`` to ``path``, one at a time; return their summaries,
    in the same order, and the rejects."""
    summaries: list[RecordSummary] = []
    rejects: list[Reject] = []

    def records() -> Iterator[dict[str, Any]]:
        for item in items:
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            summaries.append(RecordSummary.of(item))
            yield item.to_json()

    write_jsonl_gz(path, records(), SPOOL_COMPRESSLEVEL)
    return summaries, rejects


def _bucket_file(folder: Path, bucket: int) -> Path:
    return folder / f"bucket-{bucket}.jsonl.gz"


def _scan(
    spool: Path,
    summaries: Sequence[RecordSummary],
    skipped: set[int],
    buckets: dict[str, int],
    bucket_dir: Path,
    n_jobs: int,
) -> tuple[list[str], list[tuple[int, int] | None]]:
    """The crystal system of every record in ``spool``, and for a record whose source states
    a space group, that and spglib's (else None). On the way, each record whose formula has a
    bucket (``buckets``) is appended, with its position, to its bucket file, unless its
    position is in ``skipped``."""
    systems: list[str] = []
    space_groups: list[tuple[int, int] | None] = []
    for batch in _batches(enumerate(read_jsonl_gz(spool)), BATCH_RECORDS):
        records = [StructureRecord.from_json(data) for _, data in batch]
        for record, (system, found) in zip(
            records, record_symmetries(records, n_jobs), strict=True
        ):
            # Interned: the crystal systems come back from worker processes as new strings.
            systems.append(sys.intern(system))
            stated = record.meta.get("stated_space_group")
            space_groups.append(None if stated is None else (stated, found))
        by_bucket: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for position, data in batch:
            bucket = buckets.get(summaries[position].formula)
            if bucket is not None and position not in skipped:
                by_bucket[bucket].append({"position": position, "record": data})
        for bucket, rows in by_bucket.items():
            append_jsonl_gz(_bucket_file(bucket_dir, bucket), rows, SPOOL_COMPRESSLEVEL)
    return systems, space_groups


def _duplicates(bucket_files: Iterable[Path], n_jobs: int) -> dict[int, Reject]:
    """The reject of every duplicate in the bucket files, by its position in the spool."""
    rejects: dict[int, Reject] = {}
    for path in bucket_files:
        positions, records = [], []
        for row in read_jsonl_gz(path):
            positions.append(row["position"])
            records.append(StructureRecord.from_json(row["record"]))
        # A bucket holds every record of its formulas: the same matches as over all records.
        kept, duplicates = remove_duplicates(records, n_jobs)
        removed = [positions[p] for p in _removed(records, kept)]
        rejects.update(zip(removed, duplicates, strict=True))
    return rejects


def _source_items(
    params: dict[str, Any], sources: Sequence[str]
) -> Iterator[StructureRecord | Reject]:
    for name in sources:
        yield from iter_source(
            name,
            classes=params["classes"],
            n_per_class=params["n_per_class"],
            seed=params["seed"],
            n_jobs=params["n_jobs"],
            settings=params["download"],
        )


def run(params: dict[str, Any], out_dir: Path, metrics_path: Path) -> None:
    """Write ``out_dir/structures.jsonl.gz`` and ``out_dir/rejects.csv``, and the counts.

    ``source`` is one source name or a list of them; their structures are combined in that
    order and duplicates removed, first by Materials Project id, then by structure (see
    :mod:`xrdsym.sources.combine`). The metrics count the structures per source and per
    crystal system, read and kept.
    """
    sources = [params["source"]] if isinstance(params["source"], str) else params["source"]
    n_jobs = params["n_jobs"]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Beside the output, not in /tmp: that may be memory (tmpfs), which the spool is to spare.
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.spool.", dir=out_dir.parent) as tmp:
        folder = Path(tmp)
        spool = folder / "records.jsonl.gz"
        summaries, rejects = _spool(_source_items(params, sources), spool)
        unreadable = len(rejects)
        unique, same_ids = remove_same_material_ids(summaries)
        same_id_positions = set(_removed(summaries, unique))
        buckets = formula_buckets((s.formula for s in unique), BUCKET_RECORDS)
        systems, space_groups = _scan(spool, summaries, same_id_positions, buckets, folder, n_jobs)
        n_buckets = max(buckets.values(), default=-1) + 1
        duplicate_rejects = _duplicates(
            [_bucket_file(folder, bucket) for bucket in range(n_buckets)], n_jobs
        )
        duplicates = [duplicate_rejects[position] for position in sorted(duplicate_rejects)]
        removed = same_id_positions | duplicate_rejects.keys()
        rejects += same_ids + duplicates
        with atomic_path(out_dir) as out:
            out.mkdir()
            kept = (data for p, data in enumerate(read_jsonl_gz(spool)) if p not in removed)
            count = write_jsonl_gz(out / STRUCTURES_FILE, kept, STRUCTURES_COMPRESSLEVEL)
            write_table(out / REJECTS_FILE, rejects_table(r.to_row() for r in rejects))

    rows = [
        (summary.source, system, position not in removed)
        for position, (summary, system) in enumerate(zip(summaries, systems, strict=True))
    ]
    counted = [*CRYSTAL_SYSTEMS, *sorted({system for _, system, _ in rows} - set(CRYSTAL_SYSTEMS))]
    totals = _counts(rows, counted)
    write_json(
        metrics_path,
        {
            "n_structures": count,
            "n_rejected": len(rejects),
            "n_unreadable": unreadable,
            "n_same_material_id": len(same_ids),
            "n_duplicates": len(duplicates),
            "per_source": {
                name: _counts([row for row in rows if row[0] == name], counted) for name in sources
            },
            "per_class": {"read": totals["read_per_class"], "kept": totals["kept_per_class"]},
            # Where a source states a space group: how often spglib (at the Materials
            # Project's tolerances) finds the same one, or the same crystal system.
            "stated_space_group": {
                name: _agreement(
                    pair
                    for summary, pair in zip(summaries, space_groups, strict=True)
                    if summary.source == name
                )
                for name in sources
            },
        },
    )
    print(
        f"download: {count} structures, {unreadable} rejected, {len(same_ids)} repeated "
        f"Materials Project ids and {len(duplicates)} duplicates removed -> {out_dir}"
    )
