"""Figures for people: class balance, an example pattern with its image, the confusion matrix.

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
    two_theta: np.ndarray, intensities: np.ndarray, image: np.ndarray, title: str, path: str | Path
) -> None:
    """One pattern against 2θ beside the square image the classifier sees."""
    figure, (curve, picture) = plt.subplots(
        1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    curve.plot(two_theta, intensities, lw=0.8)
    curve.set_xlabel("2θ (degrees)")
    curve.set_ylabel("normalised intensity")
    curve.set_title(title)
    picture.imshow(image, interpolation="nearest")
    picture.set_title(f"image, {image.shape[0]}×{image.shape[1]} px")
    picture.axis("off")
    _save(figure, path)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path) -> None:
    """Confusion matrix with counts (rows: true crystal system, columns: predicted)."""
    figure, axes = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(matrix, display_labels=list(classes)).plot(
        ax=axes, cmap="Blues", xticks_rotation=40, colorbar=False
    )
    axes.set_title("Confusion matrix (test split)")
    _save(figure, path)
