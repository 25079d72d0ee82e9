"""Classification metrics: the paper's per-class table plus accuracy and F1 averages; the
accuracy of the most confident answers; the test split as measured under other conditions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from xrdsym.augmentation import AugmentSettings, PeakReflections
from xrdsym.diffraction import PeakTable, TwoThetaGrid
from xrdsym.errors import ParamsError
from xrdsym.inputs import measured_once

# FWHM of a Gaussian over its standard deviation: 2 √(2 ln 2).
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
# What a measurement condition (evaluate.robustness) may set: every part augmentation adds.
# Not the peak width or shape: those stay the stored patterns', so that a condition shows its
# own effect only.
CONDITION_KEYS = tuple(
    field.name
    for field in dataclasses.fields(AugmentSettings)
    if field.name not in ("instrument_fwhm_deg", "profile")
)
# Conditions draw their random parts (noise, background shapes, texture axes) from this seed:
# the same model gives the same robustness table run after run.
CONDITION_SEED = 0


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, weighted-F1 and per-class precision, recall, F1 and support.

    ``y_true`` and ``y_pred`` are class indices into ``classes``. A class with no prediction
    (or no support) gets precision (or recall) 0, as scikit-learn's ``zero_division=0``;
    macro-F1 averages over the classes present in ``y_true``.
    """
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    # Macro-F1 over the classes the patterns hold: a class absent from a small evaluation set
    # has no F1 to average (on the test split every class is present).
    _, _, macro_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0
    )
    _, _, weighted_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=0
    )
    return {
        "n_test": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(macro_f1),
        "weighted_f1": float(weighted_f1),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def brief_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1 (see :func:`classification_metrics`); a prediction
    of -1 (no answer) counts as wrong."""
    metrics = classification_metrics(y_true, y_pred, classes)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "per_class_f1": {name: row["f1"] for name, row in metrics["per_class"].items()},
    }


# The lattice systems a crystal system's crystals have: a trigonal crystal's is rhombohedral
# (R) or hexagonal (P, as quartz's).
LATTICE_SYSTEMS_OF_CRYSTAL_SYSTEM = {
    "cubic": ("cubic",),
    "hexagonal": ("hexagonal",),
    "trigonal": ("hexagonal", "rhombohedral"),
    "tetragonal": ("tetragonal",),
    "orthorhombic": ("orthorhombic",),
    "monoclinic": ("monoclinic",),
    "triclinic": ("triclinic",),
}


def lattice_system_right(
    predicted_crystal_systems: Sequence[str | None], true_lattice_systems: Sequence[str]
) -> np.ndarray:
    """Whether each answer names the crystal's lattice system: a crystal system is right when
    the true lattice system is one of its crystals' (so hexagonal and trigonal are both right
    for a hexagonal lattice, which powder positions cannot split, and only trigonal for a
    rhombohedral one); no answer (None) is wrong."""
    return np.array(
        [
            predicted is not None and truth in LATTICE_SYSTEMS_OF_CRYSTAL_SYSTEM[predicted]
            for predicted, truth in zip(
                predicted_crystal_systems, true_lattice_systems, strict=True
            )
        ],
        dtype=bool,
    )


def ceiling_answers(
    oracle_lattice_systems: Sequence[str], true_crystal_systems: Sequence[str]
) -> tuple[list[str], str]:
    """The metric oracle's crystal systems: each lattice system's (rhombohedral is trigonal),
    a hexagonal lattice read as whichever of hexagonal and trigonal is right more often on
    these patterns (the oracle's best reading of a lattice both share); and that choice."""
    from xrdsym.indexing import CRYSTAL_SYSTEM_OF_LATTICE

    truth = np.asarray(true_crystal_systems)
    hexagonal = np.asarray(oracle_lattice_systems) == "hexagonal"
    reading = (
        "trigonal"
        if np.sum(truth[hexagonal] == "trigonal") > np.sum(truth[hexagonal] == "hexagonal")
        else "hexagonal"
    )
    answers = [
        reading if system == "hexagonal" else CRYSTAL_SYSTEM_OF_LATTICE[system]
        for system in oracle_lattice_systems
    ]
    return answers, reading


def top_k_accuracy(probabilities: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of patterns whose true class is among the ``k`` most probable ones."""
    labels = np.arange(np.shape(probabilities)[1])
    return float(top_k_accuracy_score(y_true, probabilities, k=k, labels=labels))


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy on the most confident ``coverage`` fraction (0 < coverage <= 1) of the
    patterns, at least one: the answers kept when the least sure ones are withheld."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    kept = max(1, math.ceil(coverage * len(order) - 1e-9))
    return float(np.mean(np.asarray(correct)[order[:kept]]))


def accuracies_at_coverage(
    confidence: np.ndarray, correct: np.ndarray, coverages: Sequence[float]
) -> dict[str, float]:
    """:func:`accuracy_at_coverage` at each of ``coverages``, keyed as percentages ("80%")."""
    return {
        f"{coverage:.0%}": accuracy_at_coverage(confidence, correct, coverage)
        for coverage in coverages
    }


def stored_fwhm_deg(sigma_points: float, step_deg: float) -> float:
    """FWHM in degrees 2θ of the stored patterns' Gaussian peaks, σ = ``sigma_points`` grid
    points of ``step_deg`` degrees (the patterns stage's ``gaussian_filter1d``)."""
    return FWHM_PER_SIGMA * sigma_points * step_deg


def condition_settings(
    name: str, condition: Any, instrument_fwhm_deg: float
) -> AugmentSettings | None:
    """Augmentation settings of measurement condition ``name`` of evaluate.robustness: the
    parts ``condition`` sets (as in train.augment: a number or [low, high]), every other part
    off, Gaussian peaks of ``instrument_fwhm_deg`` (degrees 2θ, the stored patterns' width).
    None for a condition that sets nothing: the stored patterns themselves. Raises ParamsError
    naming the first invalid key."""
    key = f"evaluate.robustness.{name}"
    if not isinstance(condition, dict):
        raise ParamsError(
            f"params.yaml: {key}={condition!r} is invalid: must be a mapping of augmentation keys"
        )
    unknown = sorted(map(str, set(condition) - set(CONDITION_KEYS)))
    if unknown:
        raise ParamsError(
            f"params.yaml: {key}.{unknown[0]} is not an augmentation key a condition may set "
            f"(one of {', '.join(CONDITION_KEYS)})"
        )
    if not condition:
        return None
    section = {
        "enabled": True,
        "profile": "gaussian",
        "instrument_fwhm_deg": instrument_fwhm_deg,
        **dict.fromkeys(CONDITION_KEYS),
        **condition,
    }
    try:
        return AugmentSettings.from_params(section)
    except ParamsError as exc:
        # from_params names its keys as those of train.augment.
        raise ParamsError(str(exc).replace("train.augment.", f"{key}.")) from None


def condition_patterns(
    table: PeakTable,
    grid: TwoThetaGrid,
    wavelength_angstrom: float,
    settings: AugmentSettings,
    reflections: PeakReflections | None = None,
) -> np.ndarray:
    """Every structure of ``table`` measured under ``settings``: :func:`measured_once` with
    draws from CONDITION_SEED (the same patterns every run)."""
    return measured_once(table, grid, wavelength_angstrom, settings, (CONDITION_SEED,), reflections)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix: rows are the true classes, columns the predicted ones."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def metrics_table(metrics: dict[str, Any]) -> str:
    """The paper's table (per-class precision, recall, F1, support) as Markdown; for a
    space-group model, the table of the crystal systems its predictions imply, after a line
    with its space-group top-1 and top-5 accuracy."""
    lines = []
    if "per_class" not in metrics:
        lines.append(
            f"space group: top-1 accuracy {metrics['accuracy']:.2f}, top-5 accuracy "
            f"{metrics['top5_accuracy']:.2f}, macro-F1 {metrics['macro_f1']:.2f} "
            f"({metrics['n_test']} patterns); crystal systems implied:\n"
        )
        metrics = metrics["crystal_system"]
    lines += [
        "| crystal system | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} "
            f"| {row['support']} |"
        )
    lines.append(f"| **accuracy** | | | {metrics['accuracy']:.2f} | {metrics['n_test']} |")
    lines.append(f"| **macro avg** | | | {metrics['macro_f1']:.2f} | |")
    lines.append(f"| **weighted avg** | | | {metrics['weighted_f1']:.2f} | |")
    return "\n".join(lines)
