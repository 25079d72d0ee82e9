"""What a model reads: images (the paper's MobileNetV2) or the 1D pattern itself.

Training and evaluation read a split from the pipeline's stores; prediction turns patterns on
the model's 2θ grid into the same inputs in memory, through the same functions. With
augmentation, training makes its 1D inputs afresh from the stored peak lists. Every 1D input
goes through :func:`xrdsym.preprocessing.model_inputs` on its way to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym import preprocessing
from xrdsym.augmentation import AugmentSettings, PeakReflections, augment_patterns
from xrdsym.diffraction import PeakTable, TwoThetaGrid
from xrdsym.errors import XrdsymError
from xrdsym.imaging import pattern_image
from xrdsym.inference import PRIMARY_HEAD, SPACE_GROUP_HEAD
from xrdsym.preprocessing import InputSettings
from xrdsym.stages.images import IMAGES_FILE
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE, PEAKS_FILE

# Patterns per augment_patterns call when a whole split is made at once: bounds the memory of
# its float64 intermediates (a few of chunk x points each).
AUGMENT_CHUNK = 256
# Streams (with params seed) of each split's one measurement-like version: the validation
# split the network is calibrated and the combiner fitted on, the test split it is scored on
# with the indexing, the training patterns the index stage samples. Far above any epoch
# number, so that they are never the streams of a training batch (seeded by seed, epoch,
# batch).
MEASUREMENT_STREAMS = {"val": 2**31, "test": 2**31 + 1, "train": 2**31 + 2}


def _split_rows(
    patterns_dir: Path, split: str, classes: Sequence[str], target: str
) -> pd.DataFrame:
    """index.csv rows of one split's patterns of ``classes``, sorted by class then id, with
    their row number in the store (``position``) and class index (``label``); ``target`` is
    the index column the classes name (crystal_system, or space_group as "1" to "230")."""
    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str})
    index["position"] = np.arange(len(index))
    names = index[target].astype(str)
    index["label"] = names.map({name: i for i, name in enumerate(classes)})
    chosen = index[(index["split"] == split) & index["label"].notna()]
    if chosen.empty:
        raise XrdsymError(
            f"{patterns_dir}: no {split} patterns of the classes {', '.join(classes)}"
        )
    return chosen.sort_values(["label", "id"])


def read_split_labels(
    patterns_dir: Path,
    split: str,
    classes: Sequence[str],
    *,
    target: str = "crystal_system",
    space_groups: Sequence[str] | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Class indices of one split, in the order of :func:`read_pattern_split`: of ``target``
    alone, or with ``space_groups`` (the space-group head's classes, numbers as text) a dict
    of both heads' (``classes``, ``space_group``)."""
    chosen = _split_rows(patterns_dir, split, classes, target)
    labels = chosen["label"].to_numpy(int)
    if space_groups is None:
        return labels
    index = {name: i for i, name in enumerate(space_groups)}
    return {
        PRIMARY_HEAD: labels,
        SPACE_GROUP_HEAD: chosen["space_group"].astype(str).map(index).to_numpy(int),
    }


def read_split_ids(
    patterns_dir: Path, split: str, classes: Sequence[str], *, target: str = "crystal_system"
) -> list[str]:
    """Ids of one split's patterns, in the order of :func:`read_pattern_split`."""
    return _split_rows(patterns_dir, split, classes, target)["id"].tolist()


