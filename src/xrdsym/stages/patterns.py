"""Stage 2, patterns: label every structure by symmetry analysis and simulate its pattern.

Structures are read from the JSON-lines file a chunk at a time (``patterns.chunk_size``) and
each finished chunk is kept in a cache folder beside the output,
``<out>/../.patterns_chunks/<key>/`` (DVC deletes the output folder itself before the stage
runs). The key hashes the structures file's content, every setting that changes a chunk and
the code that makes one, so a stopped run started again with the same inputs reuses the
chunks it finished, and anything else starts afresh. The chunks are then joined in order,
streamed into the output files, so that memory stays bounded by one chunk (plus the index
table); the cache folder goes once the output is in place. The output is the same, byte for
byte, whatever the chunk size and however often the run was stopped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.diffraction import (
    DEFAULT_SIMULATOR,
    Peaks,
    PeakTable,
    TwoThetaGrid,
    pattern_from_peaks,
    peak_simulator,
)
from xrdsym.io import (
    atomic_path,
    read_jsonl_gz,
    rejects_table,
    write_json,
    write_npy,
    write_table,
)
from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord
from xrdsym.split import grouped_stratified_split
from xrdsym.stages.download import STRUCTURES_FILE
from xrdsym.symmetry import analyse_symmetry

PARAMS = (
    "seed",
    "classes",
    "n_jobs",
    "dask_scheduler",
    "wavelength",
    "two_theta_min",
    "two_theta_max",
    "two_theta_step",
    "sigma",
    "patterns",
)
PATTERNS_FILE = "patterns.npy"
# Every structure's peak list (PeakTable's arrays), rows in index.csv order: what training
# re-broadens and perturbs when train.augment is on.
PEAKS_FILE = "peaks.npz"
TWO_THETA_FILE = "two_theta.npy"
INDEX_FILE = "index.csv"
SETTINGS_FILE = "settings.json"
REJECTS_FILE = "rejects.csv"
INDEX_COLUMNS = [
    "id",
    "formula",
    "space_group",
    "crystal_system",
    "structure_type",
    "source",
    "split",
]
# Finished chunks live in <out>/../CHUNKS_DIR/<key>/, one CHUNK_FILE each, numbered in order.
CHUNKS_DIR = ".patterns_chunks"
CHUNK_FILE, CHUNK_GLOB = "chunk-{:06d}.npz", "chunk-*.npz"
# What a chunk holds besides PeakTable's arrays: the patterns and two JSON texts.
CHUNK_PATTERNS, CHUNK_ROWS, CHUNK_REJECTS = "patterns", "rows", "rejects"
# The code and libraries that make a chunk: a change in any of them starts a fresh cache
# rather than mixing chunks made two ways (DVC re-runs the stage then, but would not know
# about chunks left by a stopped run).
CHUNK_CODE = (
    "diffraction.py",
    "xrd_vectorised.py",
    "symmetry.py",
    "sources/__init__.py",
    "stages/patterns.py",
)
CHUNK_LIBRARIES = ("numpy", "scipy", "pymatgen", "spglib")


def process_record(
    data: dict[str, Any],
    wavelength: str | float,
    grid: TwoThetaGrid,
    sigma: float,
    symprec: float,
    angle_tolerance: float,
    simulator: str = DEFAULT_SIMULATOR,
) -> tuple[dict[str, Any], np.ndarray, Peaks, np.ndarray] | Reject:
    """Index row, pattern, peaks and reciprocal lattice (rows a*, b*, c* in 1/Å, the basis of
    the peaks' hkl) of one stored structure, or the reason it cannot be used.

    ``simulator`` names the peak simulator (see :func:`xrdsym.diffraction.peak_simulator`).
    """
    record_id = data.get("id", "<no id>")
    step = "symmetry"
    try:
        record = StructureRecord.from_json(data)
        space_group, crystal_system, structure_type = analyse_symmetry(
            record.structure, symprec, angle_tolerance
        )
        step = "xrd"
        peaks = peak_simulator(simulator)(record.structure, wavelength, (grid.start, grid.stop))
        pattern = pattern_from_peaks(peaks, grid, sigma)
    except Exception as exc:  # any failure of one structure is recorded, never fatal
        return Reject(record_id, f"patterns:{step}", f"{exc.__class__.__name__}: {exc}")
    row = {
        "id": record.id,
        "formula": record.structure.composition.reduced_formula,
        "space_group": space_group,
        "crystal_system": crystal_system,
        "structure_type": structure_type,
        "source": record.source,
    }
    reciprocal = record.structure.lattice.reciprocal_lattice_crystallographic.matrix
    return row, pattern, peaks, reciprocal


def record_worker(settings: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """:func:`process_record` with the simulation settings of a store's settings.json (the
    patterns stage's own, or those a synthetic store copies from it)."""
    return functools.partial(
        process_record,
        wavelength=settings["wavelength"],
        grid=TwoThetaGrid(
            settings["two_theta_min"], settings["two_theta_max"], settings["two_theta_step"]
        ),
        sigma=settings["sigma_points"],
        symprec=settings["symprec"],
        angle_tolerance=settings["angle_tolerance"],
        simulator=settings["simulator"],
    )


def simulate_chunk(
    records: list[dict[str, Any]],
    worker: Callable[[dict[str, Any]], Any],
    classes: list[str],
    n_points: int,
    n_jobs: int,
    description: str,
) -> dict[str, np.ndarray]:
    """The arrays of one chunk file: the patterns (float32, kept structures x grid),
    PeakTable's arrays, and the index rows and rejects as JSON texts, all in input order.

    ``worker`` is :func:`process_record` with its settings, on a grid of ``n_points``;
    structures whose crystal system is not one of ``classes`` become rejects.
    """
    rows, patterns, peak_lists, reciprocals, rejects = [], [], [], [], []
    for result in parallel_map(worker, records, n_jobs, description):
        if isinstance(result, Reject):
            rejects.append(result.to_row())
            continue
        row, pattern, peaks, reciprocal = result
        if row["crystal_system"] not in classes:
            rejects.append(
                Reject(
                    row["id"],
                    "patterns:label",
                    f"crystal system {row['crystal_system']} (space group {row['space_group']}) "
                    "is not in classes",
                ).to_row()
            )
            continue
        rows.append(row)
        patterns.append(pattern)
        peak_lists.append(peaks)
        reciprocals.append(reciprocal)
    table = PeakTable.from_peaks(peak_lists, reciprocals)
    return {
        CHUNK_PATTERNS: np.stack(patterns) if patterns else np.zeros((0, n_points), np.float32),
        **{f.name: getattr(table, f.name) for f in fields(PeakTable)},
        CHUNK_ROWS: np.array(json.dumps(rows)),
        CHUNK_REJECTS: np.array(json.dumps(rejects)),
    }


def chunk_cache_key(structures_path: Path, settings: dict[str, Any]) -> str:
    """Hex key of the chunks made from the file ``structures_path`` with ``settings`` (every
    setting that changes a chunk) by this version of the code and libraries."""
    package = Path(__file__).parents[1]
    with open(structures_path, "rb") as handle:
        structures_sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    code = hashlib.sha256()
    for name in CHUNK_CODE:
        code.update((package / name).read_bytes())
    made_from = {
        "structures_sha256": structures_sha256,
        "settings": settings,
        "code_sha256": code.hexdigest(),
        "libraries": {name: version(name) for name in CHUNK_LIBRARIES},
    }
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]


