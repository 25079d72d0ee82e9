"""How well `xrdsym index` finds the lattice system and the cell, and how fast.

(a) Simulated, measurement-like: the test split of a patterns store, each pattern made afresh
from its stored peak list with the augmentation's measurement parts (params.yaml
``train.augment``: peak widths, Kα2, zero offset, sample displacement, background, scan
range and step, counting and detector noise, impurity peaks; seed fixed) and none of the
sample's (strain, texture, films, intensity jitter, thermal motion, amorphous hump), then
peaks and indexing as ``xrdsym index`` does. Scored against the **metric oracle**: spglib on
each structure's primitive lattice alone at 0.3 % of the cell size (what the positions
allow), per lattice system, with the error of the cell (Niggli-reduced primitive cells
compared, the wavelength scale of the Kα1 positions taken into account) and the seconds per
pattern of each worker process (one core each).

(b) Measured: every folder under ``--sets`` with a ``labels.csv`` (the RRUFF and Rietveld
development scans): the lattice system against the labelled crystal system (a rhombohedral
lattice counts as trigonal; a hexagonal one as hexagonal or trigonal); for the Rietveld
CIFs, the cell against the file's ``_cell_*`` values.

    python bench/indexing.py --patterns data/patterns --structures data/structures \
        --sets ../shared/datasets/measured_dev --per-system 60 --out bench/results/indexing.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.augmentation import AugmentSettings, augment_patterns
from xrdsym.config import load_params
from xrdsym.diffraction import PeakTable, TwoThetaGrid
from xrdsym.errors import XrdsymError
from xrdsym.index_scans import index_file, index_scan, search_settings
from xrdsym.indexing import (
    CRYSTAL_SYSTEM_OF_LATTICE,
    LATTICE_SYSTEMS,
    ORACLE_TOLERANCE,
    IndexSettings,
    metric_lattice_system,
    reduced_cell,
)
from xrdsym.io import read_jsonl_gz, write_json
from xrdsym.measured import parse_wavelength
from xrdsym.parallel import parallel_map
from xrdsym.peaks import PeakSettings

SEED = 20261206
# The sample's parts are off: they change which lines are seen (texture, films, jitter,
# thermal motion), where (strain: a different cell) or add a hump, not how a diffractometer
# measures.
SAMPLE_PARTS_OFF = {
    "strain": None,
    "march_dollase_r": None,
    "film_probability": None,
    "intensity_jitter": None,
    "debye_waller_b_angstrom2": None,
    "amorphous_hump": None,
}
LABELS_FILE = "labels.csv"
ENOUGH_PEAKS = 10


def _lattice_of(structure_dict: dict) -> tuple[str, np.ndarray]:
    """The metric oracle's lattice system and the Niggli-reduced primitive cell of a
    structure."""
    import spglib
    from pymatgen.core import Structure

    structure = Structure.from_dict(structure_dict)
    cell = (
        structure.lattice.matrix,
        structure.frac_coords,
        [site.specie.Z if hasattr(site.specie, "Z") else 0 for site in structure],
    )
    primitive = spglib.find_primitive(cell, symprec=1e-3)
    lattice = structure.lattice.matrix if primitive is None else np.asarray(primitive[0])
    system, _ = metric_lattice_system(lattice, ORACLE_TOLERANCE)
    reduced = spglib.niggli_reduce(lattice)
    lattice = lattice if reduced is None else np.asarray(reduced)
    from xrdsym.indexing import cell_of_metric, metric_of_lattice

    parameters = cell_of_metric(metric_of_lattice(lattice))
    return system, np.array([parameters[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")])


def _index_simulated(
    item: tuple[str, np.ndarray, float],
    two_theta: np.ndarray,
    peak_settings: PeakSettings,
    index_settings: IndexSettings,
) -> dict[str, Any]:
    identifier, pattern, wavelength = item
    started = time.perf_counter()
    covered = pattern > 0
    first, last = np.argmax(covered), len(pattern) - np.argmax(covered[::-1])
    peaks, result = index_scan(
        two_theta[first:last], pattern[first:last], wavelength, peak_settings, index_settings
    )
    best = result.best
    return {
        "id": identifier,
        "peaks": len(peaks),
        "peak_wavelength": peaks.wavelength,
        "lattice_system": None if best is None else best.lattice_system,
        "centring": None if best is None else best.centring,
        "cell": None if best is None else best.cell,
        "M": None if best is None else best.m,
        "reason": result.reason,
        "budget_spent": result.budget_spent,
        "index_seconds": result.seconds,
        "seconds": time.perf_counter() - started,
    }


def simulated(args: argparse.Namespace, params: dict) -> dict[str, Any]:
    patterns_dir = args.patterns
    index = pd.read_csv(patterns_dir / "index.csv")
    settings = json.loads((patterns_dir / "settings.json").read_text())
    wavelength = parse_wavelength(settings["wavelength"])
    grid = TwoThetaGrid(
        settings["two_theta_min"], settings["two_theta_max"], settings["two_theta_step"]
    )
    test = index[index["split"] == args.split].reset_index()
    wanted = set(test["id"])
    structures = {
        r["id"]: r["structure"]
        for r in read_jsonl_gz(args.structures / "structures.jsonl.gz")
        if r["id"] in wanted
    }
    print(f"metric oracle on {len(test)} {args.split} structures", file=sys.stderr)
    truth = {i: _lattice_of(structures[i]) for i in test["id"]}
    test["oracle"] = [truth[i][0] for i in test["id"]]
    # A balanced draw: the same number of patterns of each lattice system (all if fewer).
    rng = np.random.default_rng(SEED)
    chosen = []
    for system in LATTICE_SYSTEMS:
        rows = test.index[test["oracle"] == system].to_numpy()
        chosen.extend(rng.permutation(rows)[: args.per_system])
    test = test.loc[sorted(chosen)]
    with np.load(patterns_dir / "peaks.npz") as stored:
        table = PeakTable(**{name: stored[name] for name in stored.files})
    augment = AugmentSettings.from_params(params["train"]["augment"] | {"enabled": True})
    augment = replace(augment, **SAMPLE_PARTS_OFF)
    made = augment_patterns(
        table, test["index"].to_numpy(), grid, wavelength, augment, np.random.default_rng(SEED)
    )
    items = [(i, row.astype(float), wavelength) for i, row in zip(test["id"], made, strict=True)]
    peak_settings, index_settings = search_settings(params.get("peaks"), params["index"])
    work = partial(
        _index_simulated,
        two_theta=grid.values,
        peak_settings=peak_settings,
        index_settings=index_settings,
    )
    rows = list(parallel_map(work, items, args.jobs, "indexing"))
    for row, oracle in zip(rows, test["oracle"], strict=True):
        row["oracle"] = oracle
        row["correct"] = row["lattice_system"] == oracle
        row["cell_error"] = None
        if row["correct"]:
            found = reduced_cell(row["cell"], row["centring"])
            expected = truth[row["id"]][1].copy()
            # Kα1 positions of peaks simulated at the weighted Kα: every d scaled by this.
            expected[:3] *= row["peak_wavelength"] / wavelength
            row["cell_error"] = float(np.max(np.abs(found[:3] / expected[:3] - 1)))
    return _summarise_simulated(rows, params, args)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _summarise_simulated(rows: list[dict], params: dict, args: argparse.Namespace) -> dict:
    per_system = {}
    for system in LATTICE_SYSTEMS:
        mine = [r for r in rows if r["oracle"] == system]
        if not mine:
            continue
        errors = [r["cell_error"] for r in mine if r["cell_error"] is not None]
        per_system[system] = {
            "n": len(mine),
            "agree_with_oracle": sum(r["correct"] for r in mine) / len(mine),
            "not_indexed": sum(r["lattice_system"] is None for r in mine) / len(mine),
            "found": dict(Counter(str(r["lattice_system"]) for r in mine)),
            "median_cell_error": _percentile(errors, 50),
            "cell_within_0.1%": (sum(e <= 1e-3 for e in errors) / len(errors)) if errors else None,
        }
    seconds = [r["seconds"] for r in rows]
    errors = [r["cell_error"] for r in rows if r["cell_error"] is not None]
    # Scans with few lines cannot be indexed whatever the method: the share with enough.
    enough = [r for r in rows if r["peaks"] >= ENOUGH_PEAKS]
    return {
        "patterns": len(rows),
        "agree_with_oracle": sum(r["correct"] for r in rows) / len(rows),
        f"with_{ENOUGH_PEAKS}_or_more_peaks": {
            "n": len(enough),
            "agree_with_oracle": sum(r["correct"] for r in enough) / max(len(enough), 1),
            "per_system": {
                system: [
                    sum(r["correct"] for r in enough if r["oracle"] == system),
                    sum(r["oracle"] == system for r in enough),
                ]
                for system in LATTICE_SYSTEMS
            },
        },
        "not_indexed": sum(r["lattice_system"] is None for r in rows) / len(rows),
        "budget_spent": sum(r["budget_spent"] for r in rows),
        "median_cell_error": _percentile(errors, 50),
        "seconds_per_pattern": {
            "median": _percentile(seconds, 50),
            "p95": _percentile(seconds, 95),
            "max": max(seconds),
        },
        "per_system": per_system,
        "augment": {k: v for k, v in params["train"]["augment"].items()} | SAMPLE_PARTS_OFF,
        "rows": rows,
    }


def _labels(folder: Path) -> list[dict[str, str]]:
    with open(folder / LABELS_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def _agrees(lattice_system: str | None, crystal_system: str) -> bool:
    """A rhombohedral lattice is a trigonal crystal's; a hexagonal one a hexagonal or a
    trigonal crystal's (powder positions cannot tell those apart)."""
    if lattice_system is None:
        return False
    if lattice_system == "hexagonal":
        return crystal_system in ("hexagonal", "trigonal")
    return CRYSTAL_SYSTEM_OF_LATTICE[lattice_system] == crystal_system


