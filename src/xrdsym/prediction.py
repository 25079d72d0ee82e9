"""Classify patterns that did not come from the pipeline: measured files or CIF structures.

A measured pattern is brought to what the model was trained on, in this order:

1. background: removed with the SNIP algorithm (pybaselines), over a window of
   ``BACKGROUND_WINDOW`` degrees 2θ, or left as it is (``background="none"``);
2. wavelength: every angle is converted to the model's wavelength through Bragg's law at
   constant d-spacing, 2θ' = 2 asin(λ_model / λ_file · sin θ); angles that have no
   counterpart at the model's wavelength (the argument would exceed 1) are left out;
3. grid: intensities are interpolated linearly onto the model's 2θ grid; the part of the grid
   the measurement does not cover is set to 0, which is what the simulated training patterns
   hold where there is no peak, and the covered fraction is reported;
4. smoothing: an optional Gaussian of ``smooth`` grid points (0 keeps the measured peak shapes,
   which already carry the instrument's broadening);
5. normalisation to [0, 1], as in training.

A CIF holding only a structure is simulated exactly as the training patterns were.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from xrdsym import __version__
from xrdsym.calibration import apply_temperature
from xrdsym.diffraction import DEFAULT_SIMULATOR, TwoThetaGrid, normalise, pattern_from_structure
from xrdsym.errors import XrdsymError
from xrdsym.inference import INFERENCE_FILE, NumpyModel
from xrdsym.measured import MeasuredPattern, parse_wavelength

MODEL_FILE = "model.keras"
META_FILE = "model.json"
# Version of the model directory's layout; a directory of another version is refused.
MODEL_FORMAT = 1
# Width in degrees 2θ of SNIP's largest clipping window: wider than any Bragg peak, narrower
# than the slow swell of an amorphous or air-scatter background.
BACKGROUND_WINDOW = 3.0
BACKGROUNDS = ("snip", "none")
# Patterns per predict call: bounds memory, whatever the number of files.
PREDICT_BATCH = 64


@dataclass
class Classifier:
    """A trained model and everything needed to preprocess a pattern exactly as in training."""

    model: Any  # a keras.Model, or the NumpyModel exported from it (see xrdsym.inference)
    meta: dict[str, Any]
    directory: Path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def grid(self) -> TwoThetaGrid:
        """The model's 2θ grid in degrees."""
        return model_grid(self.meta)

    @property
    def wavelength(self) -> float:
        """The wavelength the model was trained at, in Å."""
        return model_wavelength(self.meta)

    @property
    def engine(self) -> str:
        """What runs the model: "numpy" (its export) or "keras"."""
        return "numpy" if isinstance(self.model, NumpyModel) else "keras"

    def outputs(self, inputs: np.ndarray) -> np.ndarray:
        """The model's uncalibrated softmax outputs for model inputs (images or patterns)."""
        if isinstance(self.model, NumpyModel):
            return self.model.predict(inputs)
        return self.model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0)

    def probabilities(self, patterns: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N x classes) of normalised patterns on the grid."""
        if self.meta["input"] == "pattern":
            # What xrdsym.inputs.model_inputs gives a 1D model, without importing that module
            # (pandas, matplotlib, pymatgen: a second of start-up for every `xrdsym predict`).
            inputs = np.asarray(patterns, dtype=np.float32)[..., np.newaxis]
        else:
            from xrdsym.inputs import model_inputs

            image_settings = self.meta["preprocessing"]["image"]
            inputs = model_inputs(patterns, self.meta["input"], image_settings)
        return apply_temperature(self.outputs(inputs), self.meta["temperature"])


def model_grid(meta: dict[str, Any]) -> TwoThetaGrid:
    """The 2θ grid (degrees) of the model described by ``meta``."""
    pattern = meta["preprocessing"]["pattern"]
    return TwoThetaGrid(
        pattern["two_theta_min"], pattern["two_theta_max"], pattern["two_theta_step"]
    )


def model_wavelength(meta: dict[str, Any]) -> float:
    """The wavelength (Å) the model described by ``meta`` was trained at."""
    return parse_wavelength(meta["preprocessing"]["pattern"]["wavelength"])


def read_model_meta(model_dir: Path) -> dict[str, Any]:
    """The description of a model directory; XrdsymError if it is not one this version reads."""
    meta_path = model_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise XrdsymError(f"{model_dir}: not a model directory (no {META_FILE})") from exc
    except (OSError, ValueError) as exc:
        raise XrdsymError(f"{meta_path}: unreadable ({exc.__class__.__name__})") from exc
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        made_by = meta.get("xrdsym_version", "an unknown version") if isinstance(meta, dict) else ""
        raise XrdsymError(
            f"{model_dir}: model directory made by xrdsym {made_by} in another format "
            f"(this is xrdsym {__version__}, format {MODEL_FORMAT}); retrain it with `dvc repro`"
        )
    return meta


def load_classifier(model_dir: Path, engine: str = "auto") -> Classifier:
    """Load a model directory written by the train stage.

    ``engine``: "auto" runs the model's numpy export when the directory has one (no Keras
    start-up, seconds faster), else Keras; "keras" always uses Keras, the reference.
    """
    meta = read_model_meta(model_dir)
    if engine == "auto" and (model_dir / INFERENCE_FILE).exists():
        return Classifier(NumpyModel.load(model_dir / INFERENCE_FILE), meta, model_dir)
    import keras

    try:
        model = keras.saving.load_model(model_dir / MODEL_FILE)
    except Exception as exc:  # Keras raises many types for a missing or corrupt file
        raise XrdsymError(
            f"{model_dir / MODEL_FILE}: cannot load the model ({exc.__class__.__name__})"
        ) from exc
    return Classifier(model, meta, model_dir)


def subtract_background(two_theta: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """Intensities minus their SNIP background (pybaselines), clipped at 0."""
    from pybaselines import Baseline

    step = float(np.median(np.diff(two_theta)))
    half_window = max(1, round(BACKGROUND_WINDOW / 2 / step))
    half_window = min(half_window, (len(two_theta) - 1) // 2)
    background, _ = Baseline(x_data=two_theta).snip(
        intensities, max_half_window=half_window, decreasing=True
    )
    return np.clip(intensities - background, 0.0, None)


def convert_wavelength(
    two_theta: np.ndarray, from_wavelength: float, to_wavelength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) at ``to_wavelength`` of the same d-spacings measured at
    ``from_wavelength`` (Å), and the mask of the input angles that have one."""
    sine = to_wavelength / from_wavelength * np.sin(np.radians(two_theta) / 2)
    inside = sine < 1.0
    return np.degrees(2 * np.arcsin(sine[inside])), inside