def read_pattern_split(
    patterns_dir: Path, split: str, classes: Sequence[str], *, target: str = "crystal_system"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Patterns of one split as (N x points x 1 float32, class indices, ids), sorted by class
    then id."""
    chosen = _split_rows(patterns_dir, split, classes, target)
    patterns = np.load(patterns_dir / PATTERNS_FILE, mmap_mode="r")
    x = np.asarray(patterns[chosen["position"].to_numpy()], dtype=np.float32)
    return x[..., np.newaxis], chosen["label"].to_numpy(int), chosen["id"].tolist()


def read_image_split(
    images_dir: Path,
    patterns_dir: Path,
    split: str,
    classes: Sequence[str],
    *,
    target: str = "crystal_system",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of one split as (N x size x size x 3 uint8, class indices, ids), in the order
    of :func:`read_pattern_split`."""
    chosen = _split_rows(patterns_dir, split, classes, target)
    images = np.load(images_dir / IMAGES_FILE, mmap_mode="r")
    n_patterns = len(np.load(patterns_dir / PATTERNS_FILE, mmap_mode="r"))
    if len(images) != n_patterns:
        raise XrdsymError(
            f"{images_dir / IMAGES_FILE}: {len(images)} images for {n_patterns} patterns; "
            "re-run `dvc repro images`"
        )
    x = np.asarray(images[chosen["position"].to_numpy()])
    return x, chosen["label"].to_numpy(int), chosen["id"].tolist()


def read_peak_split(
    patterns_dir: Path, split: str, classes: Sequence[str], *, target: str = "crystal_system"
) -> tuple[PeakTable, np.ndarray, list[str]]:
    """Peak lists of one split (with their reciprocal lattices), class indices and ids, in the
    order of :func:`read_pattern_split`."""
    path = patterns_dir / PEAKS_FILE
    if not path.exists():
        raise XrdsymError(
            f"{path} is missing (written by the patterns stage since peak lists are kept): "
            "re-run `dvc repro patterns` to train with augmentation"
        )
    chosen = _split_rows(patterns_dir, split, classes, target)
    with np.load(path) as stored:
        table = PeakTable(**{name: stored[name] for name in stored.files})
    peaks = table.subset(chosen["position"].to_numpy())
    return peaks, chosen["label"].to_numpy(int), chosen["id"].tolist()


def read_split(
    input_kind: str,
    images_dir: Path,
    patterns_dir: Path,
    split: str,
    classes: Sequence[str],
    *,
    target: str = "crystal_system",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Model inputs, class indices and ids of one split, for a model reading ``input_kind``
    ("image" from the images stage, "pattern" from the patterns stage) and predicting
    ``target``."""
    if input_kind == "image":
        return read_image_split(images_dir, patterns_dir, split, classes, target=target)
    return read_pattern_split(patterns_dir, split, classes, target=target)


def preprocessed_pattern_split(
    patterns_dir: Path,
    split: str,
    classes: Sequence[str],
    grid: TwoThetaGrid,
    settings: InputSettings,
    *,
    target: str = "crystal_system",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`read_pattern_split` with the patterns through the input transform with
    ``settings`` on their ``grid``."""
    x, y, ids = read_pattern_split(patterns_dir, split, classes, target=target)
    return preprocessing.model_inputs(x[..., 0], grid, settings)[..., np.newaxis], y, ids


def network_inputs(
    patterns: np.ndarray, input_kind: str, image_settings: dict[str, Any] | None
) -> np.ndarray:
    """Inputs for a model reading ``input_kind``, from patterns (N x points) on its grid that
    went through the input transform (xrdsym.preprocessing): the images the images stage
    would draw, or the patterns with a channel axis."""
    patterns = np.asarray(patterns, dtype=np.float32)
    if input_kind == "image":
        return np.stack(
            [pattern_image(p, image_settings["size"], image_settings["colormap"]) for p in patterns]
        )
    return patterns[..., np.newaxis]


def augmented_pattern_inputs(
    positions: np.ndarray,
    rng: np.random.Generator,
    *,
    table: PeakTable,
    grid: TwoThetaGrid,
    wavelength_angstrom: float,
    settings: AugmentSettings,
    reflections: PeakReflections,
    preprocess: InputSettings,
) -> np.ndarray:
    """Inputs of a model reading patterns (N x points x 1), made afresh from the peak lists at
    ``positions`` of ``table`` (whose peaks have ``reflections``) with perturbations drawn
    from ``rng``, through the input transform with ``preprocess``."""
    patterns = augment_patterns(
        table, positions, grid, wavelength_angstrom, settings, rng, reflections
    )
    return network_inputs(preprocessing.model_inputs(patterns, grid, preprocess), "pattern", None)


def inputs_made_once(
    make_inputs: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    n: int,
    seed: Sequence[int],
) -> np.ndarray:
    """The inputs of all ``n`` samples, made once by ``make_inputs(positions, rng)`` in chunks
    of AUGMENT_CHUNK, chunk k drawn from the stream seeded by (*seed, k): the same inputs for
    the same seed, however often they are made."""
    chunks = [
        make_inputs(
            np.arange(start, min(start + AUGMENT_CHUNK, n)),
            np.random.default_rng([*seed, k]),
        )
        for k, start in enumerate(range(0, n, AUGMENT_CHUNK))
    ]
    return np.concatenate(chunks)


def measured_once(
    table: PeakTable,
    grid: TwoThetaGrid,
    wavelength_angstrom: float,
    settings: AugmentSettings,
    seed: Sequence[int],
    reflections: PeakReflections | None = None,
) -> np.ndarray:
    """Every structure of ``table`` measured once under ``settings``: len(table) x grid.size
    float32 in [0, 1], re-simulated from its peaks by :func:`augment_patterns` with the draws
    of :func:`inputs_made_once` from ``seed`` (the same patterns every time).

    ``reflections``: every reflection of ``table``'s peaks (``peak_reflections``), needed for
    texture; given here, they are found once rather than for every chunk."""
    return inputs_made_once(
        lambda positions, rng: augment_patterns(
            table, positions, grid, wavelength_angstrom, settings, rng, reflections
        ),
        len(table),
        seed,
    )
