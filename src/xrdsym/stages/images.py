"""Stage 3, images: the square image of every pattern, for models that read images.

The images go to one array, ``images.npy`` (N x size x size x 3, uint8, in the row order of the
patterns stage's index), which training reads at memory speed. With ``images.png: true`` each
image is also written as a PNG in one folder per split and crystal system, as the paper
stored them, for people to look at; PNG encoding costs several times the drawing, so it is off
by default. A 1D model reads the patterns and no image is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from xrdsym.config import MODEL_INPUTS
from xrdsym.imaging import image_file_name, pattern_image, write_png
from xrdsym.io import atomic_path, write_json
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE
from xrdsym.stages.patterns import SETTINGS_FILE as PATTERN_SETTINGS_FILE

PARAMS = ("model", "images")
SETTINGS_FILE = "settings.json"
IMAGES_FILE = "images.npy"


def run(params: dict[str, Any], patterns_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir/images.npy`` (and the PNG folders when asked) and the settings that
    made them.

    ``settings.json`` records the pattern settings too, so that a model trained on these
    images carries everything needed to preprocess a new pattern the same way.
    """
    section = params["images"]
    pattern_settings = json.loads((patterns_dir / PATTERN_SETTINGS_FILE).read_text())
    if MODEL_INPUTS[params["model"]] != "image":
        # A model that reads patterns needs no images; drawing them would only cost time.
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            write_json(tmp / SETTINGS_FILE, {"pattern": pattern_settings, "image": None})
        print(f"images: none drawn, model {params['model']} reads the patterns -> {out_dir}")
        return
    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str})
    patterns = np.load(patterns_dir / PATTERNS_FILE, mmap_mode="r")
    size = section["size"]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        # Written row by row into a memory-mapped file: memory stays bounded at any count.
        images = np.lib.format.open_memmap(
            tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(index), size, size, 3)
        )
        for position, (row, intensities) in enumerate(
            tqdm(
                zip(index.itertuples(), patterns, strict=True),
                total=len(index),
                desc="drawing images",
                unit="image",
                mininterval=1.0,
            )
        ):
            images[position] = pattern_image(intensities, size, section["colormap"])
            if section["png"]:
                folder = tmp / row.split / row.crystal_system
                folder.mkdir(parents=True, exist_ok=True)
                write_png(folder / image_file_name(row.id), images[position])
        images.flush()
        del images
        write_json(tmp / SETTINGS_FILE, {"pattern": pattern_settings, "image": section})
    pngs = " (and PNG folders)" if section["png"] else ""
    print(f"images: {len(index)} images of {size}x{size} px{pngs} -> {out_dir}")
