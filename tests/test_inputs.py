import numpy as np
import pandas as pd

from xrdsym.imaging import image_file_name, pattern_image, read_image_split, write_png
from xrdsym.inputs import model_inputs, read_pattern_split, read_split
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE


def _store(tmp_path):
    """A patterns store with five patterns in two splits, classes out of order."""
    index = pd.DataFrame(
        {
            "id": ["b", "a", "c", "d", "e"],
            "crystal_system": ["trigonal", "cubic", "cubic", "trigonal", "cubic"],
            "split": ["test", "test", "train", "test", "test"],
        }
    )
    patterns = np.random.default_rng(0).random((5, 50)).astype(np.float32)
    index.to_csv(tmp_path / INDEX_FILE, index=False)
    np.save(tmp_path / PATTERNS_FILE, patterns)
    return index, patterns


def test_pattern_split_is_ordered_by_class_then_id(tmp_path):
    _, patterns = _store(tmp_path)
    x, y, ids = read_pattern_split(tmp_path, "test", ["cubic", "trigonal"])
    assert ids == ["a", "e", "b", "d"] and list(y) == [0, 0, 1, 1]
    assert x.shape == (4, 50, 1) and x.dtype == np.float32
    assert np.array_equal(x[:, :, 0], patterns[[1, 4, 0, 3]])


def test_images_drawn_in_memory_equal_the_stored_pngs(tmp_path):
    # Prediction draws images in memory; they must be what training read from the PNGs.
    index, patterns = _store(tmp_path)
    settings = {"size": 32, "colormap": "viridis"}
    for row, pattern in zip(index.itertuples(), patterns, strict=True):
        folder = tmp_path / "images" / row.split / row.crystal_system
        folder.mkdir(parents=True, exist_ok=True)
        write_png(folder / image_file_name(row.id), pattern_image(pattern, 32, "viridis"))
    stored, _, ids = read_image_split(tmp_path / "images", "test", ["cubic", "trigonal"])
    drawn = model_inputs(patterns[[1, 4, 0, 3]], "image", settings)
    assert ids == ["a", "e", "b", "d"] and np.array_equal(stored, drawn)
    x, _, _ = read_split("image", tmp_path / "images", tmp_path, "test", ["cubic", "trigonal"])
    assert np.array_equal(x, stored)
    assert model_inputs(patterns, "pattern", None).shape == (5, 50, 1)
