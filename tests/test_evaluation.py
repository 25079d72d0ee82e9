import numpy as np
import pytest

from xrdsym.evaluation import classification_metrics, confusion, metrics_table, top_k_accuracy


def test_metrics_by_hand():
    classes = ["cubic", "hexagonal", "triclinic"]
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 1])
    metrics = classification_metrics(y_true, y_pred, classes)
    assert metrics["n_test"] == 6
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    cubic = metrics["per_class"]["cubic"]
    assert cubic["precision"] == pytest.approx(2 / 3)
    assert cubic["recall"] == pytest.approx(2 / 3)
    assert cubic["support"] == 3
    hexagonal = metrics["per_class"]["hexagonal"]
    assert hexagonal["precision"] == pytest.approx(1 / 3) and hexagonal["recall"] == 0.5
    assert metrics["per_class"]["triclinic"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    f1 = [2 / 3, 2 * (1 / 3 * 0.5) / (1 / 3 + 0.5), 0.0]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert metrics["weighted_f1"] == pytest.approx(np.average(f1, weights=[3, 2, 1]))


def test_confusion_rows_are_true_classes():
    matrix = confusion(np.array([0, 0, 1]), np.array([1, 0, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_table_has_a_row_per_class_and_the_averages():
    metrics = classification_metrics(
        np.array([0, 1, 1]), np.array([0, 1, 0]), ["cubic", "trigonal"]
    )
    table = metrics_table(metrics).splitlines()
    assert table[2] == "| cubic | 0.50 | 1.00 | 0.67 | 1 |"
    assert table[3] == "| trigonal | 1.00 | 0.50 | 0.67 | 2 |"
    assert table[4] == "| **accuracy** | | | 0.67 | 3 |"


def test_top_k_accuracy_by_hand():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    y_true = np.array([1, 0, 0])  # second, third and third most probable
    assert top_k_accuracy(probabilities, y_true, 1) == 0.0
    assert top_k_accuracy(probabilities, y_true, 2) == pytest.approx(1 / 3)
    assert top_k_accuracy(probabilities, y_true, 3) == 1.0