def _record_chunks(path: Path, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    """The JSON records of ``path`` in lists of ``chunk_size`` (the last may be shorter)."""
    records = read_jsonl_gz(path)
    while chunk := list(itertools.islice(records, chunk_size)):
        yield chunk


def _chunk_arrays(chunk_paths: Iterable[Path], name: str) -> Iterator[np.ndarray]:
    """Array ``name`` of every chunk file, one file open at a time."""
    for path in chunk_paths:
        with np.load(path) as chunk:
            yield chunk[name]


def _joined_offsets(chunk_paths: Iterable[Path]) -> Iterator[np.ndarray]:
    """The chunks' PeakTable offsets as one table's: each chunk's shifted past the peaks of
    the chunks before it."""
    yield np.zeros(1, dtype=np.int64)
    n_peaks_before = 0
    for offsets in _chunk_arrays(chunk_paths, "offsets"):
        yield offsets[1:] + n_peaks_before
        n_peaks_before += offsets[-1]


def assemble_chunks(
    chunk_paths: list[Path], out_dir: Path, n_points: int
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Join the chunk files, in order, into ``out_dir``'s patterns file and peaks file; return
    the index rows and the rejects of all chunks."""
    rows, rejects, n_peaks = [], [], 0
    for path in chunk_paths:
        with np.load(path) as chunk:
            rows += json.loads(chunk[CHUNK_ROWS].item())
            rejects += json.loads(chunk[CHUNK_REJECTS].item())
            n_peaks += int(chunk["offsets"][-1])
    with open(out_dir / PATTERNS_FILE, "wb") as handle:
        blocks = _chunk_arrays(chunk_paths, CHUNK_PATTERNS)
        write_npy(handle, (len(rows), n_points), np.dtype(np.float32), blocks)
    # The dtypes and trailing shapes are those PeakTable.from_peaks gives every table.
    template = PeakTable.from_peaks([], [])
    n_rows = {
        "two_theta": n_peaks,
        "intensities": n_peaks,
        "hkl": n_peaks,
        "offsets": len(rows) + 1,
        "reciprocal_lattices": len(rows),
    }
    # Written as np.savez writes it (stored zip64 members, one per field): the same bytes.
    with zipfile.ZipFile(out_dir / PEAKS_FILE, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
        for name in (f.name for f in fields(PeakTable)):
            like = getattr(template, name)
            blocks = (
                _joined_offsets(chunk_paths)
                if name == "offsets"
                else _chunk_arrays(chunk_paths, name)
            )
            with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
                write_npy(member, (n_rows[name], *like.shape[1:]), like.dtype, blocks)
    return rows, rejects


def split_counts(index: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Structures, structure types and reduced formulas in each split."""
    return {
        split: {
            "structures": len(rows),
            "structure_types": rows["structure_type"].nunique(),
            "formulas": rows["formula"].nunique(),
        }
        for split, rows in index.groupby("split", sort=True)
    }


def run(params: dict[str, Any], structures_dir: Path, out_dir: Path, metrics_path: Path) -> None:
    """Write patterns (float32, N x grid), the peak lists, the 2θ grid, the index table and
    the rejects."""
    section = params["patterns"]
    grid = TwoThetaGrid(params["two_theta_min"], params["two_theta_max"], params["two_theta_step"])
    settings = {
        "wavelength": params["wavelength"],
        "two_theta_min": grid.start,
        "two_theta_max": grid.stop,
        "two_theta_step": grid.step,
        "n_points": grid.size,
        "sigma_points": params["sigma"],
        "symprec": section["symprec"],
        "angle_tolerance": section["angle_tolerance"],
        "simulator": section["simulator"],
    }
    worker = record_worker(settings)
    structures_path = structures_dir / STRUCTURES_FILE
    chunk_size = section["chunk_size"]
    key = chunk_cache_key(
        structures_path, {**settings, "classes": params["classes"], "chunk_size": chunk_size}
    )
    cache_dir = out_dir.parent / CHUNKS_DIR / key
    n_finished = len(list(cache_dir.glob(CHUNK_GLOB)))
    if n_finished:
        print(f"patterns: reusing {n_finished} finished chunks in {cache_dir}")

    chunk_paths, n_reused = [], 0
    for number, records in enumerate(_record_chunks(structures_path, chunk_size)):
        chunk_paths.append(cache_dir / CHUNK_FILE.format(number))
        if chunk_paths[-1].exists():
            n_reused += 1
            continue
        description = f"simulating patterns, chunk {number + 1}"
        chunk = simulate_chunk(
            records, worker, params["classes"], grid.size, params["n_jobs"], description
        )
        with atomic_path(chunk_paths[-1]) as tmp:
            np.savez(tmp, **chunk)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        rows, rejects = assemble_chunks(chunk_paths, tmp, grid.size)
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS[:-1])
        index["split"] = grouped_stratified_split(
            index["crystal_system"],
            index[section["group_by"]],
            section["test_size"],
            section["val_size"],
            params["seed"],
        )
        np.save(tmp / TWO_THETA_FILE, grid.values)
        write_table(tmp / INDEX_FILE, index)
        write_table(tmp / REJECTS_FILE, rejects_table(rejects))
        write_json(tmp / SETTINGS_FILE, settings)
    shutil.rmtree(cache_dir)
    with contextlib.suppress(OSError):  # not empty: chunks of other inputs or settings
        cache_dir.parent.rmdir()
    write_json(
        metrics_path,
        {
            "n_patterns": len(index),
            "n_rejected": len(rejects),
            "rejected_by_stage": dict(Counter(r["stage"] for r in rejects)),
            "per_class": index["crystal_system"].value_counts().sort_index().to_dict(),
            "group_by": section["group_by"],
            "per_split": split_counts(index),
            "simulator": section["simulator"],
            "n_chunks": len(chunk_paths),
            "n_chunks_reused": n_reused,
        },
    )
    print(
        f"patterns: {len(index)} patterns on {grid.size} points, {len(rejects)} rejected "
        f"({len(chunk_paths)} chunks, {n_reused} reused)"
    )
