"""Stage 5, evaluate: score the model on the held-out test split; the paper's table and figures."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from xrdsym.evaluation import classification_metrics, confusion
from xrdsym.imaging import pattern_image, read_image_split
from xrdsym.io import write_json, write_table
from xrdsym.plots import plot_class_balance, plot_confusion, plot_example
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE, TWO_THETA_FILE
from xrdsym.stages.train import META_FILE, MODEL_FILE

PARAMS: tuple[str, ...] = ()
# Patterns per predict call: bounds memory, whatever the size of the test split.
PREDICT_BATCH = 64


def run(
    model_dir: Path, images_dir: Path, patterns_dir: Path, metrics_path: Path, plots_dir: Path
) -> None:
    """Write the metrics JSON, the confusion matrix (CSV for DVC, PNG) and the paper's figures."""
    meta = json.loads((model_dir / META_FILE).read_text())
    classes = meta["classes"]
    model = keras.saving.load_model(model_dir / MODEL_FILE)
    images, y_true, ids = read_image_split(images_dir, "test", classes)
    probabilities = model.predict(images, batch_size=PREDICT_BATCH, verbose=0)
    y_pred = np.argmax(probabilities, axis=1)

    metrics = classification_metrics(y_true, y_pred, classes)
    write_json(metrics_path, metrics)
    plots_dir.mkdir(parents=True, exist_ok=True)
    names = np.asarray(classes)
    write_table(
        plots_dir / "confusion.csv",
        pd.DataFrame({"id": ids, "actual": names[y_true], "predicted": names[y_pred]}),
    )
    plot_confusion(confusion(y_true, y_pred, len(classes)), classes, plots_dir / "confusion.png")

    index = pd.read_csv(patterns_dir / INDEX_FILE)
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
        pattern_image(patterns[example], image_settings["size"], image_settings["colormap"]),
        f"{row.formula} ({row.crystal_system}, space group {row.space_group})",
        plots_dir / "example_pattern.png",
    )
    print(
        f"evaluate: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
        f"on {metrics['n_test']} test patterns -> {metrics_path}"
    )
