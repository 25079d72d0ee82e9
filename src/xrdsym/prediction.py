"""Classify patterns that did not come from the pipeline: measured files or CIF structures.

A measured pattern is brought onto the model's grid as augmentation brings a simulated scan
there in training:

1. wavelength: every angle is converted to the model's wavelength through Bragg's law at
   constant d-spacing, 2θ' = 2 asin(λ_model / λ_file · sin θ); angles that have no
   counterpart at the model's wavelength (the argument would exceed 1) are left out;
2. grid: intensities are interpolated linearly onto the model's 2θ grid; the part of the grid
   the measurement does not cover is set to 0, as a truncated scan is in training, and the
   covered fraction is reported;
3. scaled to [0, 1].

A CIF holding only a structure is simulated exactly as the training patterns were. Either
then goes through the model's own input transform (:mod:`xrdsym.preprocessing`: background
removal, smoothing, normalisation), with the settings the model directory records; a model
that records none (the 1D models from before, image models) reads simulated patterns as they
are and measured ones after SNIP, as ``predict`` always did for it.
Predictions can be scored against a table of labels (:func:`read_labels`,
:func:`score_predictions`).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xrdsym import __version__
from xrdsym.calibration import apply_temperature
from xrdsym.diffraction import DEFAULT_SIMULATOR, TwoThetaGrid, normalise, pattern_from_structure
from xrdsym.errors import XrdsymError
from xrdsym.inference import (
    INFERENCE_FILE,
    PRIMARY_HEAD,
    SPACE_GROUP_HEAD,
    NumpyModel,
    head_outputs,
)
from xrdsym.measured import MeasuredPattern, parse_wavelength
from xrdsym.preprocessing import (
    MEASURED_DEFAULT,
    MIN_PEAK_SIGNIFICANCE,
    NO_PREPROCESSING,
    InputSettings,
    model_inputs,
    peak_significance,
)

MODEL_FILE = "model.keras"
META_FILE = "model.json"
# Version of the model directory's layout; a directory of another version is refused.
MODEL_FORMAT = 1
# A file's angles are rounded (to a few decimals): a grid point within this fraction of a grid
# step of the scan's first or last angle lies on the scan (and takes that angle's value).
COVER_TOLERANCE_STEPS = 1e-3
# Patterns per predict call: bounds memory, whatever the number of files.
PREDICT_BATCH = 64
# The model `predict` uses when none is given, if the package ships one; else the pipeline's.
SHIPPED_MODEL = Path(__file__).parent / "shipped_model"
PIPELINE_MODEL = Path("models")
# A pattern covering less of the model's 2θ range than this is flagged (zeros stand for the
# rest); a little under 1 so that a scan rounded to its step still counts as whole.
FULL_COVERAGE = 0.999


@dataclass
class Classifier:
    """A trained model (one or an ensemble of members) and everything needed to preprocess a
    pattern exactly as in training."""

    # One per ensemble member: a keras.Model, or the NumpyModel exported from it
    # (see xrdsym.inference).
    models: list[Any]
    meta: dict[str, Any]
    directory: Path
    # The combiner of the network and the indexing (xrdsym.hybrid.Combiner), for a model
    # trained with train.combine; None for one without.
    combiner: Any = None
    # Why there is no combiner, one line for the user (None: there is one).
    combiner_note: str | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def heads(self) -> dict[str, list[str]]:
        """The softmax heads, name -> classes (see :func:`model_heads`)."""
        return model_heads(self.meta)

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
        return "numpy" if all(isinstance(m, NumpyModel) for m in self.models) else "keras"

    def member_outputs(self, inputs: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Each ensemble member's uncalibrated softmax outputs by head for network inputs
        (images or patterns with a channel axis)."""
        return [
            head_outputs(
                model.predict(inputs)
                if isinstance(model, NumpyModel)
                else model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0)
            )
            for model in self.models
        ]

    def ensemble_probabilities(
        self, member_outputs: list[dict[str, np.ndarray]], calibrated: bool = True
    ) -> dict[str, np.ndarray]:
        """Each head's class probabilities (N x classes) from :meth:`member_outputs`: the mean
        over the members of each one's probabilities, calibrated by its own temperature (or
        not)."""
        members = model_members(self.meta)
        return {
            head: np.mean(
                [
                    apply_temperature(outputs[head], member["temperatures"][head])
                    if calibrated
                    else np.asarray(outputs[head], dtype=np.float64)
                    for outputs, member in zip(member_outputs, members, strict=True)
                ],
                axis=0,
            )
            for head in member_outputs[0]
        }

    def outputs(self, inputs: np.ndarray, calibrated: bool = True) -> dict[str, np.ndarray]:
        """Each head's ensemble probabilities (see :meth:`ensemble_probabilities`) for network
        inputs."""
        return self.ensemble_probabilities(self.member_outputs(inputs), calibrated)

    @property
    def input_settings(self) -> InputSettings:
        """The input transform the model was trained with (see :func:`model_input_settings`)."""
        return model_input_settings(self.meta)

    def inputs(self, patterns: np.ndarray, settings: InputSettings | None = None) -> np.ndarray:
        """Patterns on the grid (N x points, in [0, 1]) as the model reads them: through
        :func:`xrdsym.preprocessing.model_inputs` with ``settings``, by default the model's."""
        return model_inputs(patterns, self.grid, settings or self.input_settings)

    def network_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """What the network takes from :meth:`inputs`: the patterns with a channel axis, or
        the images the images stage would draw of them."""
        if self.meta["input"] == "pattern":
            # What xrdsym.inputs.network_inputs gives a 1D model, without importing that module
            # (pandas, matplotlib, pymatgen: a second of start-up for every `xrdsym predict`).
            return np.asarray(inputs, dtype=np.float32)[..., np.newaxis]
        from xrdsym.inputs import network_inputs

        return network_inputs(inputs, self.meta["input"], self.meta["preprocessing"]["image"])

    def calibrated_heads(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every head's calibrated probabilities of :meth:`inputs`' patterns."""
        return self.outputs(self.network_inputs(inputs))

    def calibrated(self, inputs: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N x classes) of :meth:`inputs`' patterns."""
        return self.calibrated_heads(inputs)[PRIMARY_HEAD]

    def probabilities(
        self, patterns: np.ndarray, settings: InputSettings | None = None
    ) -> np.ndarray:
        """Calibrated class probabilities (N x classes) of patterns on the grid in [0, 1],
        through the input transform with ``settings`` (by default the model's)."""
        return self.calibrated(self.inputs(patterns, settings))


def model_heads(meta: dict[str, Any]) -> dict[str, list[str]]:
    """The softmax heads of the model described by ``meta``, name -> classes: the target's
    (``classes``) first, then a space-group head where it has one. A model from before heads
    were recorded has the target's alone."""
    return meta.get("heads") or {PRIMARY_HEAD: list(meta["classes"])}


def model_members(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The ensemble members of the model described by ``meta``: each one's Keras file, numpy
    export (None: none) and temperature per head. A model from before ensembles is one
    member with one temperature."""
    if "members" in meta:
        return meta["members"]
    return [
        {
            "model": MODEL_FILE,
            "inference": INFERENCE_FILE,
            "temperatures": {PRIMARY_HEAD: meta["temperature"]},
        }
    ]


def member_file(name: str, member: int) -> str:
    """The file ``name`` (model.keras, inference.npz) of ensemble member ``member`` (0-based):
    the first member's is the name itself, as a single model's."""
    if member == 0:
        return name
    path = Path(name)
    return f"{path.stem}_{member}{path.suffix}"


def model_input_settings(meta: dict[str, Any]) -> InputSettings:
    """The input transform the model described by ``meta`` was trained with: the settings it
    records, or none (a model from before they were recorded, or an image model)."""
    stored = meta["preprocessing"].get("inputs")
    return NO_PREPROCESSING if stored is None else InputSettings.from_json(stored)


def measured_settings(
    meta: dict[str, Any], background: str | None = None, smooth: float | None = None
) -> InputSettings:
    """The input transform of measured patterns for the model described by ``meta``: the one
    it records (for a model that records none, SNIP and no smoothing, as ``predict`` always
    did), with ``background`` ("snip" or "none") and ``smooth`` (σ in grid points) in place of
    its own where given."""
    stored = meta["preprocessing"].get("inputs")
    settings = MEASURED_DEFAULT if stored is None else InputSettings.from_json(stored)
    if background is not None:
        settings = replace(settings, background=background)
    if smooth is not None:
        settings = replace(settings, smooth_points=float(smooth))
    return settings


def pattern_grid(pattern_settings: dict[str, Any]) -> TwoThetaGrid:
    """The 2θ grid (degrees) of the patterns stage's settings (its settings.json)."""
    return TwoThetaGrid(
        pattern_settings["two_theta_min"],
        pattern_settings["two_theta_max"],
        pattern_settings["two_theta_step"],
    )


def model_grid(meta: dict[str, Any]) -> TwoThetaGrid:
    """The 2θ grid (degrees) of the model described by ``meta``."""
    return pattern_grid(meta["preprocessing"]["pattern"])


def model_wavelength(meta: dict[str, Any]) -> float:
    """The wavelength (Å) the model described by ``meta`` was trained at."""
    return parse_wavelength(meta["preprocessing"]["pattern"]["wavelength"])


def model_directory(given: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The model to use and where it came from: ``given``, else the one shipped with xrdsym,
    else the one the pipeline last trained (``models/`` in the current folder); XrdsymError
    when there is none."""
    if given is not None:
        return Path(given), "given with --model"
    if (SHIPPED_MODEL / META_FILE).exists():
        return SHIPPED_MODEL, "shipped with xrdsym"
    if (PIPELINE_MODEL / META_FILE).exists():
        return PIPELINE_MODEL, "trained by the pipeline in this folder"
    raise XrdsymError(
        "no model: give --model DIR, or train one here with `dvc repro` (writes models/)"
    )


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
    """Load a model directory written by the train stage (every member of an ensemble).

    ``engine``: "auto" runs each member's numpy export when the directory has one (no Keras
    start-up, seconds faster), else Keras; "keras" always uses Keras, the reference.
    """
    meta = read_model_meta(model_dir)
    models = []
    for member in model_members(meta):
        export = member.get("inference")
        if engine == "auto" and export and (model_dir / export).exists():
            models.append(NumpyModel.load(model_dir / export))
            continue
        import keras

        try:
            models.append(keras.saving.load_model(model_dir / member["model"]))
        except Exception as exc:  # Keras raises many types for a missing or corrupt file
            raise XrdsymError(
                f"{model_dir / member['model']}: cannot load the model ({exc.__class__.__name__})"
            ) from exc
    combiner, note = None, None
    if "combiner" in meta:
        from xrdsym.hybrid import Combiner

        try:
            combiner = Combiner.load(model_dir, meta["combiner"], meta["classes"])
        except Exception as exc:  # unpickling fails in many ways for a missing or corrupt file
            # The network still answers; the indexing is still shown.
            reason = str(exc) if isinstance(exc, ValueError) else exc.__class__.__name__
            note = (
                f"{model_dir / meta['combiner']['file']}: combiner not used ({reason}): crystal "
                "systems from the network alone"
            )
    else:
        note = NO_COMBINER_NOTE
    return Classifier(models, meta, model_dir, combiner, note)


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
    """A pattern ready for the model: intensities on its grid in [0, 1], the wavelength (Å)
    the input was taken at, the fraction of the model's 2θ range it covers, the input
    transform the model is to apply to it, and, for a model with a combiner, the peaks and
    indexing of the scan (an :class:`~xrdsym.index_scans.IndexedPattern`)."""

    intensities: np.ndarray
    wavelength: float
    covered_fraction: float
    settings: InputSettings
    peak_significance: float | None = None
    indexed: Any = None


def with_indexing(
    ready: Prepared,
    meta: dict[str, Any],
    scan: tuple[np.ndarray, np.ndarray] | None = None,
    structure: Any = None,
) -> Prepared:
    """``ready`` with the peaks and indexing of its ``scan`` (2θ in degrees at ``ready``'s
    wavelength, intensities; zeros at either end are not measured) or of its ``structure``'s
    calculated lines (as ``xrdsym index`` reads a CIF structure), found with the settings of
    the model's combiner, as the index stage found them for the patterns it was fitted on;
    ``ready`` itself for a model without a combiner."""
    record = meta.get("combiner")
    if record is None:
        return ready
    from xrdsym.index_scans import (
        IndexedPattern,
        index_measured_part,
        index_peaks,
        search_settings,
        structure_peaks,
        warm_up,
    )

    peak_settings, index_settings = search_settings(record["peaks"], record["index"])
    warm_up()
    if structure is not None:
        peaks = structure_peaks(structure, ready.wavelength)
        result = index_peaks(peaks, index_settings)
    else:
        peaks, result = index_measured_part(*scan, ready.wavelength, peak_settings, index_settings)
    return replace(ready, indexed=IndexedPattern("", "", peaks, result))


def prepare_measured(
    pattern: MeasuredPattern,
    wavelength: float | None,
    classifier_wavelength: float,
    grid: TwoThetaGrid,
    settings: InputSettings,
) -> Prepared:
    """A measured pattern on the model's grid (see the module docstring for the steps), to be
    read through the input transform with ``settings``; XrdsymError when that leaves nothing.

    ``wavelength`` (Å) is used when the file does not state its own.
    """
    source_wavelength = pattern.wavelength_or(wavelength)
    two_theta, inside = convert_wavelength(
        pattern.two_theta, source_wavelength, classifier_wavelength
    )
    intensities = pattern.intensities[inside]
    low, high = (two_theta[0], two_theta[-1]) if len(two_theta) else (np.inf, -np.inf)
    tolerance = COVER_TOLERANCE_STEPS * grid.step
    covered = (grid.values >= low - tolerance) & (grid.values <= high + tolerance)
    if covered.sum() < 2:
        raise XrdsymError(
            f"{pattern.source}: at the model's wavelength {classifier_wavelength:.4f} Å the data "
            f"fall outside the model's 2θ range {grid.start:g}-{grid.stop:g} degrees"
        )
    on_grid = np.zeros(grid.size)
    on_grid[covered] = np.interp(grid.values[covered], two_theta, intensities)
    # Scaled as augmentation scales a scan in training (its lowest point 0, highest 1).
    normalised = normalise(on_grid) if np.ptp(on_grid) > 0 else None
    if normalised is None or not model_inputs(normalised, grid, settings).any():
        raise XrdsymError(
            f"{pattern.source}: no intensity left in the model's 2θ range after background "
            "removal (try --background none)"
        )
    fraction = (min(high, grid.stop) - max(low, grid.start)) / (grid.stop - grid.start)
    significance = peak_significance(
        pattern.two_theta, pattern.intensities, settings.background_window_deg
    )
    return Prepared(normalised, source_wavelength, float(fraction), settings, significance)


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
    wavelength = parse_wavelength(settings["wavelength"])
    ready = Prepared(intensities, wavelength, 1.0, model_input_settings(meta))
    return with_indexing(ready, meta, structure=structure)


def top_k(probabilities: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one pattern, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(classes[i], float(probabilities[i])) for i in order]


@dataclass(frozen=True)
class Prediction:
    """The answer for one pattern: where it came from, whether it was measured or simulated
    from a structure, the wavelength (Å) it was taken at, the covered fraction of the model's
    range, the top classes, every class's calibrated probability, the pattern the model saw,
    the top space groups of a model with a space-group head besides (else empty), for a
    measured scan its peak significance (see :func:`~xrdsym.preprocessing.peak_significance`;
    None for a structure), and for a model with a combiner the peaks and indexing of the scan
    (an :class:`~xrdsym.index_scans.IndexedPattern`) and the network's own top classes (the
    top classes are then the combination's)."""

    source: str
    kind: str
    wavelength: float
    covered_fraction: float
    top: list[tuple[str, float]]
    probabilities: np.ndarray
    intensities: np.ndarray
    space_groups: list[tuple[str, float]] = field(default_factory=list)
    peak_significance: float | None = None
    indexed: Any = None
    network_top: list[tuple[str, float]] = field(default_factory=list)

    @property
    def no_peaks(self) -> bool:
        """A scan in which no peak stands out of the noise (none found, for a model that
        indexes; else a measured scan whose strongest point is under MIN_PEAK_SIGNIFICANCE):
        it says nothing about a crystalline phase, and gets no crystal system."""
        if self.indexed is not None:
            return len(self.indexed.peaks) == 0
        return self.peak_significance is not None and self.peak_significance < (
            MIN_PEAK_SIGNIFICANCE
        )

    @property
    def unindexed(self) -> bool:
        """A model that indexes found no cell for the scan: the answer rests on the network
        and on what the failed search says."""
        return self.indexed is not None and self.indexed.result.best is None

    @property
    def confidence(self) -> float:
        """The calibrated probability of the most probable class."""
        return self.top[0][1]

    @property
    def answer(self) -> str:
        """The most probable class."""
        return self.top[0][0]

    def crystal_system(self, target: str = "crystal_system") -> str | None:
        """The most probable crystal system (for a space-group model, the one its most
        probable space group implies); None for a scan without peaks."""
        if self.no_peaks:
            return None
        if target == "crystal_system":
            return self.answer
        from xrdsym.symmetry import crystal_system_of_space_group

        return crystal_system_of_space_group(int(self.answer))

    def row(self, target: str = "crystal_system", min_confidence: float = 0.0) -> dict[str, Any]:
        """The prediction as ``xrdsym predict --json`` writes it: source, kind, wavelength (Å),
        covered fraction, the crystal system (null for a scan without peaks, with the reason),
        whether it is uncertain (top probability below ``min_confidence``, or no peaks), the
        peak significance and the no-peaks flag, the top classes (named by ``target``) with
        their calibrated probabilities and, for a model with a space-group head besides, the
        top space groups; for a model that indexes, the lattice system, cell, zero shift and
        figures of merit as ``xrdsym index`` writes them, the peaks found, why no cell was
        found, and the network's own top classes; numbers rounded for reading."""
        system = self.crystal_system(target)
        row = {
            "source": self.source,
            "kind": self.kind,
            "wavelength_angstrom": round(self.wavelength, 6),
            "covered_fraction": round(self.covered_fraction, 4),
            "crystal_system": system,
            "reason": NO_PEAKS_REASON if self.no_peaks else None,
            "uncertain": self.no_peaks or self.confidence < min_confidence,
            "peak_significance": (
                None if self.peak_significance is None else round(self.peak_significance, 1)
            ),
            "no_peaks": self.no_peaks,
            "predictions": [
                {target: name, "probability": round(prob, 4)} for name, prob in self.top
            ],
        }
        if self.space_groups:
            # A model with a space-group head besides names the most probable space groups too.
            row["space_groups"] = [
                {"space_group": name, "probability": round(prob, 4)}
                for name, prob in self.space_groups
            ]
        if self.indexed is not None:
            indexing = self.indexed.result.to_dict()
            row |= {key: indexing[key] for key in INDEXING_FIELDS}
            row["n_peaks"] = len(self.indexed.peaks)
            row["indexing_reason"] = indexing["reason"]
            row["network_predictions"] = [
                {target: name, "probability": round(prob, 4)} for name, prob in self.network_top
            ]
        return row


# What a row of `predict --json` shows of the indexing, named as `xrdsym index --json` names it.
INDEXING_FIELDS = ("lattice_system", "centring", "cell", "zero_shift_deg", "figures_of_merit")
NO_PEAKS_REASON = "no peak stands out of the noise: not a crystalline pattern"
# How scores name the answer of a scan without peaks (no crystal system).
NO_ANSWER = "none"
NO_COMBINER_NOTE = (
    "the model has no combiner of network and indexing (trained without train.combine, or "
    "before it): crystal systems from the network alone, no indexing shown"
)


def prediction_warnings(prediction: Prediction, grid: TwoThetaGrid, wavelength: float) -> list[str]:
    """What a reader of ``prediction`` must know, one line each, starting with its source: a
    scan that covers only part of the model's 2θ ``grid`` (at the model's ``wavelength``, Å),
    and a scan in which no peak stands out of the noise."""
    lines = []
    if prediction.covered_fraction < FULL_COVERAGE:
        lines.append(
            f"{prediction.source}: covers {prediction.covered_fraction:.0%} of the "
            f"model's 2θ range {grid.start:g}-{grid.stop:g} degrees at "
            f"{wavelength:.4f} Å; the rest is treated as no peaks"
        )
    if prediction.no_peaks and prediction.indexed is not None:
        lines.append(
            f"{prediction.source}: {NO_PEAKS_REASON} (amorphous, or an empty scan); no "
            "crystal system given"
        )
    elif prediction.no_peaks:
        lines.append(
            f"{prediction.source}: no peak stands out of the noise (strongest "
            f"{prediction.peak_significance:.1f} σ above the background, under "
            f"{MIN_PEAK_SIGNIFICANCE:g}): no crystal system given"
        )
    return lines


def find_inputs(paths: list[Path], exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """Files to classify: each file given, and every file with a supported suffix under each
    folder given (recursively, sorted); also the files under the folders that were skipped.
    Files in ``exclude`` (a table of labels, say) are neither."""
    from xrdsym.measured import SUPPORTED_SUFFIXES

    excluded = {path.resolve() for path in exclude}
    files, skipped = [], []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            (files if member.suffix.lower() in SUPPORTED_SUFFIXES else skipped).append(member)
    return [f for f in files if f.resolve() not in excluded], skipped


def prepare_file(
    path: Path,
    meta: dict[str, Any],
    wavelength: float | None,
    background: str | None,
    smooth: float | None,
) -> tuple[list[tuple[str, str, Prepared]], list[str]]:
    """Every pattern in the file ``path`` ready for the model described by ``meta``, as
    (source, kind, prepared), kind "measured", or "structure" for a CIF structure; and the
    notes on what the file holds besides (calculated CIF blocks left out), one line each.
    ``background`` and ``smooth`` replace the model's settings for measured patterns (see
    :func:`measured_settings`; None keeps them)."""
    from xrdsym.measured import CalculatedBlockSkipped, NoPowderData, read_measured

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalculatedBlockSkipped)
        try:
            measured = read_measured(path)
        except NoPowderData:
            measured = None
    notes = []
    for warning in caught:
        if issubclass(warning.category, CalculatedBlockSkipped):
            notes.append(str(warning.message))
        else:  # not ours: passed on as if never caught
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if measured is None:
        structures = [
            (str(path.parent / record.id), "structure", prepare_structure(record.structure, meta))
            for record in read_structures(path)
        ]
        return structures, notes
    prepared = [
        (pattern.source, "measured", prepare_pattern(pattern, meta, wavelength, background, smooth))
        for pattern in measured
    ]
    return prepared, notes


def prepare_pattern(
    pattern: MeasuredPattern,
    meta: dict[str, Any],
    wavelength: float | None,
    background: str | None = None,
    smooth: float | None = None,
) -> Prepared:
    """A measured pattern ready for the model described by ``meta`` (see
    :func:`prepare_measured`); ``wavelength`` (Å) is used when the pattern states none,
    ``background`` and ``smooth`` as in :func:`prepare_file`."""
    ready = prepare_measured(
        pattern,
        wavelength,
        model_wavelength(meta),
        model_grid(meta),
        measured_settings(meta, background, smooth),
    )
    return with_indexing(ready, meta, scan=(pattern.two_theta, pattern.intensities))


@dataclass
class Reading:
    """What reading files gave: the patterns ready for the model as (source, kind, prepared),
    the files that failed and the files that hold no pattern at all (binary, text without a
    line of numbers), each as (path, reason), and notes on what was left out of the others."""

    prepared: list[tuple[str, str, Prepared]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    not_patterns: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Reading) -> None:
        """Add what ``other`` read after what this one holds."""
        self.prepared.extend(other.prepared)
        self.failures.extend(other.failures)
        self.not_patterns.extend(other.not_patterns)
        self.notes.extend(other.notes)

    def settle(self, named: Sequence[Path]) -> list[Path]:
        """Sort out the files that hold no pattern: one of the ``named`` paths (given by the
        user, not found in a folder) becomes a failure; the others are returned, skipped."""
        wanted = {path.resolve() for path in named}
        skipped = []
        for source, reason in self.not_patterns:
            if Path(source).resolve() in wanted:
                self.failures.append((source, reason))
            else:
                skipped.append(Path(source))
        self.not_patterns = []
        return skipped


def _read_file(path: Path, **settings: Any) -> Reading:
    """:func:`prepare_file` as a Reading of one file, its failure as one line."""
    from xrdsym.measured import NotAPattern

    try:
        prepared, notes = prepare_file(path, **settings)
    except NotAPattern as exc:
        return Reading(not_patterns=[(str(path), str(exc).removeprefix(f"{path}: "))])
    except XrdsymError as exc:
        return Reading(failures=[(str(path), str(exc).removeprefix(f"{path}: "))])
    except Exception as exc:  # simulating an odd structure can fail in pymatgen itself
        return Reading(failures=[(str(path), f"{exc.__class__.__name__}: {exc}")])
    return Reading(prepared, notes=notes)


def read_structures(path: Path) -> list[Any]:
    """The structure records of a CIF without powder data, read as the cif_dir source reads
    them (ids ``name`` or ``name#k``); XrdsymError when it holds none either."""
    from xrdsym.sources import Reject
    from xrdsym.sources.cif_dir import read_cif

    items = read_cif(path, path.parent)
    rejects = [item for item in items if isinstance(item, Reject)]
    if rejects:
        reason = " ".join(rejects[0].reason.split())  # pymatgen's can run over lines
        raise XrdsymError(f"{path}: no powder data, and {reason}")
    return items


def prepare_files(
    meta: dict[str, Any],
    files: list[Path],
    *,
    wavelength: float | None,
    background: str | None,
    smooth: float | None,
    n_jobs: int,
) -> Reading:
    """Every pattern in ``files`` ready for the model described by ``meta``, read in
    ``n_jobs`` processes; a file that fails is recorded with its reason and the rest go on.
    ``background`` and ``smooth``: see :func:`prepare_file`."""
    from xrdsym.parallel import parallel_map

    worker = functools.partial(
        _read_file, meta=meta, wavelength=wavelength, background=background, smooth=smooth
    )
    reading = Reading()
    for result in parallel_map(worker, files, n_jobs, "reading", show_progress=len(files) >= 50):
        reading.extend(result)
    return reading


def classify(
    classifier: Classifier, prepared: list[tuple[str, str, Prepared]], k: int
) -> list[Prediction]:
    """The top ``k`` classes and all probabilities of every prepared pattern, each read
    through the input transform it was prepared for; for a model with a combiner, those of
    the network and the indexing combined (the network's own top classes beside)."""
    predictions = []
    for start in range(0, len(prepared), PREDICT_BATCH * 16):
        batch = prepared[start : start + PREDICT_BATCH * 16]
        inputs = np.empty((len(batch), classifier.grid.size), dtype=np.float32)
        for settings in dict.fromkeys(ready.settings for _, _, ready in batch):
            rows = [i for i, (_, _, ready) in enumerate(batch) if ready.settings == settings]
            patterns = np.stack([batch[i][2].intensities for i in rows])
            inputs[rows] = classifier.inputs(patterns, settings)
        heads = classifier.calibrated_heads(inputs)
        network = heads[PRIMARY_HEAD]
        answers = combined_probabilities(classifier, network, [ready for _, _, ready in batch])
        space_groups = classifier.heads.get(SPACE_GROUP_HEAD)
        if space_groups:
            # Only the groups of the indexed lattice system: the positions rule out the rest.
            from xrdsym.hybrid import restrict_space_groups

            indexed = [ready.indexed for _, _, ready in batch]
            heads[SPACE_GROUP_HEAD] = restrict_space_groups(
                heads[SPACE_GROUP_HEAD],
                space_groups,
                [None if found is None else found.result.lattice_system for found in indexed],
            )
        for i, (source, kind, ready) in enumerate(batch):
            row = answers[i]
            predictions.append(
                Prediction(
                    source,
                    kind,
                    ready.wavelength,
                    ready.covered_fraction,
                    top_k(row, classifier.classes, k),
                    row,
                    inputs[i],
                    top_k(heads[SPACE_GROUP_HEAD][i], space_groups, k) if space_groups else [],
                    ready.peak_significance,
                    ready.indexed,
                    top_k(network[i], classifier.classes, k) if ready.indexed is not None else [],
                )
            )
    return predictions


def combined_probabilities(
    classifier: Classifier, network: np.ndarray, prepared: Sequence[Prepared]
) -> np.ndarray:
    """The crystal-system probabilities of ``prepared`` patterns: the combiner's of the
    network's calibrated ``network`` probabilities and each one's indexing, where the model
    has a combiner and the pattern was indexed; else the network's."""
    indexed = [i for i, ready in enumerate(prepared) if ready.indexed is not None]
    if classifier.combiner is None or not indexed:
        return network
    from xrdsym.hybrid import feature_matrix, index_features

    features = feature_matrix(
        [
            index_features(len(prepared[i].indexed.peaks), prepared[i].indexed.result)
            for i in indexed
        ]
    )
    answers = np.array(network, dtype=np.float64)
    answers[indexed] = classifier.combiner.probabilities(answers[indexed], features)
    return answers


def check_options(
    *,
    top_k: int = 3,
    background: str | None = None,
    smooth: float | None = None,
    min_confidence: float = 0.0,
    command_line: bool = False,
) -> None:
    """XrdsymError, one line naming the option, for a value ``predict`` cannot use; the
    options are named as on the command line (``--top-k``) or as arguments (``top_k``)."""
    from xrdsym.preprocessing import BACKGROUNDS

    def name(option: str) -> str:
        return "--" + option.replace("_", "-") if command_line else option

    if top_k < 1:
        raise XrdsymError(f"{name('top_k')} {top_k}: must be at least 1")
    if background not in (None, *BACKGROUNDS):
        raise XrdsymError(f"{name('background')} {background}: must be one of {BACKGROUNDS}")
    if smooth is not None and not smooth >= 0:
        raise XrdsymError(f"{name('smooth')} {smooth:g}: must be 0 (none) or more grid points")
    if not 0 <= min_confidence < 1:
        raise XrdsymError(f"{name('min_confidence')} {min_confidence:g}: must be in [0, 1)")


@dataclass(frozen=True)
class PredictionResult:
    """One pattern's answer, as :func:`xrdsym.predict` returns it.

    Attributes:
        prediction: the underlying :class:`Prediction` (source, kind, wavelength, coverage,
            top classes, every class's calibrated probability, the pattern the model saw).
        classes: the model's classes, in the order of ``prediction.probabilities``.
        target: what the classes are: ``crystal_system``, or ``space_group`` (numbers).
        min_confidence: below this top probability the answer is flagged ``uncertain``.
        warnings: what a reader must know about this answer, one line each (partial
            coverage of the model's 2θ range, no peak above the noise).
    """

    prediction: Prediction
    classes: tuple[str, ...]
    target: str = "crystal_system"
    min_confidence: float = 0.0
    warnings: tuple[str, ...] = ()

    # The flags a result can carry, in the order :attr:`flags` lists them.
    FLAGS = ("uncertain", "no_peaks", "unindexed", "partial_coverage")

    @property
    def source(self) -> str:
        """The file (``#block`` for a CIF data block) or ``array N`` the pattern came from."""
        return self.prediction.source

    @property
    def kind(self) -> str:
        """``measured`` (a scan or an array), or ``structure`` (a CIF simulated first)."""
        return self.prediction.kind

    @property
    def wavelength(self) -> float:
        """The wavelength the pattern was taken at, Å."""
        return self.prediction.wavelength

    @property
    def covered_fraction(self) -> float:
        """The fraction of the model's 2θ range the pattern covers (zeros stand for the rest)."""
        return self.prediction.covered_fraction

    @property
    def crystal_system(self) -> str | None:
        """The most probable crystal system (for a space-group model, the one its most
        probable space group implies); None for a scan in which no peak stands out of the
        noise (``no_peaks``)."""
        return self.prediction.crystal_system(self.target)

    @property
    def lattice_system(self) -> str | None:
        """The lattice system of the indexed cell (None: not indexed, or a model that does
        not index)."""
        indexed = self.prediction.indexed
        return None if indexed is None else indexed.result.lattice_system

    @property
    def cell(self) -> dict[str, float] | None:
        """The indexed cell, a, b, c (Å) and alpha, beta, gamma (degrees), or None."""
        indexed = self.prediction.indexed
        return None if indexed is None or indexed.result.best is None else indexed.result.best.cell

    @property
    def confidence(self) -> float:
        """The calibrated probability of the most probable class."""
        return self.prediction.confidence

    @property
    def probabilities(self) -> dict[str, float]:
        """Every class's calibrated probability (temperature-scaled; they sum to 1)."""
        values = self.prediction.probabilities
        return {name: float(p) for name, p in zip(self.classes, values, strict=True)}

    @property
    def top(self) -> list[tuple[str, float]]:
        """The most probable classes with their calibrated probabilities, most probable
        first."""
        return self.prediction.top

    @property
    def space_groups(self) -> list[tuple[str, float]]:
        """The most probable space groups of a model with a space-group head besides (else
        empty)."""
        return self.prediction.space_groups

    @property
    def uncertain(self) -> bool:
        """The top calibrated probability is below ``min_confidence``, or the scan has no
        peak (no crystal system)."""
        return self.no_peaks or self.confidence < self.min_confidence

    @property
    def no_peaks(self) -> bool:
        """A measured scan in which no peak stands out of the noise: the answer says nothing
        about a crystalline phase."""
        return self.prediction.no_peaks

    @property
    def unindexed(self) -> bool:
        """A model that indexes found no cell for the scan (too few peaks, none passes, or
        the time budget spent): the answer rests on the network's reading."""
        return self.prediction.unindexed

    @property
    def partial_coverage(self) -> bool:
        """The pattern covers only part of the model's 2θ range."""
        return self.covered_fraction < FULL_COVERAGE

    @property
    def flags(self) -> tuple[str, ...]:
        """The names of the flags that are set, of ``uncertain``, ``no_peaks``,
        ``unindexed`` and ``partial_coverage``."""
        return tuple(flag for flag in self.FLAGS if getattr(self, flag))

    def to_dict(self) -> dict[str, Any]:
        """Plain types for JSON: the row ``xrdsym predict --json`` writes (see
        :meth:`Prediction.row`) and the crystal system, the confidence, every class's
        calibrated probability, the flags and the warnings."""
        return self.prediction.row(self.target, self.min_confidence) | {
            "confidence": round(self.confidence, 4),
            "probabilities": {name: round(p, 4) for name, p in self.probabilities.items()},
            "flags": list(self.flags),
            "warnings": list(self.warnings),
        }


def is_array_pair(item: Any) -> bool:
    """Whether ``item`` is one pattern as arrays: (2θ, intensities), or a 2 x N array."""
    if isinstance(item, np.ndarray):
        return item.ndim == 2 and item.shape[0] == 2
    if not isinstance(item, tuple | list) or len(item) != 2:
        return False
    if any(isinstance(part, str | os.PathLike | MeasuredPattern) for part in item):
        return False
    try:
        return all(np.asarray(part, dtype=np.float64).ndim == 1 for part in item)
    except (TypeError, ValueError):
        return False


def input_items(inputs: Any) -> list[Any]:
    """The patterns, files or folders of :func:`predict_inputs`'s ``inputs``, as a list."""
    if isinstance(inputs, str | os.PathLike | MeasuredPattern) or is_array_pair(inputs):
        return [inputs]
    return list(inputs)


def predict_inputs(
    inputs: Any,
    model: Classifier | str | os.PathLike[str] | None = None,
    *,
    wavelength: str | float | None = None,
    top_k: int = 3,
    min_confidence: float = 0.0,
    background: str | None = None,
    smooth: float | None = None,
) -> list[PredictionResult]:
    """Classify files, folders, measured patterns or (2θ, intensities) arrays, in order; the
    implementation of :func:`xrdsym.predict`, which documents the arguments. The first input
    that cannot be read raises its XrdsymError, with the message ``xrdsym predict`` gives."""
    check_options(top_k=top_k, background=background, smooth=smooth, min_confidence=min_confidence)
    stated = parse_wavelength(wavelength) if wavelength is not None else None
    if isinstance(model, Classifier):
        classifier, meta = model, model.meta
    else:
        classifier, meta = None, read_model_meta(model_directory(model)[0])
    prepared: list[tuple[str, str, Prepared]] = []
    for index, item in enumerate(input_items(inputs)):
        if isinstance(item, str | os.PathLike):
            prepared += _prepare_path(Path(item), meta, stated, background, smooth)
            continue
        if isinstance(item, MeasuredPattern):
            pattern = item
        elif is_array_pair(item):
            from xrdsym.measured import validate

            two_theta, intensities = item
            pattern = validate(two_theta, intensities, None, f"array {index}")
        else:
            raise XrdsymError(
                f"input {index}: {type(item).__name__} is neither a path, a pattern nor "
                "(2θ, intensities) arrays"
            )
        if pattern.wavelength is None and stated is None:
            raise XrdsymError(
                f"{pattern.source}: no wavelength stated; give wavelength= (Å, or an anode "
                "such as CuKa, MoKa, CoKa)"
            )
        ready = prepare_pattern(pattern, meta, stated, background, smooth)
        prepared.append((pattern.source, "measured", ready))
    if classifier is None:
        classifier = load_classifier(model_directory(model)[0])
    target = meta.get("target", "crystal_system")
    return [
        PredictionResult(
            prediction,
            tuple(classifier.classes),
            target,
            min_confidence,
            tuple(prediction_warnings(prediction, classifier.grid, classifier.wavelength)),
        )
        for prediction in classify(classifier, prepared, top_k)
    ]


def _prepare_path(
    path: Path,
    meta: dict[str, Any],
    wavelength: float | None,
    background: str | None,
    smooth: float | None,
) -> list[tuple[str, str, Prepared]]:
    """Every pattern of a file, or of the files under a folder, ready for the model; the first
    failure raised as ``xrdsym predict`` reports it, notes on what was left out warned."""
    from xrdsym.measured import CalculatedBlockSkipped

    files, _ = find_inputs([path])
    reading = prepare_files(
        meta, files, wavelength=wavelength, background=background, smooth=smooth, n_jobs=1
    )
    reading.settle([path])
    if reading.failures:
        source, reason = reading.failures[0]
        raise XrdsymError(f"{source}: {reason}")
    for note in reading.notes:
        warnings.warn(note, CalculatedBlockSkipped, stacklevel=3)
    return reading.prepared


# Labels of patterns to score predictions against (`xrdsym predict --labels`): a CSV table
# with these columns (names matched case-insensitively, blanks and hyphens as underscores).
LABEL_COLUMNS = ("file", "crystal_system")
SPACE_GROUP_COLUMN = "space_group"
# A space group as a number ("225") or with its number in a description ("Fm-3m (No.225)").
_SPACE_GROUP_NUMBER = re.compile(r"^\s*(\d+)\s*$|\bNo\.\s*(\d+)", re.IGNORECASE)
# Fractions of the patterns, the most confident first, whose accuracy the scores report.
COVERAGES = (0.5, 0.8, 1.0)


@dataclass(frozen=True)
class Label:
    """What a pattern file is: the file as the labels table names it, its crystal system and,
    when the table says, its space-group number."""

    file: str
    crystal_system: str
    space_group: int | None


@dataclass(frozen=True)
class Labels:
    """A labels table: where it was read from, and its rows."""

    path: Path
    rows: list[Label]


def _column_name(header: str) -> str:
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def _space_group_number(text: str) -> int | None:
    """The space-group number (1-230) in a label ("225", "Fm-3m (No.225)"), else None."""
    match = _SPACE_GROUP_NUMBER.search(text)
    number = int(match.group(1) or match.group(2)) if match else None
    return number if number is not None and 1 <= number <= 230 else None


def read_labels(path: Path) -> Labels:
    """Read a labels table (CSV with columns ``file``, ``crystal_system`` and optionally
    ``space_group``, others ignored); XrdsymError, one line, for anything wrong with it.

    A space group is read as a number or from "No. N" in its text; a row whose space group
    says neither has none (it is still scored by crystal system).
    """
    import csv

    from xrdsym.symmetry import CRYSTAL_SYSTEMS

    try:
        table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    except OSError as exc:
        raise XrdsymError(f"{path}: cannot read the labels ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise XrdsymError(f"{path}: not a CSV table of labels ({exc.__class__.__name__})") from exc
    header = [_column_name(name) for name in (table[0] if table else [])]
    missing = [name for name in LABEL_COLUMNS if name not in header]
    if missing:
        raise XrdsymError(
            f"{path}: labels need the columns {', '.join(LABEL_COLUMNS)} (optional: "
            f"{SPACE_GROUP_COLUMN}); missing {', '.join(missing)}, found "
            f"{', '.join(h for h in header if h) or 'no header'}"
        )
    rows, seen = [], set()
    for line, values in enumerate(table[1:], start=2):
        if not any(value.strip() for value in values):
            continue
        row = dict(zip(header, (value.strip() for value in values), strict=False))
        file, system = row.get("file", ""), row.get("crystal_system", "").lower()
        if not file:
            raise XrdsymError(f"{path}: line {line}: no file")
        if file in seen:
            raise XrdsymError(f"{path}: line {line}: {file} is labelled twice")
        if system not in CRYSTAL_SYSTEMS:
            raise XrdsymError(
                f"{path}: line {line}: crystal system {system or '(empty)'!r} is not one of "
                f"{', '.join(CRYSTAL_SYSTEMS)}"
            )
        seen.add(file)
        rows.append(Label(file, system, _space_group_number(row.get(SPACE_GROUP_COLUMN, ""))))
    if not rows:
        raise XrdsymError(f"{path}: no labelled files")
    return Labels(path, rows)


def _file_part(source: str) -> str:
    """The file a pattern came from: its source without the ``#block`` of a CIF data block
    (or the ``#k`` of a CIF's k-th structure)."""
    folder, sep, name = source.rpartition(os.sep)
    return folder + sep + name.split("#", 1)[0]


def match_labels(sources: Sequence[str], labels: Labels) -> list[int | None]:
    """The labels row of each pattern source, or None.

    A row's ``file`` is a path relative to the labels table's folder; it labels every pattern
    of that file (each data block of a CIF), or the one pattern whose source it names
    (``name.cif#block``). A pattern whose file no row names this way takes the row whose file
    has its base name, when exactly one row has it.
    """
    by_path: dict[Path, int] = {}
    by_name: dict[str, list[int]] = {}
    for index, row in enumerate(labels.rows):
        by_path[(labels.path.parent / row.file).resolve()] = index
        by_name.setdefault(Path(row.file).name, []).append(index)
    matched = []
    for source in sources:
        file = _file_part(source)
        index = by_path.get(Path(source).resolve(), by_path.get(Path(file).resolve()))
        if index is None:
            same_name = by_name.get(Path(file).name, [])
            index = same_name[0] if len(same_name) == 1 else None
        matched.append(index)
    return matched


def _scores(
    actual: Sequence[str],
    predicted: Sequence[str],
    confidence: np.ndarray,
    order: Sequence[str],
    min_confidence: float,
) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes in ``actual``, per-class recall, the confusion
    matrix (rows actual, columns predicted, over the classes seen, in ``order`` first), the
    accuracy of the most confident fractions, and coverage and accuracy at ``min_confidence``."""
    from xrdsym.evaluation import accuracy_at_coverage, classification_metrics, confusion

    seen = set(actual) | set(predicted)
    classes = [c for c in order if c in seen] + sorted(seen - set(order))
    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[name] for name in actual])
    y_pred = np.array([index[name] for name in predicted])
    metrics = classification_metrics(y_true, y_pred, classes)
    with warnings.catch_warnings():
        # scikit-learn doubts a 1 x 1 matrix; here it is one class seen, given as the labels.
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        matrix = confusion(y_true, y_pred, len(classes))
    correct = y_true == y_pred
    answered = confidence >= min_confidence
    return {
        "n": len(actual),
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "recall": {
            name: {"recall": row["recall"], "support": row["support"]}
            for name, row in metrics["per_class"].items()
            if row["support"] > 0
        },
        "confusion": {"classes": classes, "matrix": matrix.tolist()},
        "accuracy_at_coverage": {
            f"{coverage:.0%}": accuracy_at_coverage(confidence, correct, coverage)
            for coverage in COVERAGES
        },
        "min_confidence": min_confidence,
        "coverage": float(answered.mean()),
        "accuracy_answered": float(correct[answered].mean()) if answered.any() else None,
        "accuracy_all": float((correct & answered).mean()),
    }


def score_predictions(
    predictions: Sequence[Prediction],
    labels: Labels,
    target: str,
    classes: Sequence[str],
    min_confidence: float = 0.0,
    space_groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Predictions scored against their labels (see :func:`match_labels`).

    Gives the labelled files no pattern came from, the patterns without a label and, over the
    patterns with one, :func:`_scores` of the crystal system (for a space-group model, the one
    its predicted group implies) and, for a space-group model or one with a space-group head
    (whose classes are ``space_groups``) whose labels have space groups, of the space group.
    ``classes`` are the model's; a pattern whose top probability is below ``min_confidence``
    is unanswered ("uncertain"); ``accuracy_all`` counts it as wrong.
    """
    from xrdsym.symmetry import CRYSTAL_SYSTEMS

    matched = match_labels([p.source for p in predictions], labels)
    pairs = [
        (p, labels.rows[i]) for p, i in zip(predictions, matched, strict=True) if i is not None
    ]
    predicted_rows = set(matched)
    scores: dict[str, Any] = {
        "labels": str(labels.path),
        "n_labelled": len(labels.rows),
        "n_scored": len(pairs),
        "labelled_not_predicted": [
            row.file for i, row in enumerate(labels.rows) if i not in predicted_rows
        ],
        "predicted_without_label": [
            p.source for p, i in zip(predictions, matched, strict=True) if i is None
        ],
    }
    if not pairs:
        return scores
    # A scan without peaks has no answer: scored as "none" (wrong), never as answered
    # (its confidence below any --min-confidence).
    confidence = np.array([-1.0 if p.no_peaks else p.confidence for p, _ in pairs])
    systems = [row.crystal_system for _, row in pairs]
    if target == "space_group":
        implied = [p.crystal_system(target) or NO_ANSWER for p, _ in pairs]
        scores["crystal_system"] = _scores(
            systems, implied, confidence, CRYSTAL_SYSTEMS, min_confidence
        )
        with_group = [(p, row) for p, row in pairs if row.space_group is not None]
        if with_group:
            scores["space_group"] = _scores(
                [str(row.space_group) for _, row in with_group],
                [p.answer for p, _ in with_group],
                np.array([p.confidence for p, _ in with_group]),
                classes,
                min_confidence,
            )
    else:
        answers = [p.crystal_system(target) or NO_ANSWER for p, _ in pairs]
        scores["crystal_system"] = _scores(systems, answers, confidence, classes, min_confidence)
        with_group = [(p, row) for p, row in pairs if row.space_group is not None]
        if space_groups and with_group:
            scores["space_group"] = _scores(
                [str(row.space_group) for _, row in with_group],
                [p.space_groups[0][0] for p, _ in with_group],
                np.array([p.space_groups[0][1] for p, _ in with_group]),
                space_groups,
                min_confidence,
            )
    return scores
