"""Structures from the American Mineralogist Crystal Structure Database (AMCSD), as larixite
ships it: an SQLite file of 9,275 mineral (and some synthetic) structures, offline.

Each entry's CIF text (larixite writes it from the database's columns) is parsed with
pymatgen's CifParser like any CIF (:func:`xrdsym.sources.cif_dir.parse_cif`); partial
occupancies are kept. The database is opened read-only from larixite's own copy
(``amcsd_cif1.db``, the trimmed release) rather than through ``larixite.get_amcsd()``, which
would try to download the full release, prefer one left in ``~/.larch`` (so the structures
would depend on the home folder) and add columns to the installed file.

The space group the database states is its list of symmetry operations (the CIF's
``_space_group_symop_operation_xyz``, from which the structure is built), identified by
spglib; its Hermann-Mauguin symbol is kept too, as written (often old notation such as
``F m 3 m``).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from xrdsym.errors import XrdsymError
from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.cif_dir import parse_cif

SOURCE_NAME = "amcsd"
# Entries parsed together: enough to keep the worker processes busy (each chunk starts its own
# pool), few enough that a chunk's structures take some tens of MB.
CHUNK_ENTRIES = 1_000
# larixite's placeholder for a column the database leaves empty.
MISSING = "<missing>"

_databases: dict[int, Any] = {}  # one open larixite.amcsd.AMCSD per process id


@dataclass(frozen=True)
class AmcsdEntry:
    """What larixite gives for one AMCSD entry."""

    amcsd_id: int
    mineral: str | None
    hm_symbol: str | None
    symmetry_xyz: str  # JSON list of the symmetry operations, e.g. '["x,y,z", "-x,-y,-z"]'
    cif_text: str


def record_id(amcsd_id: int) -> str:
    """The record id of an entry: ``amcsd:`` and the id as AMCSD writes it (7 digits)."""
    return f"{SOURCE_NAME}:{amcsd_id:07d}"


def _require_larixite() -> None:
    try:
        import larixite.amcsd  # noqa: F401
    except ImportError as exc:
        raise XrdsymError(
            "source amcsd needs larixite (its copy of the AMCSD): `pip install larixite`"
        ) from exc


def database() -> Any:
    """This process's read-only connection to larixite's AMCSD (opened once per process: a
    forked worker must not use its parent's SQLite connection)."""
    pid = os.getpid()
    if pid not in _databases:
        from larixite.amcsd import AMCSD

        _databases[pid] = AMCSD(read_only=True)  # None: the copy inside the package
    return _databases[pid]


def amcsd_ids() -> list[int]:
    """Every entry's AMCSD id, ascending."""
    from sqlalchemy import select

    db = database()
    table = db.tables["cif"]
    return [row[0] for row in db.execall(select(table.c.id).order_by(table.c.id))]


def fetch_entry(amcsd_id: int) -> AmcsdEntry:
    """The entry ``amcsd_id`` from larixite; raises LookupError when there is none."""
    cif = database().get_cif(amcsd_id)
    if cif is None:
        raise LookupError(f"larixite has no entry {amcsd_id}")
    mineral = cif.mineral.name
    hm_symbol = (cif.hm_symbol or "").strip()
    return AmcsdEntry(
        amcsd_id=amcsd_id,
        mineral=None if mineral in (None, "", MISSING) else mineral,
        hm_symbol=hm_symbol or None,
        symmetry_xyz=cif.spacegroup.symmetry_xyz,
        cif_text=cif.ciftext,
    )


@functools.lru_cache(maxsize=1024)  # the database has 471 distinct lists of operations
def stated_space_group(symmetry_xyz: str) -> int | None:
    """The space-group number of a JSON list of symmetry operations ('x,1/2+y,-z', ...), or
    None when they cannot be read or form no space group spglib knows."""
    import spglib
    from pymatgen.core.operations import SymmOp

    try:
        operations = [SymmOp.from_xyz_str(text) for text in json.loads(symmetry_xyz)]
        rotations = np.array([op.rotation_matrix for op in operations]).round().astype("intc")
        translations = np.array([op.translation_vector for op in operations]) % 1.0
        with warnings.catch_warnings():
            # spglib 2.x warns on every call while its old error handling (a None return, not
            # an exception) is the default; the global switch would change it for pymatgen too.
            warnings.simplefilter("ignore", DeprecationWarning)
            found = spglib.get_spacegroup_type_from_symmetry(rotations, translations)
    except Exception:  # malformed operation text, empty list, spglib's own errors
        return None
    return None if found is None else int(found.number)


def read_entry(amcsd_id: int) -> StructureRecord | Reject:
    """The record of one entry (its CIF's first structure), or a reject saying why not."""
    entry_id = record_id(amcsd_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry = fetch_entry(amcsd_id)
    except Exception as exc:  # larixite raises what SQLAlchemy and its own parsing raise
        return Reject(entry_id, "download", f"unreadable AMCSD entry: {_describe(exc)}")
    structures = parse_cif(entry.cif_text)
    if isinstance(structures, str):
        return Reject(entry_id, "download", f"unreadable AMCSD entry: {structures}")
    structure = structures[0]
    return StructureRecord(
        id=entry_id,
        source=SOURCE_NAME,
        structure=structure,
        meta={
            "amcsd_id": f"{amcsd_id:07d}",
            "mineral": entry.mineral,
            "stated_space_group": stated_space_group(entry.symmetry_xyz),
            "stated_hm_symbol": entry.hm_symbol,
            "disordered": not structure.is_ordered,
            "n_blocks": len(structures),
        },
    )


def _describe(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def _draw(ids: Sequence[int], limit: int | None, seed: int) -> list[int]:
    """``limit`` of ``ids`` drawn at random with ``seed``, ascending (all when None)."""
    if limit is None or limit >= len(ids):
        return list(ids)
    if limit < 0:
        raise XrdsymError(f"download.amcsd.limit={limit}: must be 0 or more, or null for all")
    chosen = np.random.default_rng(seed).choice(len(ids), limit, replace=False)
    return [ids[i] for i in np.sort(chosen)]


def iter_amcsd(limit: int | None, seed: int, n_jobs: int) -> Iterator[StructureRecord | Reject]:
    """Records (or rejects) of the AMCSD entries in ascending id order; ``limit`` (None: all)
    keeps that many, drawn at random with ``seed``."""
    _require_larixite()
    ids = _draw(amcsd_ids(), limit, seed)
    with tqdm(total=len(ids), desc="reading AMCSD", unit="entry", mininterval=1.0) as progress:
        for start in range(0, len(ids), CHUNK_ENTRIES):
            chunk = ids[start : start + CHUNK_ENTRIES]
            for item in parallel_map(read_entry, chunk, n_jobs, "", show_progress=False):
                yield item
                progress.update()
