"""Stage synthesize: synthetic crystals drawn from the training split's Wyckoff and element
statistics (after Schopmans et al. 2023), simulated as the patterns stage simulates real ones.

Only the structures of the patterns stage's training split are counted: every other record
of the structures file is skipped by its id before its structure is built, so nothing of
validation or test leaks into the synthetic crystals. The crystals are simulated with the
patterns store's own settings (``settings.json``: wavelength, 2θ grid, broadening, symmetry
tolerances, simulator), so the two stores cannot disagree, and labelled by symmetry analysis
of the generated structure, as real ones are. The output is a store in the patterns stage's
format, every row in split ``train``, plus the statistics (``statistics.json``).
"""

from __future__ import annotations

import functools
import itertools
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.diffraction import TwoThetaGrid
from xrdsym.errors import XrdsymError
from xrdsym.io import atomic_path, read_jsonl_gz, rejects_table, write_json, write_table
from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject
from xrdsym.sources.wyckoff import (
    OrbitSummary,
    WyckoffSettings,
    WyckoffStatistics,
    chi_square_fit,
    generate_item,
    summarise_record,
    wyckoff_statistics,
)
from xrdsym.stages.download import STRUCTURES_FILE
from xrdsym.stages.patterns import (
    CHUNK_FILE,
    CHUNK_ROWS,
    INDEX_COLUMNS,
    INDEX_FILE,
    REJECTS_FILE,
    SETTINGS_FILE,
    TWO_THETA_FILE,
    assemble_chunks,
    record_worker,
    simulate_chunk,
)

PARAMS = ("seed", "classes", "n_jobs", "dask_scheduler", "synthesize")
STATISTICS_FILE = "statistics.json"
SPLIT = "train"
# Structures per batch, for the statistics and for the synthetic crystals alike: memory stays
# bounded by one batch of structures and patterns (as the patterns stage's chunk_size does).
BATCH_SIZE = 500
# The settings.json keys the simulation reads.
SETTINGS_KEYS = (
    "wavelength",
    "two_theta_min",
    "two_theta_max",
    "two_theta_step",
    "n_points",
    "sigma_points",
    "symprec",
    "angle_tolerance",
    "simulator",
)


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def read_training_ids(patterns_dir: Path) -> set[str]:
    """Ids of the patterns store's training split."""
    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str})
    return set(index.loc[index["split"] == SPLIT, "id"])


def read_pattern_settings(patterns_dir: Path) -> dict[str, Any]:
    """The patterns store's simulation settings; a store written before one of them was
    recorded is one error."""
    settings = json.loads((patterns_dir / SETTINGS_FILE).read_text())
    missing = [key for key in SETTINGS_KEYS if key not in settings]
    if missing:
        raise XrdsymError(
            f"{patterns_dir / SETTINGS_FILE}: no {missing[0]}; re-run `dvc repro patterns`"
        )
    return settings


def training_statistics(
    structures_path: Path,
    train_ids: set[str],
    symprec: float,
    angle_tolerance: float,
    n_jobs: int,
) -> tuple[WyckoffStatistics, list[Reject]]:
    """The Wyckoff statistics of the records of ``structures_path`` whose id is in
    ``train_ids``, and the rejects of those that cannot be counted. Other records are
    skipped by id, their structures never built."""
    worker = functools.partial(summarise_record, symprec=symprec, angle_tolerance=angle_tolerance)
    records = (data for data in read_jsonl_gz(structures_path) if data.get("id") in train_ids)
    summaries: list[OrbitSummary] = []
    rejects: list[Reject] = []
    for number, batch in enumerate(_batches(records, BATCH_SIZE), start=1):
        description = f"counting training orbits, batch {number}"
        for result in parallel_map(worker, batch, n_jobs, description):
            (rejects if isinstance(result, Reject) else summaries).append(result)
    return wyckoff_statistics(summaries), rejects


