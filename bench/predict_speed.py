"""Benchmark `xrdsym predict`: one file end to end (process start, model load, answer) and a
folder of measured-style files, against the model's own predict on in-memory arrays (ceiling).

    python bench/predict_speed.py --model src/xrdsym/shipped_model --n 1000

The model runs as `xrdsym predict` runs it: its numpy export when the directory has one
(engine "numpy"), else Keras.

Files are made from the model's own grid: random peaks broadened like a laboratory scan,
written as two-column .xy with the wavelength in a comment line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xrdsym.io import write_json
from xrdsym.prediction import load_classifier


def _write_scans(folder: Path, grid: np.ndarray, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        counts = 100 + rng.poisson(5, grid.size).astype(float)
        for position in rng.uniform(10, 88, rng.integers(5, 30)):
            counts += rng.uniform(50, 2000) * np.exp(-0.5 * ((grid - position) / 0.1) ** 2)
        path = folder / f"scan{i:05d}.xy"
        header = "wavelength: 1.54184"
        np.savetxt(path, np.column_stack([grid, counts]), fmt="%.4f", header=header)
        paths.append(path)
    return paths


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models"))
    parser.add_argument("--n", type=int, default=1000, help="files in the batch")
    parser.add_argument("--out", type=Path, default=Path("bench/results/predict.json"))
    args = parser.parse_args()
    classifier = load_classifier(args.model)
    grid = classifier.grid.values[1:]  # 2θ = 0 is not a measurable angle
    xrdsym = [sys.executable, "-m", "xrdsym.cli", "predict", "--model", str(args.model)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _write_scans(folder, grid, args.n, seed=0)
        single = min(_timed([*xrdsym, str(paths[0])]) for _ in range(3))
        batch = _timed([*xrdsym, str(folder), "--json", str(folder / "out.json")])
        # Ceiling: the same model on in-memory patterns of the same shape, no files, no start-up.
        patterns = np.random.default_rng(1).random((args.n, classifier.grid.size))
        classifier.probabilities(patterns[:64])  # warm-up (graph tracing)
        start = time.perf_counter()
        classifier.probabilities(patterns)
        ceiling = args.n / (time.perf_counter() - start)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": classifier.meta["model"],
        "engine": classifier.engine,
        "keras_backend_trained": classifier.meta.get("keras_backend"),
        "single_file_seconds": round(single, 2),
        "batch_files": args.n,
        "batch_seconds": round(batch, 2),
        "batch_patterns_per_second": round(args.n / batch, 1),
        "in_memory_patterns_per_second": round(ceiling, 1),
        "batch_to_in_memory_ratio": round(args.n / batch / ceiling, 3),
    }
    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
