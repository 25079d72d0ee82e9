"""Calibrated probabilities: temperature scaling, expected calibration error, accuracy-coverage.

Temperature scaling (Guo et al., ICML 2017) divides the logits by one number T fitted on the
validation split by minimising the negative log-likelihood; it changes how sure the model is,
never which class it picks. The models end in a softmax, and softmax(log p / T) equals
softmax(z / T) for logits z, so the probabilities themselves are enough.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import log_softmax

if TYPE_CHECKING:  # pandas and scipy.optimize are imported where used: `predict` needs neither
    import pandas as pd

# Probabilities below this are clipped before the logarithm (float32 softmax can give 0).
_TINY = 1e-12
# Range searched for T; the fitted value is far inside it for any trained model.
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N x classes) rescaled by ``temperature`` (> 1 makes them less sure)."""
    log_p = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _TINY, 1.0))
    return np.exp(log_softmax(log_p / temperature, axis=1))


def negative_log_likelihood(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (class indices ``y_true``)."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(picked, _TINY, 1.0))))


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``y_true``."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(
            apply_temperature(probabilities, np.exp(log_t)), y_true
        ),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
    )
    return float(np.exp(result.x))


def reliability_table(
    probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    """Per equal-width confidence bin (lower, upper]: mean confidence, accuracy and number of
    patterns, with the top-1 class's probability as confidence (the reliability diagram)."""
    import pandas as pd

    confidence = np.max(probabilities, axis=1)
    correct = np.argmax(probabilities, axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    table = pd.DataFrame({"bin": bins, "confidence": confidence, "correct": correct})
    return (
        table.groupby("bin")
        .agg(
            confidence=("confidence", "mean"),
            accuracy=("correct", "mean"),
            patterns=("correct", "size"),
        )
        .reset_index()
    )


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = 15
) -> float:
    """ECE: |accuracy - confidence| over the reliability table's bins, weighted by patterns."""
    table = reliability_table(probabilities, y_true, n_bins)
    gaps = (table["accuracy"] - table["confidence"]).abs()
    return float((gaps * table["patterns"]).sum() / table["patterns"].sum())


def accuracy_coverage(probabilities: np.ndarray, y_true: np.ndarray) -> pd.DataFrame:
    """Accuracy on the patterns whose confidence is at least each threshold, against the
    fraction of patterns kept (coverage): one row per distinct confidence, most sure first."""
    import pandas as pd

    confidence = np.max(probabilities, axis=1)
    correct = np.argmax(probabilities, axis=1) == y_true
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, len(order) + 1)
    accuracy = np.cumsum(correct[order]) / kept
    table = pd.DataFrame(
        {
            "threshold": confidence[order],
            "coverage": kept / len(order),
            "accuracy": accuracy,
        }
    )
    # Ties share a threshold: keep the row that includes all of them.
    return table.drop_duplicates("threshold", keep="last").reset_index(drop=True)