def run(
    params: dict[str, Any],
    structures_dir: Path,
    patterns_dir: Path,
    out_dir: Path,
    metrics_path: Path,
) -> None:
    """Write ``synthesize.n_structures`` synthetic crystals' patterns, peak lists, 2θ grid,
    index (split train), settings (the patterns store's), rejects and the statistics they
    were drawn from; and the metrics."""
    start = time.perf_counter()
    section = params["synthesize"]
    n_structures = section["n_structures"]
    settings = read_pattern_settings(patterns_dir)
    grid = TwoThetaGrid(
        settings["two_theta_min"], settings["two_theta_max"], settings["two_theta_step"]
    )
    if grid.size != settings["n_points"]:
        raise XrdsymError(
            f"{patterns_dir / SETTINGS_FILE}: the 2θ grid has {grid.size} points, the store "
            f"{settings['n_points']}; re-run `dvc repro patterns`"
        )
    train_ids = read_training_ids(patterns_dir)
    statistic_rejects: list[Reject] = []
    if n_structures:
        statistics, statistic_rejects = training_statistics(
            structures_dir / STRUCTURES_FILE,
            train_ids,
            settings["symprec"],
            settings["angle_tolerance"],
            params["n_jobs"],
        )
        if not statistics.n_structures:
            raise XrdsymError(
                f"{patterns_dir}: no training structure could be counted "
                f"({len(statistic_rejects)} rejected); nothing to draw synthetic crystals from"
            )
    else:
        # Nothing to draw: the structures are not even read, so the stage takes no time.
        statistics = wyckoff_statistics([])
    generator = functools.partial(
        generate_item,
        statistics=statistics,
        seed=params["seed"],
        settings=WyckoffSettings(
            section["max_atoms"], section["max_attempts"], section["attempt_timeout_s"]
        ),
    )
    simulator = record_worker(settings)
    requested: Counter = Counter()
    delivered: Counter = Counter()
    generate_rejects: list[dict[str, str]] = []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.chunks.", dir=out_dir.parent) as tmp:
        chunk_paths = []
        indices = iter(range(n_structures))
        for number, batch in enumerate(_batches(indices, BATCH_SIZE)):
            records, groups = [], {}
            description = f"drawing synthetic crystals, batch {number + 1}"
            for group, item in parallel_map(generator, batch, params["n_jobs"], description):
                requested[group] += 1
                if isinstance(item, Reject):
                    generate_rejects.append(item.to_row())
                    continue
                records.append(item.to_json())
                groups[item.id] = group
            description = f"simulating synthetic patterns, batch {number + 1}"
            chunk = simulate_chunk(
                records, simulator, params["classes"], grid.size, params["n_jobs"], description
            )
            for row in json.loads(chunk[CHUNK_ROWS].item()):
                delivered[groups[row["id"]]] += 1
            chunk_paths.append(Path(tmp) / CHUNK_FILE.format(number))
            np.savez(chunk_paths[-1], **chunk)
        with atomic_path(out_dir) as out:
            out.mkdir()
            rows, simulate_rejects = assemble_chunks(chunk_paths, out, grid.size)
            index = pd.DataFrame(rows, columns=INDEX_COLUMNS[:-1])
            index["split"] = SPLIT
            np.save(out / TWO_THETA_FILE, grid.values)
            write_table(out / INDEX_FILE, index)
            rejects = [r.to_row() for r in statistic_rejects] + generate_rejects + simulate_rejects
            write_table(out / REJECTS_FILE, rejects_table(rejects))
            # The patterns store's own file, byte for byte: the train stage compares them.
            shutil.copyfile(patterns_dir / SETTINGS_FILE, out / SETTINGS_FILE)
            write_json(out / STATISTICS_FILE, statistics.to_json())
    seconds = time.perf_counter() - start
    n_failed = len(generate_rejects) + len(simulate_rejects)
    per_class = index["crystal_system"].value_counts().to_dict()
    write_json(
        metrics_path,
        {
            "n_requested": n_structures,
            "n_generated": len(index),
            "n_rejected": n_failed,
            "rejected_by_stage": dict(
                Counter(r["stage"] for r in generate_rejects + simulate_rejects)
            ),
            "per_class": {c: per_class.get(c, 0) for c in sorted(params["classes"])},
            "n_training_structures": statistics.n_structures,
            "n_training_rejected": len(statistic_rejects),
            "n_training_space_groups": len(statistics.space_groups),
            "seconds": round(seconds, 1),
            "structures_per_second": round(len(index) / seconds, 2) if seconds else None,
            # Space groups against the training frequencies: as drawn for every item (the
            # sampler), of the crystals that came out, and as symmetry analysis labels them
            # (PyXtal's crystal may have more symmetry than it was built with).
            "space_group_fit": {
                "requested": chi_square_fit(requested, statistics.space_groups),
                "generated": chi_square_fit(delivered, statistics.space_groups),
                "labelled": chi_square_fit(
                    Counter(index["space_group"].astype(int)), statistics.space_groups
                ),
            },
        },
    )
    print(
        f"synthesize: {len(index)} of {n_structures} synthetic patterns from "
        f"{statistics.n_structures} training structures, {n_failed} rejected, "
        f"{seconds:.0f} s -> {out_dir}"
    )
