"""Benchmark the images stage's store: the array store against one PNG per image (the paper's
folders), writing and reading back the same images, on the same patterns in one run.

    python bench/images_speed.py --n 1000 --out bench/results/images.json

Reads the first ``--n`` patterns of data/patterns (run `dvc repro patterns` first); draws each
with the stage's own function at 64 x 64 (the default) and 224 x 224 (the paper's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from xrdsym.imaging import pattern_image, write_png
from xrdsym.io import write_json
from xrdsym.stages.patterns import PATTERNS_FILE


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _measure(patterns: np.ndarray, size: int, folder: Path) -> dict[str, float]:
    """Seconds per image to draw; to draw and store as an array; to draw and store as PNGs;
    and to read back from each store."""
    n = len(patterns)
    drawn: list[np.ndarray] = []
    draw = _seconds(lambda: drawn.extend(pattern_image(p, size, "viridis") for p in patterns))
    array_path = folder / f"images_{size}.npy"

    def to_array() -> None:
        store = np.lib.format.open_memmap(array_path, "w+", np.uint8, (n, size, size, 3))
        for i, p in enumerate(patterns):
            store[i] = pattern_image(p, size, "viridis")
        store.flush()

    def to_png() -> None:
        for i, p in enumerate(patterns):
            write_png(folder / f"{size}_{i}.png", pattern_image(p, size, "viridis"))

    write_array, write_pngs = _seconds(to_array), _seconds(to_png)
    read_array = _seconds(lambda: np.load(array_path))
    read_pngs = _seconds(
        lambda: np.stack(
            [np.asarray(Image.open(folder / f"{size}_{i}.png").convert("RGB")) for i in range(n)]
        )
    )
    return {
        "draw_ms_per_image": round(1000 * draw / n, 3),
        "array_store_ms_per_image": round(1000 * write_array / n, 3),
        "png_store_ms_per_image": round(1000 * write_pngs / n, 3),
        "png_to_array_write_ratio": round(write_pngs / write_array, 2),
        "array_read_ms_per_image": round(1000 * read_array / n, 4),
        "png_read_ms_per_image": round(1000 * read_pngs / n, 3),
        "png_to_array_read_ratio": round(read_pngs / read_array, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/images.json"))
    args = parser.parse_args()
    patterns = np.asarray(np.load(args.patterns / PATTERNS_FILE, mmap_mode="r")[: args.n])
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "images": len(patterns),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 224):
            results[f"{size}x{size}"] = _measure(patterns, size, Path(tmp))
    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
