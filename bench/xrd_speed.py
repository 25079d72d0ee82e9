"""Benchmark the vectorised XRD simulator against pymatgen's, on one core, on one mixed set.

    python bench/xrd_speed.py --n 1000 --out bench/results/xrd.json

Per structure, in one process with one BLAS thread, both ways from structure to the pipeline's
pattern: (a) pymatgen's XRDCalculator (xrdsym.diffraction.simulate_peaks) and (b)
xrdsym.xrd_vectorised.simulate_peaks_vectorised, each followed by the same gridding and
smoothing (peaks_on_grid, smooth_and_normalise). The two are timed alternately, structure by
structure, so that load from other processes falls on both alike. Reported: time per structure
of each, their ratio, the largest pattern difference, and how well the peak positions agree.

The set: ``--n`` PyXtal crystals from the project's generator (params.yaml's classes and
download.synthetic, a fixed seed), of which every tenth is made a supercell of 100 atoms or
more and every tenth (another one) disordered: one element shares its sites half and half with
another, and one more site is left 10 % vacant; then every structure of the CIFs under
``--cif-dir`` (the real structures of evaluation_sets/real). The generated crystals are cached
under bench/.cache/, so a rerun skips the generation.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from threadpoolctl import threadpool_limits

from xrdsym.config import load_params
from xrdsym.diffraction import (
    Peaks,
    TwoThetaGrid,
    peaks_on_grid,
    simulate_peaks,
    smooth_and_normalise,
)
from xrdsym.io import read_jsonl_gz, write_json, write_jsonl_gz
from xrdsym.sources import StructureRecord, iter_source
from xrdsym.sources.cif_dir import cif_files, read_cif
from xrdsym.xrd_vectorised import simulate_peaks_vectorised

CACHE_DIR = Path("bench/.cache")
# Supercells are grown until they hold at least this many atoms.
LARGE_CELL_ATOMS = 100
# pymatgen's peaks above this fraction of the strongest must be found again, within
# POSITION_TOL_DEGREES; smoothed patterns (scaled to [0, 1]) should differ by PATTERN_TOL at most.
CHECKED_PEAK_FRACTION = 0.01
POSITION_TOL_DEGREES = 1e-4
PATTERN_TOL = 1e-3
# Extra structures asked of the generator, for the few draws it rejects.
GENERATION_MARGIN = 1.05


def synthetic_records(
    params: dict[str, Any], n: int, seed: int, jobs: int
) -> list[StructureRecord]:
    """``n`` synthetic crystals, the classes taken in turn; generated once, then cached."""
    classes = params["classes"]
    n_per_class = math.ceil(n * GENERATION_MARGIN / len(classes))
    settings = {"download": {"synthetic": params["download"]["synthetic"]}}
    key = json.dumps([classes, n_per_class, seed, settings], sort_keys=True)
    cache = CACHE_DIR / f"xrd_synthetic_{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl.gz"
    if not cache.exists():
        items = iter_source(
            "synthetic",
            classes=classes,
            n_per_class=n_per_class,
            seed=seed,
            n_jobs=jobs,
            settings=settings["download"],
        )
        write_jsonl_gz(cache, (r.to_json() for r in items if isinstance(r, StructureRecord)))
    records = [StructureRecord.from_json(data) for data in read_jsonl_gz(cache)]
    by_class = [[r for r in records if r.meta["requested_crystal_system"] == c] for c in classes]
    interleaved = [r for group in zip(*by_class, strict=False) for r in group]
    if len(interleaved) < n:
        raise SystemExit(f"the generator gave {len(interleaved)} usable structures, fewer than {n}")
    return interleaved[:n]


def large_cell(structure: Structure) -> Structure:
    """A supercell with at least LARGE_CELL_ATOMS atoms, grown along its shortest axis first."""
    scaling = [1, 1, 1]
    lengths = np.array(structure.lattice.abc)
    while len(structure) * math.prod(scaling) < LARGE_CELL_ATOMS:
        axis = int(np.argmin(lengths * scaling))
        scaling[axis] += 1
    return structure * scaling


def disordered(structure: Structure, elements: list[str], rng: np.random.Generator) -> Structure:
    """One element replaced half by another element on all its sites; one more site 90 % full."""
    present = sorted({el.symbol for el in structure.composition.elements})
    host = str(rng.choice(present))
    guest = str(rng.choice([e for e in elements if e not in present]))
    result = structure.copy()
    result.replace_species({host: {host: 0.5, guest: 0.5}})
    index = int(rng.integers(len(result)))
    result.replace(index, {sp: 0.9 * occupancy for sp, occupancy in result[index].species.items()})
    return result


def benchmark_set(
    params: dict[str, Any], n: int, seed: int, jobs: int, cif_dir: Path
) -> list[tuple[str, str, Structure]]:
    """(id, kind, structure) of the mixed set: synthetic, large, disordered, real."""
    rng = np.random.default_rng(seed)
    elements = list(params["download"]["synthetic"]["elements"])
    items = []
    for index, record in enumerate(synthetic_records(params, n, seed, jobs)):
        if index % 10 == 0:
            items.append((record.id, "large", large_cell(record.structure)))
        elif index % 10 == 1:
            items.append((record.id, "disordered", disordered(record.structure, elements, rng)))
        else:
            items.append((record.id, "synthetic", record.structure))
    for path in cif_files(cif_dir):
        for record in read_cif(path, cif_dir):
            if isinstance(record, StructureRecord):
                items.append((record.id, "real", record.structure))
    return items


def _pattern(simulate, structure, wavelength, grid, sigma) -> tuple[float, Peaks | str, Any]:
    """Seconds from structure to smoothed pattern, the peaks (or the error's name), the pattern."""
    start = time.perf_counter()
    try:
        peaks = simulate(structure, wavelength, (grid.start, grid.stop))
        pattern = smooth_and_normalise(peaks_on_grid(peaks, grid), sigma)
    except Exception as exc:  # both ways must fail alike: the kind of failure is compared
        return time.perf_counter() - start, exc.__class__.__name__, None
    return time.perf_counter() - start, peaks, pattern


def _compare(item_id: str, kind: str, atoms: int, a: tuple, b: tuple) -> dict[str, Any]:
    """One structure's row: both timings, and how the vectorised result (b) agrees with (a)."""
    (time_a, peaks_a, pattern_a), (time_b, peaks_b, pattern_b) = a, b
    row = {"id": item_id, "kind": kind, "atoms": atoms, "a_s": time_a, "b_s": time_b}
    if isinstance(peaks_a, str) or isinstance(peaks_b, str):
        row["failed"] = [p if isinstance(p, str) else None for p in (peaks_a, peaks_b)]
        return row
    checked = peaks_a.two_theta[peaks_a.intensities > CHECKED_PEAK_FRACTION * 100]
    distances = np.abs(checked[:, None] - peaks_b.two_theta[None, :]).min(axis=1, initial=np.inf)
    row.update(
        pattern_difference=float(np.abs(pattern_a - pattern_b).max()),
        checked_peaks=len(checked),
        position_error=float(distances.max(initial=0)),
        peaks_off=int((distances > POSITION_TOL_DEGREES).sum()),
        same_peaks=bool(
            np.array_equal(peaks_a.two_theta, peaks_b.two_theta)
            and np.array_equal(peaks_a.hkl, peaks_b.hkl)
            and np.allclose(peaks_a.intensities, peaks_b.intensities, rtol=1e-9, atol=1e-9)
        ),
    )
    return row


def _timing(rows: list[dict]) -> dict[str, Any]:
    a, b = sum(r["a_s"] for r in rows), sum(r["b_s"] for r in rows)
    atoms = [r["atoms"] for r in rows]
    return {
        "structures": len(rows),
        "atoms_min_median_max": [min(atoms), statistics.median(atoms), max(atoms)],
        "pymatgen_ms_per_structure": round(1e3 * a / len(rows), 3),
        "vectorised_ms_per_structure": round(1e3 * b / len(rows), 3),
        "speed_ratio": round(a / b, 2),
        "median_speed_ratio_of_structures": round(
            statistics.median(r["a_s"] / r["b_s"] for r in rows), 2
        ),
    }


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Timings (overall and per kind of structure) and agreement over the whole set."""
    compared = [r for r in rows if "failed" not in r]
    failed = [r for r in rows if "failed" in r]
    kinds = sorted({r["kind"] for r in rows})
    return {
        "timing": {
            "all": _timing(rows),
            **{k: _timing([r for r in rows if r["kind"] == k]) for k in kinds},
        },
        "agreement": {
            "structures_compared": len(compared),
            "structures_failed_alike": sum(r["failed"][0] == r["failed"][1] for r in failed),
            "structures_failed_differently": [
                r["id"] for r in failed if r["failed"][0] != r["failed"][1]
            ],
            "max_pattern_difference": max(r["pattern_difference"] for r in compared),
            f"patterns_differing_by_more_than_{PATTERN_TOL:g}": sum(
                r["pattern_difference"] > PATTERN_TOL for r in compared
            ),
            "checked_peaks_above_1_percent": sum(r["checked_peaks"] for r in compared),
            "max_peak_position_error_degrees": max(r["position_error"] for r in compared),
            f"peaks_off_by_more_than_{POSITION_TOL_DEGREES:g}_degrees": sum(
                r["peaks_off"] for r in compared
            ),
            "structures_with_the_same_peaks_hkl_and_intensities": sum(
                r["same_peaks"] for r in compared
            ),
        },
    }


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {
        "cpu": models[0] if models else platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pymatgen": importlib.metadata.version("pymatgen"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="synthetic structures in the set")
    parser.add_argument("--out", type=Path, default=Path("bench/results/xrd.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic crystals")
    parser.add_argument("--jobs", type=int, default=1, help="processes generating crystals")
    parser.add_argument("--cif-dir", type=Path, default=Path("evaluation_sets/real"))
    args = parser.parse_args()
    params = load_params(args.params)
    wavelength, sigma = params["wavelength"], params["sigma"]
    grid = TwoThetaGrid(params["two_theta_min"], params["two_theta_max"], params["two_theta_step"])
    items = benchmark_set(params, args.n, args.seed, args.jobs, args.cif_dir)

    ways = (simulate_peaks, simulate_peaks_vectorised)
    load_before = os.getloadavg()
    rows = []
    with threadpool_limits(limits=1):
        for _, _, structure in items[:5]:  # warm-up: imports and first-call caches
            for way in ways:
                _pattern(way, structure, wavelength, grid, sigma)
        for index, (item_id, kind, structure) in enumerate(items):
            # Alternate which goes first, so that neither always runs on a warmer cache.
            order = (0, 1) if index % 2 == 0 else (1, 0)
            runs = {i: _pattern(ways[i], structure, wavelength, grid, sigma) for i in order}
            rows.append(_compare(item_id, kind, len(structure), runs[0], runs[1]))
    result = {
        "machine": _machine(),
        "load_average_1_5_15_min_before_after": [os.getloadavg(), load_before][::-1],
        "note": "one process, one BLAS thread; per structure: peaks, peaks_on_grid and "
        "smooth_and_normalise, timed the two ways alternately; the cores are shared with others",
        "set": {
            "synthetic_seed": args.seed,
            "synthetic_n": args.n,
            "cif_dir": str(args.cif_dir),
            "wavelength": wavelength,
            "grid_degrees": [grid.start, grid.stop, grid.step],
            "sigma_points": sigma,
        },
        **summarise(rows),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
