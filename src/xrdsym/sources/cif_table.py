"""Structures from tables of CIF text: the CSV format of MP-20, MPTS-52, perov-5, carbon-24
and Alex-MP-20 (CDVAE, DiffCSP, MatterGen), and the project's embedded real set.

A table is a CSV, CSV.gz or Parquet file with one structure per row: an id column and a column
of CIF text; other columns named in ``keep_columns`` go into each record's provenance. A
table may also be a URL with its sha256: it is downloaded once into ``data_home``, checked,
and read from there afterwards. Rows are read ``CHUNK_ROWS`` at a time and their CIFs parsed
in parallel, so memory stays bounded by one chunk; a CIF pymatgen cannot parse is a reject
naming the table and the row's id.

With ``class_column`` (a crystal system, or a space-group number from which the crystal system
follows) and ``n_per_class``, a seeded subset of at most ``n_per_class`` rows per crystal
system is kept: the quick default run. The labels the pipeline trains on still come from its
own symmetry analysis.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.errors import XrdsymError
from xrdsym.io import atomic_path
from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.cif_dir import parse_cif
from xrdsym.symmetry import CRYSTAL_SYSTEMS, crystal_system_of_space_group

SOURCE_NAME = "cif_table"
# Rows parsed together: enough to keep the worker processes busy, few enough that a chunk of
# CIF text and its structures take some tens of MB.
CHUNK_ROWS = 2_000
# Seconds to wait for a table's server before giving up (the download itself may take longer).
DOWNLOAD_TIMEOUT_S = 60
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class TableRef:
    """One table: a local ``path``, or a ``url`` with its ``sha256`` (hex)."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, entry: str | dict[str, Any]) -> TableRef:
        """A table from params: a path string, or a mapping ``{url: ..., sha256: ...}``."""
        if isinstance(entry, str):
            return cls(path=entry)
        return cls(url=entry["url"], sha256=entry["sha256"].lower())

    @property
    def name(self) -> str:
        """The table's name in ids and messages: its path, or the file name of its URL."""
        if self.path is not None:
            return self.path
        return Path(urllib.parse.urlparse(self.url).path).name