def _cif_cell(path: Path) -> tuple[dict[str, float], str] | None:
    """The first ``_cell_*`` set of a CIF and its lattice centring (from the space group's
    first letter), or None."""
    from pymatgen.io.cif import CifFile

    for block in CifFile.from_file(path).data.values():
        data = block.data
        if "_cell_length_a" not in data:
            continue

        def number(tag: str, data: dict = data) -> float:
            return float(str(data[tag]).split("(")[0])

        symbol = ""
        for tag in ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M"):
            if tag in data:
                symbol = str(data[tag]).strip().strip("'\"").strip()
                break
        centring = symbol[:1].upper() if symbol[:1].upper() in "PIFCR" and symbol else "P"
        if centring == "R" and abs(number("_cell_angle_gamma") - 120) > 1:
            centring = "P"  # rhombohedral axes: the cell is primitive
        names = ("a", "b", "c", "alpha", "beta", "gamma")
        tags = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
        return {n: number(f"_cell_{t}") for n, t in zip(names, tags, strict=True)}, centring
    return None


def _index_measured(path: Path, peak_settings, index_settings) -> list[dict[str, Any]]:
    try:
        patterns, _ = index_file(path, None, peak_settings, index_settings)
    except XrdsymError as exc:
        return [{"file": path.name, "error": str(exc)}]
    return [
        {
            "file": path.name,
            "source": p.source,
            "peaks": len(p.peaks),
            "kalpha2": p.peaks.kalpha2,
            "lattice_system": p.result.lattice_system,
            "centring": None if p.result.best is None else p.result.best.centring,
            "cell": None if p.result.best is None else p.result.best.cell,
            "M": None if p.result.best is None else p.result.best.m,
            "reason": p.result.reason,
            "seconds": p.result.seconds,
        }
        for p in patterns
    ]


