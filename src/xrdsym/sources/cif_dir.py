"""Structures from a folder of CIF files (a COD or ICSD export, a lab's own collection).

Every ``*.cif`` under the folder, recursively, is parsed with pymatgen's CifParser; the path
relative to the folder is the id (``path#k`` for the k-th structure of a file with several
data blocks). Partial occupancies are kept: pymatgen's XRDCalculator weights each species by
its occupancy. A file pymatgen cannot read becomes a reject with the parser's reason.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from xrdsym.errors import XrdsymError
from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord

SOURCE_NAME = "cif_dir"


def cif_files(folder: Path) -> list[Path]:
    """Every CIF under ``folder`` (any depth, ``.cif`` in any case), in a fixed order."""
    if not folder.is_dir():
        raise XrdsymError(f"download.cif_dir={str(folder)!r}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".cif" and p.is_file())


def parse_cif(cif: Path | str) -> list[Structure] | str:
    """The structures of a CIF file (a path) or CIF text (a string), in the conventional
    setting the file gives, occupancies kept; or the reason pymatgen cannot read them."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parser = CifParser(cif) if isinstance(cif, Path) else CifParser.from_str(cif)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises many types for malformed CIFs
        return f"{exc.__class__.__name__}: {exc}"
    if not structures:
        return "; ".join(str(w.message) for w in caught) or "no structure in the CIF"
    return structures


def read_cif(path: Path, folder: Path) -> list[StructureRecord | Reject]:
    """The structures of one CIF file, or one reject saying why it cannot be read."""
    file_id = path.relative_to(folder).as_posix()
    structures = parse_cif(path)
    if isinstance(structures, str):
        return [Reject(file_id, "download", f"unreadable CIF: {structures}")]
    return [
        StructureRecord(
            id=file_id if len(structures) == 1 else f"{file_id}#{k + 1}",
            source=SOURCE_NAME,
            structure=structure,
            meta={"path": file_id, "disordered": not structure.is_ordered},
        )
        for k, structure in enumerate(structures)
    ]


def iter_cif_dir(folder: Path, n_jobs: int) -> Iterator[StructureRecord | Reject]:
    """Structures (or rejects) of every CIF under ``folder``, file by file in sorted order."""
    reader = functools.partial(read_cif, folder=folder)
    for items in parallel_map(reader, cif_files(folder), n_jobs, "reading CIFs"):
        yield from items
