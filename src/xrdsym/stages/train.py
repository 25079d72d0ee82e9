"""Stage 4, train: fine-tune MobileNetV2 on the training images, choose by validation loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
from dvclive import Live

from xrdsym import __version__
from xrdsym.imaging import read_image_split
from xrdsym.io import atomic_path, write_json
from xrdsym.models import build_mobilenetv2
from xrdsym.stages.images import SETTINGS_FILE as IMAGE_SETTINGS_FILE
from xrdsym.training import TrainSettings, fit

PARAMS = ("seed", "classes", "model", "train")
MODEL_FILE = "model.keras"
META_FILE = "model.json"


def run(params: dict[str, Any], images_dir: Path, model_dir: Path, live_dir: Path) -> None:
    """Write ``model_dir/model.keras`` and ``model_dir/model.json`` (what preprocessing and
    classes the model expects); log per-epoch loss and accuracy with DVCLive in ``live_dir``."""
    section = params["train"]
    classes = list(params["classes"])
    keras.utils.set_random_seed(params["seed"])
    preprocessing = json.loads((images_dir / IMAGE_SETTINGS_FILE).read_text())
    x_train, y_train, _ = read_image_split(images_dir, "train", classes)
    x_val, y_val, _ = read_image_split(images_dir, "val", classes)
    model = build_mobilenetv2(
        preprocessing["image"]["size"],
        len(classes),
        weights=section["weights"],
        alpha=section["alpha"],
        dropout=section["dropout"],
        batchnorm_momentum=section["batchnorm_momentum"],
    )
    settings = TrainSettings(
        epochs=section["epochs"],
        batch_size=section["batch_size"],
        learning_rate=section["learning_rate"],
        patience=section["patience"],
    )
    print(
        f"train: {len(x_train)} training and {len(x_val)} validation images, "
        f"{model.count_params():,} parameters, Keras backend {keras.backend.backend()}"
    )
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        result = fit(model, (x_train, y_train), (x_val, y_val), settings, live)
        # DVCLive's summary holds the last epoch; record which epoch's weights were kept.
        live.summary["best_epoch"] = result.best_epoch
        live.summary["best_val_loss"] = result.best_val_loss
        live.summary["epochs_run"] = result.epochs_run
        live.summary["train_seconds"] = round(result.seconds, 1)
        live.summary["n_train"] = len(x_train)
        live.summary["n_val"] = len(x_val)
    meta = {
        "xrdsym_version": __version__,
        "model": params["model"],
        "classes": classes,
        "preprocessing": preprocessing,
        "train": section,
        "keras_backend": keras.backend.backend(),
    }
    with atomic_path(model_dir) as tmp:
        tmp.mkdir()
        model.save(tmp / MODEL_FILE)
        write_json(tmp / META_FILE, meta)
    print(
        f"train: {result.seconds:.0f} s, kept epoch {result.best_epoch} of {result.epochs_run} "
        f"(validation loss {result.best_val_loss:.3f}) -> {model_dir}"
    )
