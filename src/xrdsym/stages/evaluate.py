"""Stage 5, evaluate: score the model on the held-out test split; the paper's table and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xrdsym.calibration import (
    accuracy_coverage,
    apply_temperature,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_table,
)
from xrdsym.evaluation import classification_metrics, confusion
from xrdsym.inputs import model_inputs, read_split
from xrdsym.io import write_json, write_table
from xrdsym.plots import plot_calibration, plot_class_balance, plot_confusion, plot_example
from xrdsym.prediction import load_classifier
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE, TWO_THETA_FILE

PARAMS: tuple[str, ...] = ()


def run(
    model_dir: Path, images_dir: Path, patterns_dir: Path, metrics_path: Path, plots_dir: Path
) -> None:
    """Write the metrics JSON, the confusion matrix (CSV for DVC, PNG), the calibration
    figures (reliability, accuracy against coverage) and the paper's figures."""
    classifier = load_classifier(model_dir, engine="keras")  # the reference, not the export
    meta, classes = classifier.meta, classifier.classes
    inputs, y_true, ids = read_split(meta["input"], images_dir, patterns_dir, "test", classes)
    raw = classifier.outputs(inputs)
    probabilities = apply_temperature(raw, meta["temperature"])
    y_pred = np.argmax(probabilities, axis=1)

    metrics = classification_metrics(y_true, y_pred, classes)
    metrics["calibration"] = {
        "temperature": meta["temperature"],
        "ece": expected_calibration_error(probabilities, y_true),
        "ece_uncalibrated": expected_calibration_error(raw, y_true),
        "nll": negative_log_likelihood(probabilities, y_true),
        "nll_uncalibrated": negative_log_likelihood(raw, y_true),
    }
    write_json(metrics_path, metrics)
    plots_dir.mkdir(parents=True, exist_ok=True)
    coverage = accuracy_coverage(probabilities, y_true)
    reliability = reliability_table(probabilities, y_true)
    write_table(plots_dir / "accuracy_coverage.csv", coverage)
    write_table(plots_dir / "reliability.csv", reliability)
    plot_calibration(reliability, coverage, plots_dir / "calibration.png")
    names = np.asarray(classes)
    write_table(
        plots_dir / "confusion.csv",
        pd.DataFrame({"id": ids, "actual": names[y_true], "predicted": names[y_pred]}),
    )
    plot_confusion(confusion(y_true, y_pred, len(classes)), classes, plots_dir / "confusion.png")

    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str})
    counts = index["crystal_system"].value_counts().reindex(classes, fill_value=0)
    write_table(
        plots_dir / "class_balance.csv",
        pd.DataFrame({"crystal_system": counts.index, "materials": counts.values}),
    )
    plot_class_balance(counts, plots_dir / "class_balance.png")

    example = int(np.flatnonzero(index["split"] == "test")[0])
    row = index.iloc[example]
    patterns = np.load(patterns_dir / PATTERNS_FILE, mmap_mode="r")
    image_settings = meta["preprocessing"]["image"]
    plot_example(
        np.load(patterns_dir / TWO_THETA_FILE),
        patterns[example],
        model_inputs(patterns[example : example + 1], meta["input"], image_settings)[0],
        f"{row.formula} ({row.crystal_system}, space group {row.space_group})",
        plots_dir / "example_pattern.png",
    )
    print(
        f"evaluate: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
        f"ECE {metrics['calibration']['ece']:.3f} on {metrics['n_test']} test patterns "
        f"-> {metrics_path}"
    )
