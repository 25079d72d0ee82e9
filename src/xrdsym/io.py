"""Thin file I/O at the edges of the pipeline: atomic writes, JSON lines, tables."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

REJECT_COLUMNS = ["id", "stage", "reason"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    Works for files and directories, so a killed stage never leaves a half-written output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_jsonl_gz(path: str | Path, records: Iterable[dict], compresslevel: int = 9) -> int:
    """Stream ``records`` to a gzip-compressed JSON-lines file, atomically; return the count.
    The same records give the same bytes whenever they are written.

    ``compresslevel`` is gzip's, 1 (fastest) to 9 (smallest)."""
    count = 0
    # mtime 0: gzip would stamp the time of writing into the header, and the same records
    # would make another file each run, so DVC would rerun every later stage after a rerun.
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8") as handle,
    ):
        for record in records:
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def append_jsonl_gz(path: str | Path, records: Iterable[dict], compresslevel: int = 9) -> int:
    """Append ``records`` to a gzip-compressed JSON-lines file as one more gzip member (which
    :func:`read_jsonl_gz` reads on as one stream); return the count.

    Not atomic: for temporary spool files, filled a batch at a time.
    """
    count = 0
    with gzip.open(path, "at", compresslevel=compresslevel, encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def read_jsonl_gz(path: str | Path) -> Iterator[dict]:
    """Stream the records of a gzip-compressed JSON-lines file, one at a time."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a CSV table atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def rejects_table(rejects: Iterable[dict]) -> pd.DataFrame:
    """The rejects (id, stage, reason) as a table, empty with its columns when there are none."""
    return pd.DataFrame(list(rejects), columns=REJECT_COLUMNS)


def write_npy(
    handle: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, blocks: Iterable[np.ndarray]
) -> None:
    """Write the .npy of the array ``shape`` of ``dtype`` whose rows are ``blocks`` joined,
    one block in memory at a time: the same bytes as ``np.save`` of the joined array."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    n_rows = 0
    for block in blocks:
        handle.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
        n_rows += len(block)
    if n_rows != shape[0]:
        raise RuntimeError(f"wrote {n_rows} rows of an array of shape {shape}")