@dataclass(frozen=True)
class Prepared:
    """A pattern ready for the model: normalised intensities on its grid, the wavelength (Å)
    the input was taken at, and the fraction of the model's 2θ range it covers."""

    intensities: np.ndarray
    wavelength: float
    covered_fraction: float


def prepare_measured(
    pattern: MeasuredPattern,
    wavelength: float | None,
    classifier_wavelength: float,
    grid: TwoThetaGrid,
    *,
    background: str = "snip",
    smooth: float = 0.0,
) -> Prepared:
    """A measured pattern on the model's grid (see the module docstring for the steps).

    ``wavelength`` (Å) is used when the file does not state its own.
    """
    source_wavelength = pattern.wavelength if pattern.wavelength is not None else wavelength
    if source_wavelength is None:
        raise XrdsymError(
            f"{pattern.source}: the file does not state its wavelength; give --wavelength "
            "(Å, or an anode such as CuKa, MoKa, CoKa)"
        )
    intensities = pattern.intensities
    if background == "snip":
        intensities = subtract_background(pattern.two_theta, intensities)
    two_theta, inside = convert_wavelength(
        pattern.two_theta, source_wavelength, classifier_wavelength
    )
    intensities = intensities[inside]
    low, high = (two_theta[0], two_theta[-1]) if len(two_theta) else (np.inf, -np.inf)
    covered = (grid.values >= low) & (grid.values <= high)
    if covered.sum() < 2:
        raise XrdsymError(
            f"{pattern.source}: at the model's wavelength {classifier_wavelength:.4f} Å the data "
            f"fall outside the model's 2θ range {grid.start:g}-{grid.stop:g} degrees"
        )
    on_grid = np.zeros(grid.size)
    on_grid[covered] = np.interp(grid.values[covered], two_theta, intensities)
    if smooth > 0:
        on_grid = gaussian_filter1d(on_grid, smooth, mode="constant")
    try:
        normalised = normalise(on_grid)
    except ValueError as exc:
        raise XrdsymError(
            f"{pattern.source}: no intensity left in the model's 2θ range after background "
            "removal (try --background none)"
        ) from exc
    fraction = (min(high, grid.stop) - max(low, grid.start)) / (grid.stop - grid.start)
    return Prepared(normalised, source_wavelength, float(fraction))


def prepare_structure(structure: Any, meta: dict[str, Any]) -> Prepared:
    """The simulated pattern of a structure, made exactly as the training patterns were."""
    settings = meta["preprocessing"]["pattern"]
    intensities = pattern_from_structure(
        structure,
        settings["wavelength"],
        model_grid(meta),
        settings["sigma_points"],
        # Models from before the simulator was recorded used pymatgen's, which the default
        # reproduces exactly.
        settings.get("simulator", DEFAULT_SIMULATOR),
    )
    return Prepared(intensities, parse_wavelength(settings["wavelength"]), 1.0)