@dataclass(frozen=True)
class CifTableSettings:
    """Params ``download.cif_table``; see params.yaml for each key."""

    tables: tuple[TableRef, ...]
    id_column: str
    cif_column: str
    keep_columns: tuple[str, ...] = ()
    space_group_column: str | None = None
    class_column: str | None = None
    data_home: str = "data/cif_table"

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> CifTableSettings:
        return cls(
            tables=tuple(TableRef.of(entry) for entry in section["tables"]),
            id_column=section["id_column"],
            cif_column=section["cif_column"],
            keep_columns=tuple(section["keep_columns"]),
            space_group_column=section["space_group_column"],
            class_column=section["class_column"],
            data_home=section["data_home"],
        )

    @property
    def columns(self) -> list[str]:
        """Every column read from a table, each once."""
        named = [self.id_column, self.cif_column, self.space_group_column, self.class_column]
        return list(dict.fromkeys(c for c in [*named, *self.keep_columns] if c is not None))


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def fetch_table(table: TableRef, data_home: Path) -> Path:
    """The local file of ``table``: its path, or its URL's download in ``data_home`` (made
    once, checked against the sha256 after downloading and before every later use)."""
    if table.url is None:
        path = Path(table.path)
        if not path.is_file():
            raise XrdsymError(f"source cif_table: {path}: no such file")
        return path
    path = data_home / table.name
    if path.exists():
        found = _sha256(path)
        if found != table.sha256:
            path.unlink()
            raise XrdsymError(
                f"source cif_table: {path} has sha256 {found}, not {table.sha256} as params "
                f"say: deleted; run again to download {table.url} afresh"
            )
        return path
    data_home.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            with (
                urllib.request.urlopen(table.url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                tmp.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
            found = _sha256(tmp)
            if found != table.sha256:
                raise XrdsymError(
                    f"source cif_table: {table.url} has sha256 {found}, not {table.sha256} as "
                    "params say: download deleted"
                )
    except OSError as exc:  # URLError and timeouts are OSErrors
        raise XrdsymError(
            f"source cif_table: cannot download {table.url} ({exc.__class__.__name__}); fetch "
            f"it elsewhere (sha256 {table.sha256}), put it at {path} and run again"
        ) from exc
    return path


def _read(path: Path, columns: list[str] | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The table at ``path`` in chunks of rows (all of Parquet's at once), every value text."""
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            table = pd.read_parquet(path, columns=columns)
            for start in range(0, len(table), chunk_rows):
                yield table.iloc[start : start + chunk_rows]
            return
        yield from pd.read_csv(
            path, usecols=columns, dtype=str, keep_default_na=False, chunksize=chunk_rows
        )
    except ValueError as exc:  # pandas' message for missing usecols names them
        raise XrdsymError(f"source cif_table: {path}: {exc}") from exc
    except (OSError, ImportError, pd.errors.ParserError) as exc:
        raise XrdsymError(f"source cif_table: {path}: cannot read the table: {exc}") from exc


def check_columns(path: Path, settings: CifTableSettings) -> None:
    """Raise XrdsymError if the table at ``path`` is empty or lacks a named column."""
    header = next(_read(path, None, 1), None)
    if header is None or header.empty:
        raise XrdsymError(f"source cif_table: {path}: the table has no rows")
    missing = [c for c in settings.columns if c not in header.columns]
    if missing:
        raise XrdsymError(
            f"source cif_table: {path}: no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(map(str, header.columns))})"
        )


def crystal_system_of(value: str) -> str | None:
    """The crystal system named by a class-column value: a crystal system's name (any case)
    or a space-group number; None for anything else."""
    text = str(value).strip().lower()
    if text in CRYSTAL_SYSTEMS:
        return text
    try:
        return crystal_system_of_space_group(int(float(text)))
    except ValueError:
        return None


def subset_rows(
    systems: Sequence[str | None], classes: Sequence[str], n_per_class: int | None, seed: int
) -> np.ndarray:
    """Positions (ascending) of the rows kept: for each crystal system of ``classes``, at most
    ``n_per_class`` of its rows drawn with ``seed``; every row when ``n_per_class`` is None.

    Rows of other or unknown systems are kept only without a subset: the patterns stage then
    labels (or rejects) them by its own analysis.
    """
    if n_per_class is None:
        return np.arange(len(systems))
    systems = np.asarray(systems, dtype=object)
    rng = np.random.default_rng(seed)
    chosen = []
    for system in classes:
        rows = np.flatnonzero(systems == system)
        chosen.append(rows if len(rows) <= n_per_class else rng.choice(rows, n_per_class, False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def stated_space_group(value: Any) -> int | None:
    """A space-group number from a table cell, or None when the cell holds none."""
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 230 else None


def parse_row(
    row: dict[str, str], table: str, settings: CifTableSettings
) -> StructureRecord | Reject:
    """The record of one table row (its first structure), or why it cannot be read."""
    record_id = row[settings.id_column]
    structures = parse_cif(row[settings.cif_column])
    if isinstance(structures, str):
        return Reject(record_id, "download", f"{table}: unreadable CIF: {structures}")
    # An empty cell is a missing value (two rows with no material id are not one material).
    meta: dict[str, Any] = {
        "table": table,
        **{c: row[c] if row[c] != "" else None for c in settings.keep_columns},
    }
    if settings.space_group_column is not None:
        meta["stated_space_group"] = stated_space_group(row[settings.space_group_column])
    if meta.get("material_id") is None and str(record_id).startswith("mp-"):
        # Combined with other Materials Project sources by material id.
        meta["material_id"] = str(record_id)
    meta["disordered"] = not structures[0].is_ordered
    return StructureRecord(id=record_id, source=SOURCE_NAME, structure=structures[0], meta=meta)


def iter_cif_table(
    settings: CifTableSettings,
    classes: Sequence[str],
    n_per_class: int | None,
    seed: int,
    n_jobs: int,
) -> Iterator[StructureRecord | Reject]:
    """The structures (or rejects) of every table in order, rows in table order.

    ``n_per_class`` (with ``settings.class_column``) keeps a seeded subset per crystal system
    over all tables together; None keeps every row.
    """
    paths = [fetch_table(table, Path(settings.data_home)) for table in settings.tables]
    for path in paths:
        check_columns(path, settings)
    names = [table.name for table in settings.tables]
    keep: list[np.ndarray | None] = [None] * len(paths)
    if settings.class_column is not None and n_per_class is not None:
        per_table = [
            [
                crystal_system_of(value)
                for chunk in _read(path, [settings.class_column], CHUNK_ROWS)
                for value in chunk[settings.class_column]
            ]
            for path in paths
        ]
        chosen = subset_rows(
            [s for systems in per_table for s in systems], classes, n_per_class, seed
        )
        starts = np.cumsum([0, *map(len, per_table)])
        keep = [
            chosen[(chosen >= lo) & (chosen < hi)] - lo for lo, hi in itertools.pairwise(starts)
        ]
    for path, name, rows in zip(paths, names, keep, strict=True):
        worker = functools.partial(parse_row, table=name, settings=settings)
        start = 0
        for chunk in _read(path, settings.columns, CHUNK_ROWS):
            records = chunk.to_dict("records")
            if rows is not None:
                wanted = rows[(rows >= start) & (rows < start + len(records))] - start
                records = [records[i] for i in wanted]
            start += len(chunk)
            yield from parallel_map(worker, records, n_jobs, f"reading {name}")
