"""Figures for people: class balance, an example pattern with its image, the confusion matrix,
calibration, accuracy under other measurement conditions, predictions.

Kept apart from the physics so that computing patterns never imports a plotting backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is assumed anywhere the pipeline runs

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import ConfusionMatrixDisplay

from xrdsym.io import atomic_path


def _save(figure: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)


def plot_class_balance(counts: pd.Series, path: str | Path) -> None:
    """Materials per crystal system: counts (bars) and proportions (pie), the paper's Figs 2-3."""
    figure, (bars, pie) = plt.subplots(1, 2, figsize=(11, 4.2))
    bars.bar(counts.index, counts.values, color="tab:blue")
    bars.set_ylabel("materials")
    bars.set_title("Materials per crystal system")
    bars.tick_params(axis="x", rotation=40)
    for x, value in enumerate(counts.values):
        bars.annotate(str(value), (x, value), ha="center", va="bottom", fontsize=8)
    pie.pie(counts.values, labels=counts.index, autopct="%1.1f%%", textprops={"fontsize": 8})
    pie.set_title("Proportion per crystal system")
    _save(figure, path)


def plot_example(
    two_theta: np.ndarray,
    intensities: np.ndarray,
    model_input: np.ndarray,
    title: str,
    path: str | Path,
) -> None:
    """One pattern against 2θ beside what the classifier sees: its square image (an RGB
    array), or for a 1D model the pattern vector itself (points x 1) as a strip."""
    figure, (curve, picture) = plt.subplots(
        1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    curve.plot(two_theta, intensities, lw=0.8)
    curve.set_xlabel("2θ (degrees)")
    curve.set_ylabel("normalised intensity")
    curve.set_title(title)
    if model_input.ndim == 3:
        picture.imshow(model_input, interpolation="nearest")
        picture.set_title(f"image, {model_input.shape[0]}×{model_input.shape[1]} px")
    else:
        picture.imshow(model_input.T, aspect="auto", interpolation="nearest", cmap="viridis")
        picture.set_title(f"1D input, {model_input.shape[0]} points")
    picture.axis("off")
    _save(figure, path)


def plot_calibration(reliability: pd.DataFrame, coverage: pd.DataFrame, path: str | Path) -> None:
    """Reliability diagram (accuracy against confidence per bin) beside accuracy against
    coverage (accuracy on the patterns at least as confident as a threshold)."""
    figure, (diagram, curve) = plt.subplots(1, 2, figsize=(11, 4.2))
    diagram.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    diagram.plot(reliability["confidence"], reliability["accuracy"], "o-", label="model")
    diagram.set_xlabel("confidence (calibrated)")
    diagram.set_ylabel("accuracy")
    diagram.set_title("Reliability (test split)")
    diagram.legend(loc="upper left")
    curve.plot(coverage["coverage"], coverage["accuracy"])
    curve.set_xlabel("coverage (fraction of patterns kept)")
    curve.set_ylabel("accuracy on the patterns kept")
    curve.set_title("Accuracy against coverage (test split)")
    curve.set_xlim(0, 1)
    _save(figure, path)


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix (test split)",
) -> None:
    """Confusion matrix with counts (rows: true crystal system, columns: predicted)."""
    figure, axes = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(matrix, display_labels=list(classes)).plot(
        ax=axes, cmap="Blues", xticks_rotation=40, colorbar=False
    )
    axes.set_title(title)
    _save(figure, path)