def measured(args: argparse.Namespace, params: dict) -> dict[str, Any]:
    peak_settings, index_settings = search_settings(params.get("peaks"), params["index"])
    results = {}
    for folder in sorted(p.parent for p in args.sets.rglob(LABELS_FILE)):
        labels = _labels(folder)
        paths = [folder / row["file"] for row in labels]
        work = partial(_index_measured, peak_settings=peak_settings, index_settings=index_settings)
        found = list(parallel_map(work, paths, args.jobs, f"indexing {folder.name}"))
        rows = []
        for label, records in zip(labels, found, strict=True):
            record = records[0]  # the first measured block of a file
            row = record | {"label": label["crystal_system"]}
            row["correct"] = _agrees(record.get("lattice_system"), label["crystal_system"])
            single_phase = "TWO PHASES" not in label.get("notes", "")
            if folder.name == "x15" and single_phase and record.get("cell"):
                stated = _cif_cell(folder / label["file"])
                if stated is not None:
                    expected = reduced_cell(*stated)
                    got = reduced_cell(record["cell"], record["centring"])
                    row["cell_error"] = float(np.max(np.abs(got[:3] / expected[:3] - 1)))
            rows.append(row)
        per_class = defaultdict(list)
        for row in rows:
            per_class[row["label"]].append(row["correct"])
        errors = [r["cell_error"] for r in rows if "cell_error" in r]
        results[folder.name] = {
            "patterns": len(rows),
            "right_lattice_system": sum(r["correct"] for r in rows) / len(rows),
            "not_indexed": sum(r.get("lattice_system") is None for r in rows) / len(rows),
            "per_class": {k: [sum(v), len(v)] for k, v in sorted(per_class.items())},
            "cells_compared": len(errors),
            "cells_within_0.5%": sum(e <= 5e-3 for e in errors),
            "rows": rows,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--patterns", type=Path, default=None, help="a patterns store")
    parser.add_argument("--structures", type=Path, default=Path("data/structures"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-system", type=int, default=60, help="patterns per lattice system")
    parser.add_argument("--sets", type=Path, default=None, help="folders with labels.csv")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/indexing.json"))
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds per pattern in place of params' index.time_budget_s",
    )
    args = parser.parse_args()
    params = load_params(args.params)
    if args.time_budget is not None:
        params["index"] = params["index"] | {"time_budget_s": args.time_budget}
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "index": params["index"],
    }
    if args.patterns is not None:
        report["simulated"] = simulated(args, params)
        part = report["simulated"]
        print(
            f"simulated ({part['patterns']} patterns): oracle's lattice system "
            f"{part['agree_with_oracle']:.3f}, not indexed {part['not_indexed']:.3f}, median "
            f"cell error {100 * (part['median_cell_error'] or math.nan):.3f} %, seconds median "
            f"{part['seconds_per_pattern']['median']:.2f} / p95 "
            f"{part['seconds_per_pattern']['p95']:.2f}"
        )
        enough = part[f"with_{ENOUGH_PEAKS}_or_more_peaks"]
        print(
            f"  with {ENOUGH_PEAKS} or more peaks ({enough['n']}): oracle's lattice system "
            f"{enough['agree_with_oracle']:.3f}; "
            + "  ".join(f"{k} {v[0]}/{v[1]}" for k, v in enough["per_system"].items())
        )
        for system, row in part["per_system"].items():
            print(
                f"  {system:<13} n={row['n']:3d}  agree {row['agree_with_oracle']:.2f}  "
                f"not indexed {row['not_indexed']:.2f}  median cell error "
                f"{100 * (row['median_cell_error'] or math.nan):.3f} %  found {row['found']}"
            )
    if args.sets is not None:
        report["measured"] = measured(args, params)
        for name, part in report["measured"].items():
            classes = "  ".join(f"{k} {v[0]}/{v[1]}" for k, v in part["per_class"].items())
            print(
                f"{name} ({part['patterns']}): right lattice system "
                f"{part['right_lattice_system']:.3f}, not indexed {part['not_indexed']:.3f}; "
                f"{classes}; cells within 0.5 %: {part['cells_within_0.5%']} of "
                f"{part['cells_compared']}"
            )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
