import numpy as np
import pytest

from xrdsym.calibration import (
    accuracy_coverage,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
)


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_scales_logits_and_keeps_the_predicted_class():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)) * 3
    probabilities = _softmax(logits)
    scaled = apply_temperature(probabilities, 2.0)
    assert np.allclose(scaled, _softmax(logits / 2.0), atol=1e-9)
    assert np.array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
    assert np.allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-9)


def test_fit_temperature_recovers_overconfidence():
    # Labels drawn from softmax(z); the model reports softmax(3 z): T should come out near 3.
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20000, 5))
    y_true = np.array([rng.choice(5, p=p) for p in _softmax(logits)])
    overconfident = _softmax(3 * logits)
    temperature = fit_temperature(overconfident, y_true)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(overconfident, y_true)
    after = expected_calibration_error(apply_temperature(overconfident, temperature), y_true)
    assert after < 0.02 < before


def test_ece_by_hand():
    # Two bins of 15: confidences 0.9 (2 patterns, 1 right) and 0.6 (2 patterns, 2 right).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y_true = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probabilities, y_true) == pytest.approx(
        (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    )
    table = reliability_table(probabilities, y_true)
    assert table["patterns"].tolist() == [2, 2]
    assert table["accuracy"].tolist() == [1.0, 0.5]


def test_accuracy_coverage_is_accuracy_of_the_most_confident():
    probabilities = np.array([[0.95, 0.05], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    y_true = np.array([0, 1, 1, 0])
    table = accuracy_coverage(probabilities, y_true)
    assert table["coverage"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert table["accuracy"].tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.75])
    assert table["threshold"].is_monotonic_decreasing
