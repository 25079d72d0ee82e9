"""Stage 2, patterns: label every structure by symmetry analysis and simulate its pattern."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.diffraction import Peaks, PeakTable, TwoThetaGrid, pattern_from_peaks, simulate_peaks
from xrdsym.io import atomic_path, read_jsonl_gz, rejects_table, write_json, write_table
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
INDEX_COLUMNS = ["id", "formula", "space_group", "crystal_system", "source", "split"]


def process_record(
    data: dict[str, Any],
    wavelength: str | float,
    grid: TwoThetaGrid,
    sigma: float,
    symprec: float,
    angle_tolerance: float,
) -> tuple[dict[str, Any], np.ndarray, Peaks, np.ndarray] | Reject:
    """Index row, pattern, peaks and reciprocal lattice (rows a*, b*, c* in 1/Å, the basis of
    the peaks' hkl) of one stored structure, or the reason it cannot be used."""
    record_id = data.get("id", "<no id>")
    step = "symmetry"
    try:
        record = StructureRecord.from_json(data)
        space_group, crystal_system = analyse_symmetry(record.structure, symprec, angle_tolerance)
        step = "xrd"
        peaks = simulate_peaks(record.structure, wavelength, (grid.start, grid.stop))
        pattern = pattern_from_peaks(peaks, grid, sigma)
    except Exception as exc:  # any failure of one structure is recorded, never fatal
        return Reject(record_id, f"patterns:{step}", f"{exc.__class__.__name__}: {exc}")
    row = {
        "id": record.id,
        "formula": record.structure.composition.reduced_formula,
        "space_group": space_group,
        "crystal_system": crystal_system,
        "source": record.source,
    }
    reciprocal = record.structure.lattice.reciprocal_lattice_crystallographic.matrix
    return row, pattern, peaks, reciprocal


def run(params: dict[str, Any], structures_dir: Path, out_dir: Path, metrics_path: Path) -> None:
    """Write patterns (float32, N x grid), the peak lists, the 2θ grid, the index table and
    the rejects."""
    section = params["patterns"]
    grid = TwoThetaGrid(params["two_theta_min"], params["two_theta_max"], params["two_theta_step"])
    worker = functools.partial(
        process_record,
        wavelength=params["wavelength"],
        grid=grid,
        sigma=params["sigma"],
        symprec=section["symprec"],
        angle_tolerance=section["angle_tolerance"],
    )
    records = list(read_jsonl_gz(structures_dir / STRUCTURES_FILE))
    rows, patterns, peak_lists, reciprocals, rejects = [], [], [], [], []
    for result in parallel_map(worker, records, params["n_jobs"], "simulating patterns"):
        if isinstance(result, Reject):
            rejects.append(result.to_row())
            continue
        row, pattern, peaks, reciprocal = result
        if row["crystal_system"] not in params["classes"]:
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

    index = pd.DataFrame(rows, columns=INDEX_COLUMNS[:-1])
    index["split"] = grouped_stratified_split(
        index["crystal_system"],
        index["formula"],
        section["test_size"],
        section["val_size"],
        params["seed"],
    )
    matrix = np.stack(patterns) if patterns else np.zeros((0, grid.size), dtype=np.float32)
    peak_table = PeakTable.from_peaks(peak_lists, reciprocals)
    settings = {
        "wavelength": params["wavelength"],
        "two_theta_min": grid.start,
        "two_theta_max": grid.stop,
        "two_theta_step": grid.step,
        "n_points": grid.size,
        "sigma_points": params["sigma"],
        "symprec": section["symprec"],
        "angle_tolerance": section["angle_tolerance"],
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / PATTERNS_FILE, matrix)
        np.savez(
            tmp / PEAKS_FILE, **{f.name: getattr(peak_table, f.name) for f in fields(PeakTable)}
        )
        np.save(tmp / TWO_THETA_FILE, grid.values)
        write_table(tmp / INDEX_FILE, index)
        write_table(tmp / REJECTS_FILE, rejects_table(rejects))
        write_json(tmp / SETTINGS_FILE, settings)
    write_json(
        metrics_path,
        {
            "n_patterns": len(index),
            "n_rejected": len(rejects),
            "rejected_by_stage": dict(Counter(r["stage"] for r in rejects)),
            "per_class": index["crystal_system"].value_counts().sort_index().to_dict(),
            "per_split": index["split"].value_counts().sort_index().to_dict(),
        },
    )
    print(f"patterns: {len(index)} patterns on {grid.size} points, {len(rejects)} rejected")
