"""Train/validation/test split: stratified by class, grouped (by structure type or
composition), seeded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

SPLITS = ("train", "val", "test")


def _hold_out(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of about ``fraction`` of the rows, whole groups only, classes stratified."""
    n_folds = max(2, round(1 / fraction))
    n_groups = len(np.unique(groups))
    largest_class = np.unique(labels, return_counts=True)[1].max()
    if min(n_groups, largest_class) < n_folds:
        # Too few rows to cut into stratified folds: hold out whole groups at random instead.
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(np.unique(groups))[: max(1, round(fraction * n_groups))]
        return np.isin(groups, chosen)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    _, held_out = next(folds.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held_out] = True
    return mask


def grouped_stratified_split(
    labels: Sequence[str],
    groups: Sequence[str],
    test_size: float,
    val_size: float,
    seed: int,
) -> np.ndarray:
    """Assign each row to "train", "val" or "test".

    No group (a structure type, or a reduced formula) appears in two splits, so the model is
    never tested on a structure type (or composition) it was trained on. ``test_size`` and
    ``val_size`` are fractions of all rows; the folds of scikit-learn's StratifiedGroupKFold
    make them approximate.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    split = np.full(len(labels), "train", dtype=object)
    if len(labels) == 0:
        return split
    test = _hold_out(labels, groups, test_size, seed)
    split[test] = "test"
    rest = np.flatnonzero(~test)
    if len(rest):
        # val_size is a fraction of all rows; rescale it to the rows left after the test split.
        fraction = min(val_size / (1 - test_size), 0.5)
        val = _hold_out(labels[rest], groups[rest], fraction, seed + 1)
        split[rest[val]] = "val"
    return split
