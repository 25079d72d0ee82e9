"""Build the embedded real-structure set, datasets/real_structures.csv.gz, from copies of
public datasets (by default ``../shared/datasets/structures``, see its README).

    python scripts/build_real_dataset.py [--from DIR] [--out datasets/real_structures.csv.gz]

1. Read every Materials Project table (MPTS-52, MP-20 binaries and ternaries, chemeleon's
   MP-40 test sets and their history, LeMaterial's MP sample) and LeMaterial's OQMD,
   Alexandria and JARVIS samples.
2. Merge by id: one row per material, the CIF of the first file that holds it (in the order
   of ``TABLES``), every provenance column from the first file that has it, and the list of
   files that hold it.
3. Parse every CIF with pymatgen (xrdsym's own reader; unreadable ones are listed and left
   out), then remove the same structure across databases with the download stage's
   de-duplication (StructureMatcher within each reduced formula, first one kept).
4. Label each by spglib at the Materials Project's tolerances (0.1 Å, 5°): the crystal
   system the default run subsets by (the pipeline still labels by its own analysis).

The CIF text is stored unchanged. The project never reads ``../shared`` at run time: this
script is run once by a developer, and its output is committed with its README.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd

from xrdsym.io import atomic_path
from xrdsym.parallel import parallel_map
from xrdsym.sources import StructureRecord
from xrdsym.sources.cif_dir import parse_cif
from xrdsym.sources.combine import (
    MP_ANGLE_TOLERANCE_DEGREES,
    MP_SYMPREC_ANGSTROM,
    remove_duplicates,
)
from xrdsym.symmetry import CRYSTAL_SYSTEMS, analyse_symmetry

# CSV tables: file, database, id column, and the provenance columns renamed to ours.
TABLES = [
    ("mpts_52_test.csv.gz", {"theoretical": "theoretical", "year": "year"}),
    ("mpts_52_val.csv.gz", {"theoretical": "theoretical", "year": "year"}),
    ("mp_20_biternary_test.csv.gz", {"spacegroup.number": "stated_space_group"}),
    ("mp_20_biternary_val.csv.gz", {"spacegroup.number": "stated_space_group"}),
    ("chemeleon_mp_40_test.csv.gz", {"space_group_number": "stated_space_group"}),
    ("chemeleon_history_test_v1.csv.gz", {"space_group_number": "stated_space_group"}),
    ("chemeleon_history_test_v2.csv.gz", {"space_group_number": "stated_space_group"}),
    ("chemeleon_history_test_v3.csv.gz", {"space_group_number": "stated_space_group"}),
    ("chemeleon_history_random_split_test.csv.gz", {"space_group_number": "stated_space_group"}),
    ("chemeleon_history_mineral_test.csv.gz", {"space_group_number": "stated_space_group"}),
]
LEMAT_ARCHIVE = "lemat_genbench_baseline_data.tar.gz"
# LeMaterial's folders: database, id column of metadata.csv, file-name prefix, stated group.
LEMAT_FOLDERS = {
    "mp": ("materials_project", "material_id", "mp_", None),
    "oqmd": ("oqmd", "material_id", "oqmd_", None),
    "alexandria": ("alexandria", "material_id", "alexandria_", None),
    # The folder is named aflow but holds JARVIS-DFT entries (JVASP-* ids).
    "aflow": ("jarvis", "jid", None, "spg_number"),
}
COLUMNS = [
    "id",
    "database",
    "material_id",
    "crystal_system",
    "space_group",
    "stated_space_group",
    "theoretical",
    "year",
    "origins",
    "cif",
]


def read_csv_tables(folder: Path) -> list[dict]:
    rows = []
    for name, renamed in TABLES:
        table = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        for _, row in table.iterrows():
            rows.append(
                {
                    "id": row["material_id"],
                    "database": "materials_project",
                    "material_id": row["material_id"],
                    "cif": row["cif"],
                    "origins": name,
                    **{ours: row[theirs] for theirs, ours in renamed.items()},
                }
            )
    return rows


def read_lemat(archive: Path) -> list[dict]:
    rows = []
    with tarfile.open(archive) as tar:
        members = {Path(m.name).relative_to("baseline_data").as_posix(): m for m in tar}
        for folder, (database, id_column, prefix, stated) in LEMAT_FOLDERS.items():
            metadata = pd.read_csv(
                tar.extractfile(members[f"{folder}/metadata.csv"]), dtype=str, keep_default_na=False
            )
            for _, row in metadata.iterrows():
                file_name = row.get("cif_filename") or f"{prefix}{row[id_column]}.cif"
                cif = tar.extractfile(members[f"{folder}/{file_name}"]).read().decode()
                rows.append(
                    {
                        "id": row[id_column],
                        "database": database,
                        "material_id": row[id_column] if database == "materials_project" else "",
                        "cif": cif,
                        "origins": f"{LEMAT_ARCHIVE}:{folder}/{file_name}",
                        "stated_space_group": row[stated] if stated else "",
                    }
                )
    return rows


def merge_by_id(rows: list[dict]) -> pd.DataFrame:
    """One row per id: the first row's CIF, each column's first non-empty value, all origins."""
    table = pd.DataFrame(rows).fillna("")
    merged = table.groupby("id", sort=False).agg(
        {
            **{c: lambda v: next((x for x in v if x), "") for c in table.columns if c != "id"},
            "cif": "first",
            "origins": lambda v: ";".join(dict.fromkeys(v)),
        }
    )
    return merged.reset_index()


def analyse(cif: str) -> tuple[object, int, str] | str:
    """The structure, space group and crystal system of CIF text, or why it cannot be read."""
    structures = parse_cif(cif)
    if isinstance(structures, str):
        return structures
    try:
        number, system, _ = analyse_symmetry(
            structures[0], MP_SYMPREC_ANGSTROM, MP_ANGLE_TOLERANCE_DEGREES
        )
    except Exception as exc:  # spglib fails on a few odd cells
        return f"symmetry analysis failed: {exc}"
    return structures[0], number, system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from", dest="source", type=Path, default=Path("../shared/datasets/structures")
    )
    parser.add_argument("--out", type=Path, default=Path("datasets/real_structures.csv.gz"))
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)

    rows = read_csv_tables(args.source) + read_lemat(args.source / LEMAT_ARCHIVE)
    per_file = Counter(row["origins"].split(":")[0] for row in rows)
    merged = merge_by_id(rows)
    print(f"{len(rows)} rows read, {len(merged)} distinct ids", file=sys.stderr)

    results = list(parallel_map(analyse, list(merged["cif"]), args.n_jobs, "parsing CIFs"))
    unreadable = {i: r for i, r in enumerate(results) if isinstance(r, str)}
    readable = [i for i in range(len(results)) if i not in unreadable]
    records = [
        StructureRecord(merged["id"][i], merged["database"][i], results[i][0]) for i in readable
    ]
    kept, duplicates = remove_duplicates(records, args.n_jobs)
    kept_ids = {record.id for record in kept}
    positions = [i for i in readable if merged["id"][i] in kept_ids]
    table = merged.iloc[positions].copy()
    table["space_group"] = [results[i][1] for i in positions]
    table["crystal_system"] = [results[i][2] for i in positions]
    table = table[COLUMNS]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        table.to_csv(
            tmp, index=False, compression={"method": "gzip", "compresslevel": 9, "mtime": 0}
        )
    with atomic_path(args.out.with_suffix("").with_suffix(".rejects.csv")) as tmp:
        pd.DataFrame(
            [
                {"id": merged["id"][i], "reason": f"unreadable CIF: {r}"}
                for i, r in unreadable.items()
            ]
            + [{"id": r.id, "reason": r.reason} for r in duplicates],
            columns=["id", "reason"],
        ).to_csv(tmp, index=False)
    database = dict(zip(merged["id"], merged["database"], strict=True))
    counts = {
        "rows_per_file": dict(per_file),
        "rows_read": len(rows),
        "distinct_ids": len(merged),
        "unreadable": len(unreadable),
        "duplicates_removed": len(duplicates),
        "kept": len(table),
        "kept_per_database": table["database"].value_counts().to_dict(),
        "kept_per_crystal_system": {
            c: int((table["crystal_system"] == c).sum()) for c in CRYSTAL_SYSTEMS
        },
        "duplicates_by_database_pair": dict(
            Counter(
                f"{database[r.id]} of {database[r.reason.removeprefix('duplicate of ')]}"
                for r in duplicates
            )
        ),
    }
    with atomic_path(args.out.with_suffix("").with_suffix(".counts.json")) as tmp:
        tmp.write_text(json.dumps(counts, indent=2) + "\n")
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
