"""Stage 3, images: one square PNG per pattern, in one folder per split and crystal system
(only for models that read images; a 1D model reads the patterns and no image is drawn)."""

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


def run(params: dict[str, Any], patterns_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir/<split>/<crystal_system>/<id>.png`` and the settings that made them.

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
    with atomic_path(out_dir) as tmp:
        for row, intensities in tqdm(
            zip(index.itertuples(), patterns, strict=True),
            total=len(index),
            desc="drawing images",
            unit="image",
            mininterval=1.0,
        ):
            folder = tmp / row.split / row.crystal_system
            folder.mkdir(parents=True, exist_ok=True)
            image = pattern_image(intensities, section["size"], section["colormap"])
            write_png(folder / image_file_name(row.id), image)
        tmp.mkdir(exist_ok=True)
        write_json(tmp / SETTINGS_FILE, {"pattern": pattern_settings, "image": section})
    print(f"images: {len(index)} images of {section['size']}x{section['size']} px -> {out_dir}")
