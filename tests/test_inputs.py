import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xrdsym.augmentation import AugmentSettings, peak_reflections
from xrdsym.diffraction import Peaks, PeakTable, TwoThetaGrid
from xrdsym.errors import XrdsymError
from xrdsym.imaging import image_file_name
from xrdsym.inputs import (
    AUGMENT_CHUNK,
    augmented_pattern_inputs,
    inputs_made_once,
    network_inputs,
    preprocessed_pattern_split,
    read_pattern_split,
    read_peak_split,
    read_split,
)
from xrdsym.preprocessing import NO_PREPROCESSING, InputSettings
from xrdsym.preprocessing import model_inputs as preprocessed
from xrdsym.stages import images
from xrdsym.stages.images import IMAGES_FILE
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE, PEAKS_FILE
from xrdsym.stages.patterns import SETTINGS_FILE as PATTERN_SETTINGS_FILE

CLASSES = ["cubic", "trigonal"]


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


def test_images_drawn_in_memory_equal_the_stored_images(tmp_path):
    # Prediction draws images in memory; they must be what training reads from the images
    # stage's array, and what its PNG folders show.
    _, patterns = _store(tmp_path)
    (tmp_path / PATTERN_SETTINGS_FILE).write_text("{}")
    settings = {"method": "raster", "size": 32, "colormap": "viridis", "png": True}
    images.run({"model": "mobilenetv2", "images": settings}, tmp_path, tmp_path / "images")

    stored, y, ids = read_split("image", tmp_path / "images", tmp_path, "test", CLASSES)

    drawn = network_inputs(patterns[[1, 4, 0, 3]], "image", settings)
    assert ids == ["a", "e", "b", "d"] and list(y) == [0, 0, 1, 1]
    assert stored.dtype == np.uint8 and np.array_equal(stored, drawn)
    png = tmp_path / "images" / "test" / "trigonal" / image_file_name("d")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), drawn[3])
    assert network_inputs(patterns, "pattern", None).shape == (5, 50, 1)


def test_image_store_of_other_patterns_is_one_error(tmp_path):
    _store(tmp_path)
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "images" / IMAGES_FILE, np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(XrdsymError, match="3 images for 5 patterns"):
        read_split("image", tmp_path / "images", tmp_path, "test", CLASSES)


def test_peak_split_is_in_the_order_of_the_pattern_split(tmp_path):
    _store(tmp_path)
    with pytest.raises(XrdsymError, match=r"peaks\.npz is missing"):
        read_peak_split(tmp_path, "test", ["cubic", "trigonal"])
    # Structure i has i + 1 peaks at 20 + i degrees and a lattice of side i + 2 Å.
    peak_lists = [
        Peaks(np.full(i + 1, 20.0 + i), np.full(i + 1, 100.0), np.ones((i + 1, 3), int))
        for i in range(5)
    ]
    lattices = [np.eye(3) / (i + 2) for i in range(5)]
    table = PeakTable.from_peaks(peak_lists, lattices)
    np.savez(tmp_path / PEAKS_FILE, **vars(table))
    peaks, y, ids = read_peak_split(tmp_path, "test", ["cubic", "trigonal"])
    _, y_patterns, ids_patterns = read_pattern_split(tmp_path, "test", ["cubic", "trigonal"])
    assert ids == ids_patterns == ["a", "e", "b", "d"] and np.array_equal(y, y_patterns)
    for place, position in enumerate([1, 4, 0, 3]):
        assert np.array_equal(peaks.peaks(place).two_theta, peak_lists[position].two_theta)
        assert np.allclose(peaks.reciprocal_lattices[place], lattices[position])
    settings = AugmentSettings(instrument_fwhm_deg=(0.2, 0.2))
    grid = TwoThetaGrid(10, 30, 0.05)
    x = augmented_pattern_inputs(
        np.array([0, 2]),
        np.random.default_rng(0),
        table=peaks,
        grid=grid,
        wavelength_angstrom=1.54184,
        settings=settings,
        reflections=peak_reflections(peaks, 1.54184),
        preprocess=NO_PREPROCESSING,
    )
    assert x.shape == (2, grid.size, 1) and x.dtype == np.float32
    # Structure "a" (position 1) has its peak at 21 degrees, "b" (position 0) at 20.
    assert grid.values[np.argmax(x[:, :, 0], axis=1)] == pytest.approx([21.0, 20.0])


def test_preprocessed_split_is_the_stored_split_through_the_input_transform(tmp_path):
    _store(tmp_path)
    grid = TwoThetaGrid(10, 10 + 49 * 0.5, 0.5)
    settings = InputSettings("snip", 3.0, 1.0)
    x, y, ids = preprocessed_pattern_split(tmp_path, "test", CLASSES, grid, settings)
    stored, y_stored, ids_stored = read_pattern_split(tmp_path, "test", CLASSES)
    assert (ids, y.tolist()) == (ids_stored, y_stored.tolist())
    assert x.shape == stored.shape and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], preprocessed(stored[..., 0], grid, settings))


def test_inputs_made_once_are_the_same_for_the_same_seed_and_cover_every_sample():
    def make_inputs(positions, rng):
        return np.column_stack([positions, rng.random(len(positions))])

    n = AUGMENT_CHUNK * 2 + 3
    once = inputs_made_once(make_inputs, n, (7, 1))
    assert once[:, 0].tolist() == list(range(n))
    np.testing.assert_array_equal(inputs_made_once(make_inputs, n, (7, 1)), once)
    assert not np.array_equal(inputs_made_once(make_inputs, n, (8, 1)), once)