def plot_robustness(robustness: dict[str, dict[str, float]], path: str | Path) -> None:
    """Test-split accuracy under each measurement condition (bars, the metrics' ``robustness``
    section: accuracy and drop per condition) against the stored patterns' (dashed line)."""
    names = list(robustness)
    accuracy = [robustness[name]["accuracy"] for name in names]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    axes.barh(names, accuracy, color="tab:blue")
    for y, value in enumerate(accuracy):
        axes.annotate(
            f"{value:.2f}",
            (value, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    if names:
        stored = robustness[names[0]]["accuracy"] + robustness[names[0]]["drop"]
        axes.axvline(stored, ls="--", color="grey", lw=0.8, label="stored patterns")
        axes.legend(loc="lower right")
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy (test split)")
    axes.set_title("Accuracy under each measurement condition alone")
    _save(figure, path)


# Rows drawn by plot_predictions; more patterns would make an unreadable figure.
MAX_PLOTTED = 10


def plot_predictions(
    two_theta: np.ndarray, predictions: Sequence, classes: Sequence[str], path: str | Path
) -> None:
    """Per pattern (at most MAX_PLOTTED): the pattern as the model saw it, on its 2θ grid,
    beside its calibrated class probabilities."""
    shown = list(predictions)[:MAX_PLOTTED]
    if not shown:
        return
    figure, axes = plt.subplots(
        len(shown),
        2,
        figsize=(11, 2.6 * len(shown)),
        gridspec_kw={"width_ratios": [2.2, 1]},
        squeeze=False,
    )
    for (curve, bars), prediction in zip(axes, shown, strict=True):
        curve.plot(two_theta, prediction.intensities, lw=0.8)
        curve.set_xlabel("2θ at the model's wavelength (degrees)")
        curve.set_ylabel("normalised")
        curve.set_title(Path(prediction.source).name, fontsize=9)
        bars.barh(list(classes), prediction.probabilities, color="tab:blue")
        bars.set_xlim(0, 1)
        bars.set_xlabel("calibrated probability")
        bars.invert_yaxis()
    if len(predictions) > MAX_PLOTTED:
        figure.suptitle(f"first {MAX_PLOTTED} of {len(predictions)} patterns")
    figure.tight_layout()
    _save(figure, path)


def plot_indexed(
    two_theta: np.ndarray | None,
    intensities: np.ndarray | None,
    peak_two_theta: np.ndarray,
    peak_intensity: np.ndarray,
    cell: object | None,
    title: str,
    path: str | Path,
) -> None:
    """A scan (or, for a structure, its lines as sticks) with a tick at every line the cell
    indexes, labelled with its hkl, and a cross at every line it leaves unindexed.

    ``cell``: an :class:`xrdsym.indexing.Cell` (its ``two_theta_calc`` and ``hkl`` per line
    of the first ``lines_used`` peaks) or None when the pattern was not indexed."""
    figure, axis = plt.subplots(figsize=(11, 4))
    if two_theta is not None and intensities is not None:
        axis.plot(two_theta, intensities, lw=0.7, color="0.2", label="scan")
        top = float(np.max(intensities))
    else:
        axis.vlines(peak_two_theta, 0, peak_intensity, color="0.2", lw=0.8, label="lines")
        top = float(np.max(peak_intensity, initial=1.0))
    if cell is not None:
        used = cell.lines_used
        calc, hkl = cell.two_theta_calc, cell.hkl
        indexed = np.isfinite(calc)
        axis.vlines(
            calc[indexed],
            -0.08 * top,
            -0.02 * top,
            color="tab:blue",
            lw=1.2,
            label=f"{cell.lattice_system} {cell.centring} (indexed)",
        )
        for position, indices in zip(calc[indexed], hkl[indexed], strict=True):
            axis.annotate(
                "".join(str(int(i)) if abs(i) < 10 else f"({int(i)})" for i in indices),
                (position, -0.1 * top),
                rotation=90,
                fontsize=6,
                ha="center",
                va="top",
                color="tab:blue",
            )
        missed = peak_two_theta[:used][~indexed]
        axis.plot(
            missed, np.full(len(missed), -0.05 * top), "x", color="tab:red", label="not indexed"
        )
        axis.set_ylim(-0.3 * top, 1.05 * top)
    axis.set_xlabel("2θ (degrees)")
    axis.set_ylabel("intensity")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    _save(figure, path)