def top_k(probabilities: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one pattern, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(classes[i], float(probabilities[i])) for i in order]


@dataclass(frozen=True)
class Prediction:
    """The answer for one pattern: where it came from, whether it was measured or simulated
    from a structure, the wavelength (Å) it was taken at, the covered fraction of the model's
    range, the top classes, every class's calibrated probability, and the pattern the model
    saw."""

    source: str
    kind: str
    wavelength: float
    covered_fraction: float
    top: list[tuple[str, float]]
    probabilities: np.ndarray
    intensities: np.ndarray


def find_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files to classify: each file given, and every file with a supported suffix under each
    folder given (recursively, sorted); also the files under the folders that were skipped."""
    from xrdsym.measured import SUPPORTED_SUFFIXES

    files, skipped = [], []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            (files if member.suffix.lower() in SUPPORTED_SUFFIXES else skipped).append(member)
    return files, skipped


def prepare_file(
    path: Path, meta: dict[str, Any], wavelength: float | None, background: str, smooth: float
) -> list[tuple[str, str, Prepared]]:
    """Every pattern in the file ``path`` ready for the model described by ``meta``, as
    (source, kind, prepared); kind is "measured", or "structure" for a CIF structure."""
    from xrdsym.measured import NoPowderData, read_measured

    try:
        measured = read_measured(path)
    except NoPowderData:
        return [
            (str(path.parent / record.id), "structure", prepare_structure(record.structure, meta))
            for record in _read_structures(path)
        ]
    grid, model_lambda = model_grid(meta), model_wavelength(meta)
    return [
        (
            pattern.source,
            "measured",
            prepare_measured(
                pattern, wavelength, model_lambda, grid, background=background, smooth=smooth
            ),
        )
        for pattern in measured
    ]


def _prepare_or_fail(path: Path, **settings: Any) -> list[tuple[str, str, Prepared]] | str:
    """:func:`prepare_file`, or the reason it failed as one line."""
    try:
        return prepare_file(path, **settings)
    except XrdsymError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except Exception as exc:  # simulating an odd structure can fail in pymatgen itself
        return f"{exc.__class__.__name__}: {exc}"


def _read_structures(path: Path) -> list[Any]:
    """The structure records of a CIF without powder data, read as the cif_dir source reads
    them (ids ``name`` or ``name#k``); XrdsymError when it holds none either."""
    from xrdsym.sources import Reject
    from xrdsym.sources.cif_dir import read_cif

    items = read_cif(path, path.parent)
    rejects = [item for item in items if isinstance(item, Reject)]
    if rejects:
        raise XrdsymError(f"{path}: no powder data, and {rejects[0].reason}")
    return items


def prepare_files(
    meta: dict[str, Any],
    files: list[Path],
    *,
    wavelength: float | None,
    background: str,
    smooth: float,
    n_jobs: int,
) -> tuple[list[tuple[str, str, Prepared]], list[tuple[str, str]]]:
    """Every pattern in ``files`` ready for the model described by ``meta``, read in
    ``n_jobs`` processes; a file that fails is recorded as (path, reason) and the rest go on."""
    from xrdsym.parallel import parallel_map

    worker = functools.partial(
        _prepare_or_fail, meta=meta, wavelength=wavelength, background=background, smooth=smooth
    )
    prepared: list[tuple[str, str, Prepared]] = []
    failures: list[tuple[str, str]] = []
    results = parallel_map(worker, files, n_jobs, "reading", show_progress=len(files) >= 50)
    for path, result in zip(files, results, strict=True):
        if isinstance(result, str):
            failures.append((str(path), result))
        else:
            prepared.extend(result)
    return prepared, failures


def classify(
    classifier: Classifier, prepared: list[tuple[str, str, Prepared]], k: int
) -> list[Prediction]:
    """The top ``k`` classes and all probabilities of every prepared pattern."""
    predictions = []
    for start in range(0, len(prepared), PREDICT_BATCH * 16):
        batch = prepared[start : start + PREDICT_BATCH * 16]
        probabilities = classifier.probabilities(np.stack([p.intensities for _, _, p in batch]))
        for (source, kind, ready), row in zip(batch, probabilities, strict=True):
            predictions.append(
                Prediction(
                    source,
                    kind,
                    ready.wavelength,
                    ready.covered_fraction,
                    top_k(row, classifier.classes, k),
                    row,
                    ready.intensities,
                )
            )
    return predictions
