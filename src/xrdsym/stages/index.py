"""Stage index: peaks and lattice search on the patterns, the features the combiner reads.

The validation and test patterns (all of them by default, or as many as ``index.per_split``
says, drawn with the seed, and as many training patterns as it says) are each first made
measurement-like once from its stored peak list, with the train stage's augmentation
(``train.augment``) and the draws of :data:`xrdsym.inputs.MEASUREMENT_STREAMS`: the
validation patterns are exactly those the network is calibrated on, the test patterns those
evaluate scores network, indexing and combination on. (Without augmentation, the stored
patterns themselves.) Then, as ``xrdsym index`` does for a scan: peaks
(:func:`xrdsym.peaks.find_peaks`) on the part the scan covers, lattice search
(:func:`xrdsym.indexing.index_lines`), the combiner's features
(:func:`xrdsym.hybrid.index_features`). Each row also holds the metric oracle's lattice
system of the structure's own lattice (:func:`xrdsym.indexing.metric_lattice_system`): what
the peak positions allow.

Patterns are indexed a chunk at a time (``index.chunk_size``) and each finished chunk is kept
in ``<out>/../.index_chunks/<key>/`` until the stage ends, so that a stopped run resumes there,
as the patterns stage does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.augmentation import AugmentSettings, peak_reflections
from xrdsym.diffraction import PeakTable, TwoThetaGrid
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.hybrid import feature_matrix, index_features
from xrdsym.index_scans import index_measured_part, search_settings, warm_up
from xrdsym.indexing import IndexResult, IndexSettings, metric_lattice_system
from xrdsym.inputs import MEASUREMENT_STREAMS, measured_once, read_pattern_split, read_peak_split
from xrdsym.io import atomic_path, write_json, write_table
from xrdsym.measured import parse_wavelength
from xrdsym.parallel import parallel_map
from xrdsym.peaks import PeakSettings
from xrdsym.stages.patterns import INDEX_FILE, PEAKS_FILE
from xrdsym.stages.patterns import SETTINGS_FILE as PATTERN_SETTINGS_FILE
from xrdsym.symmetry import lattice_system_of_space_group, target_classes

PARAMS = (
    "seed",
    "classes",
    "target",
    "n_jobs",
    "dask_scheduler",
    "train.augment",
    "peaks",
    "index",
)
FEATURES_FILE = "features.csv"
SETTINGS_FILE = "settings.json"
SPLITS = ("val", "test", "train")
# Patterns indexed per split when index.per_split does not say (None: all).
DEFAULT_PER_SPLIT: dict[str, int | None] = {"val": None, "test": None, "train": 0}
CHUNKS_DIR = ".index_chunks"
CHUNK_FILE = "chunk-{:06d}.csv"
# Code and libraries that make a chunk: a change in any starts a fresh cache.
CHUNK_CODE = (
    "augmentation.py",
    "diffraction.py",
    "wavelengths.py",
    "measured.py",
    "settings.py",
    "symmetry.py",
    "peaks.py",
    "indexing.py",
    "index_scans.py",
    "hybrid.py",
    "inputs.py",
    "stages/index.py",
)
CHUNK_LIBRARIES = ("numpy", "scipy", "numba", "spglib")
CELL_KEYS = ("a", "b", "c", "alpha", "beta", "gamma")


def stage_settings(section: dict[str, Any]) -> tuple[dict[str, int | None], int]:
    """Patterns indexed per split (None: all) and the chunk size, from the ``index`` section;
    ParamsError naming the key for a bad value."""
    section = section or {}
    per_split = section.get("per_split", DEFAULT_PER_SPLIT)
    chunk_size = section.get("chunk_size", 200)
    if not isinstance(per_split, dict) or set(per_split) - set(SPLITS):
        raise ParamsError(
            f"params.yaml: index.per_split={per_split!r} is invalid: must map train, val and "
            "test to a number of patterns or null (all)"
        )
    per_split = DEFAULT_PER_SPLIT | per_split
    for split, count in per_split.items():
        whole = isinstance(count, int) and not isinstance(count, bool) and count >= 0
        if count is not None and not whole:
            raise ParamsError(
                f"params.yaml: index.per_split.{split}={count!r} is invalid: must be a whole "
                "number >= 0 or null (all)"
            )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ParamsError(
            f"params.yaml: index.chunk_size={chunk_size!r} is invalid: must be a whole number >= 1"
        )
    return per_split, chunk_size


def augment_section(section: dict[str, Any]) -> dict[str, Any]:
    """train.augment without what does not change a measured pattern (``workers``)."""
    return {key: value for key, value in section.items() if key != "workers"}


def reason_code(result: IndexResult, n_peaks: int, settings: IndexSettings) -> str:
    """Why a pattern was not indexed, as a short code counted in metrics/index.json
    (``indexed`` when it was)."""
    if result.best is not None:
        return "indexed"
    if len(result.two_theta) < settings.min_lines:
        return "no_peaks" if n_peaks == 0 else "too_few_peaks"
    if result.budget_spent:
        return "time_budget_spent"
    return "no_cell_passes" if result.candidates else "no_trial_cell"


def index_row(
    pattern: np.ndarray,
    two_theta: np.ndarray,
    wavelength: float,
    peak_settings: PeakSettings,
    index_settings: IndexSettings,
) -> dict[str, Any]:
    """One pattern on the grid ``two_theta`` (degrees) indexed: the chosen cell, M(N), F(N),
    the reason when there is none, the seconds taken and the combiner's features. A
    truncated scan (zeros outside) is read where it is measured."""
    warm_up()
    started = time.perf_counter()
    peaks, result = index_measured_part(
        two_theta, pattern, wavelength, peak_settings, index_settings
    )
    best = result.best
    row: dict[str, Any] = {
        "n_peaks": len(peaks),
        "reason": reason_code(result, len(peaks), index_settings),
        "lattice_system": None if best is None else best.lattice_system,
        "centring": None if best is None else best.centring,
        **{key: (None if best is None else best.cell[key]) for key in CELL_KEYS},
        "zero_shift_deg": None if best is None else best.zero_shift_deg,
        "M": None if best is None else best.m,
        "F": None if best is None else best.f,
        "lines_indexed": None if best is None else best.lines_indexed,
        "lines_used": len(result.two_theta),
        "seconds": time.perf_counter() - started,
    }
    return row | index_features(len(peaks), result)


def oracle(reciprocal_lattice: np.ndarray) -> tuple[str, str]:
    """The metric oracle's lattice system and centring of a structure's lattice, from its
    reciprocal lattice (rows a*, b*, c* in 1/Å, no 2π)."""
    return metric_lattice_system(np.linalg.inv(reciprocal_lattice).T)


def split_patterns(
    patterns_dir: Path,
    split: str,
    classes: list[str],
    target: str,
    augment: AugmentSettings | None,
    seed: int,
    sample: int | None = None,
) -> tuple[list[str], np.ndarray, PeakTable]:
    """Ids, patterns (measured once, or stored) and peak table of a split's patterns, in the
    order the train and evaluate stages read them; ``sample``: that many of them, drawn with
    ``seed`` in that order (None: all)."""
    table, _, ids = read_peak_split(patterns_dir, split, classes, target=target)
    chosen = np.arange(len(ids))
    if sample is not None and sample < len(ids):
        chosen = np.sort(
            np.random.default_rng([seed, MEASUREMENT_STREAMS[split]]).choice(
                len(ids), sample, replace=False
            )
        )
        table = table.subset(chosen)
    if augment is None:
        stored, _, _ = read_pattern_split(patterns_dir, split, classes, target=target)
        patterns = stored[chosen, :, 0]
    else:
        settings = json.loads((patterns_dir / PATTERN_SETTINGS_FILE).read_text())
        wavelength = parse_wavelength(settings["wavelength"])
        grid = TwoThetaGrid(
            settings["two_theta_min"], settings["two_theta_max"], settings["two_theta_step"]
        )
        reflections = peak_reflections(table, wavelength)
        patterns = measured_once(
            table, grid, wavelength, augment, (seed, MEASUREMENT_STREAMS[split]), reflections
        )
    return [ids[i] for i in chosen], patterns, table


def chunk_cache_key(patterns_dir: Path, settings: dict[str, Any]) -> str:
    """Hex key of the chunks made from the store ``patterns_dir`` with ``settings`` by this
    version of the code and libraries."""
    package = Path(__file__).parents[1]
    digest = hashlib.sha256()
    for name in (PEAKS_FILE, INDEX_FILE, PATTERN_SETTINGS_FILE):
        with open(patterns_dir / name, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    for name in CHUNK_CODE:
        digest.update((package / name).read_bytes())
    made_from = {
        "store_and_code": digest.hexdigest(),
        "settings": settings,
        "libraries": {name: version(name) for name in CHUNK_LIBRARIES},
    }
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]


def indexed_ids(index_dir: Path, split: str) -> list[str]:
    """Ids of the patterns of ``split`` the index stage indexed."""
    table = pd.read_csv(index_dir / FEATURES_FILE, dtype={"id": str}, usecols=["id", "split"])
    return table.loc[table["split"] == split, "id"].tolist()


def read_features(index_dir: Path, split: str, ids: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """The combiner's features (len(ids) x len(FEATURES)) and the index stage's rows of the
    patterns ``ids`` of ``split``, in that order; XrdsymError when some were not indexed."""
    table = pd.read_csv(index_dir / FEATURES_FILE, dtype={"id": str})
    rows = table[table["split"] == split].set_index("id")
    missing = [i for i in ids if i not in rows.index]
    if missing:
        raise XrdsymError(
            f"{index_dir / FEATURES_FILE}: {len(missing)} {split} patterns not indexed (e.g. "
            f"{missing[0]}); re-run `dvc repro index`"
        )
    rows = rows.loc[ids].reset_index()
    return feature_matrix(rows), rows


def read_index_settings(index_dir: Path, classes: list[str]) -> dict[str, Any]:
    """What the index stage in ``index_dir`` was run with (its settings.json), checked to be
    for a crystal-system model of ``classes``: the same classes and target give the same
    split order, so that its patterns are measured again the same way; else XrdsymError."""
    path = index_dir / SETTINGS_FILE
    try:
        made = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise XrdsymError(f"{path} is missing: run the index stage (`dvc repro index`)") from exc
    if made["classes"] != list(classes) or made["target"] != "crystal_system":
        raise XrdsymError(
            f"{path}: indexed for target {made['target']} with classes "
            f"{', '.join(made['classes'])}, not a crystal-system model of {', '.join(classes)}; "
            "re-run `dvc repro index`"
        )
    return made


def split_metrics(rows: pd.DataFrame) -> dict[str, Any]:
    """Indexing rates, agreement with the metric oracle, reasons and seconds of a split."""
    indexed = rows["reason"] == "indexed"
    agrees = rows["lattice_system"] == rows["oracle_lattice_system"]
    seconds = rows["seconds"].to_numpy(float)
    return {
        "n": len(rows),
        "indexed": float(indexed.mean()),
        "agrees_with_oracle": float(agrees.mean()),
        "agrees_with_oracle_when_indexed": float(agrees[indexed].mean()) if indexed.any() else None,
        "reasons": {k: int(v) for k, v in Counter(rows["reason"]).most_common()},
        "seconds_mean": float(seconds.mean()),
        "seconds_median": float(np.median(seconds)),
        "seconds_p95": float(np.percentile(seconds, 95)),
    }


def run(params: dict[str, Any], patterns_dir: Path, out_dir: Path, metrics_path: Path) -> None:
    """Write ``out_dir/features.csv`` (one row per pattern indexed: id, split, labels, the
    chosen cell, figures of merit, reason, seconds, oracle, features), ``settings.json`` (what
    made them, for the train and evaluate stages) and the metrics."""
    peak_settings, index_settings = search_settings(params["peaks"], params["index"])
    per_split, chunk_size = stage_settings(params["index"])
    augment = AugmentSettings.from_params(params["train"]["augment"])
    classes = target_classes(params["target"], params["classes"])
    pattern_settings = json.loads((patterns_dir / PATTERN_SETTINGS_FILE).read_text())
    wavelength = parse_wavelength(pattern_settings["wavelength"])
    two_theta = TwoThetaGrid(
        pattern_settings["two_theta_min"],
        pattern_settings["two_theta_max"],
        pattern_settings["two_theta_step"],
    ).values
    settings = {
        "seed": params["seed"],
        "classes": classes,
        "target": params["target"],
        # How the patterns were measured (not train.augment.workers, the threads of training).
        "augment": augment_section(params["train"]["augment"]) if augment is not None else None,
        "streams": MEASUREMENT_STREAMS,
        "per_split": per_split,
        "peaks": asdict(peak_settings),
        "index": asdict(index_settings),
    }
    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str}).set_index("id")
    key = chunk_cache_key(patterns_dir, settings | {"chunk_size": chunk_size})
    cache_dir = out_dir.parent / CHUNKS_DIR / key
    worker = functools.partial(
        index_row,
        two_theta=two_theta,
        wavelength=wavelength,
        peak_settings=peak_settings,
        index_settings=index_settings,
    )
    chunk_paths, n_reused = [], 0
    for split in SPLITS:
        sample = per_split[split]
        if sample == 0:
            continue
        try:
            ids, patterns, table = split_patterns(
                patterns_dir, split, classes, params["target"], augment, params["seed"], sample
            )
        except XrdsymError:
            if split == "train":
                raise
            print(f"index: no {split} patterns")
            continue
        for start in range(0, len(ids), chunk_size):
            path = cache_dir / f"{split}-{CHUNK_FILE.format(start // chunk_size)}"
            chunk_paths.append(path)
            if path.exists():
                n_reused += 1
                continue
            stop = min(start + chunk_size, len(ids))
            description = f"indexing {split} patterns {start + 1}-{stop} of {len(ids)}"
            rows = list(
                parallel_map(worker, list(patterns[start:stop]), params["n_jobs"], description)
            )
            chunk = pd.DataFrame(rows)
            chunk.insert(0, "id", ids[start:stop])
            chunk.insert(1, "split", split)
            labels = index.loc[chunk["id"], ["crystal_system", "space_group"]].to_numpy()
            chunk.insert(2, "crystal_system", labels[:, 0])
            chunk.insert(3, "space_group", labels[:, 1].astype(int))
            found = [oracle(table.reciprocal_lattices[i]) for i in range(start, stop)]
            chunk["oracle_lattice_system"] = [system for system, _ in found]
            chunk["oracle_centring"] = [centring for _, centring in found]
            chunk["lattice_system_true"] = [
                lattice_system_of_space_group(int(n)) for n in chunk["space_group"]
            ]
            cache_dir.mkdir(parents=True, exist_ok=True)
            write_table(path, chunk)
    if not chunk_paths:
        raise XrdsymError(
            f"{patterns_dir}: nothing to index (no patterns, or index.per_split asks for none)"
        )
    table = pd.concat([pd.read_csv(p, dtype={"id": str}) for p in chunk_paths], ignore_index=True)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        write_table(tmp / FEATURES_FILE, table)
        write_json(tmp / SETTINGS_FILE, settings)
    shutil.rmtree(cache_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: chunks of other inputs or settings
        cache_dir.parent.rmdir()
    per_split = {split: split_metrics(rows) for split, rows in table.groupby("split", sort=False)}
    write_json(
        metrics_path,
        {
            "n_patterns": len(table),
            "per_split": per_split,
            "time_budget_s": index_settings.time_budget_s,
            "seconds_mean": float(table["seconds"].mean()),
            "n_chunks": len(chunk_paths),
            "n_chunks_reused": n_reused,
        },
    )
    print(
        f"index: {len(table)} patterns ({len(chunk_paths)} chunks, {n_reused} reused); "
        + ", ".join(
            f"{split} {m['indexed']:.0%} indexed, {m['agrees_with_oracle']:.0%} as the oracle"
            for split, m in per_split.items()
        )
    )
