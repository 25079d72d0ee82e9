"""Stage 4, train: fit the classifier on the training split, choose the epoch by validation
loss, calibrate its probabilities on the validation split, save a self-describing model.

A 1D model reads every pattern through the input transform of ``train.preprocess``
(xrdsym.preprocessing), recorded in model.json for ``predict``. With augmentation the
validation split is augmented too, once, with a fixed seed: early stopping and the
temperature then see measurement-like patterns, and the same ones every epoch.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
from dvclive import Live
from sklearn.utils.class_weight import compute_class_weight

from xrdsym import __version__
from xrdsym.augmentation import AugmentSettings, peak_reflections
from xrdsym.calibration import apply_temperature, fit_temperature, negative_log_likelihood
from xrdsym.config import MODEL_INPUTS
from xrdsym.errors import ParamsError
from xrdsym.inference import INFERENCE_FILE, save_inference
from xrdsym.inputs import (
    augmented_pattern_inputs,
    inputs_made_once,
    preprocessed_pattern_split,
    read_peak_split,
    read_split,
)
from xrdsym.io import atomic_path, write_json
from xrdsym.measured import parse_wavelength
from xrdsym.models import build_model
from xrdsym.prediction import META_FILE, MODEL_FILE, MODEL_FORMAT, pattern_grid
from xrdsym.preprocessing import InputSettings
from xrdsym.stages.images import SETTINGS_FILE as IMAGE_SETTINGS_FILE
from xrdsym.stages.patterns import SETTINGS_FILE as PATTERN_SETTINGS_FILE
from xrdsym.symmetry import target_classes
from xrdsym.training import FreshBatches, TrainSettings, fit, mixed_precision

PARAMS = ("seed", "classes", "target", "model", "train")
# Seeds the validation split's one augmentation with ``seed``: far above any epoch number, so
# its streams are never those of a training batch (seeded by seed, epoch, batch).
VALIDATION_STREAM = 2**31


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """Per-class loss weights: ``balanced`` weighs each class by n / (classes * its count), so
    that every class counts as much in the loss; ``none`` gives None (all weights 1)."""
    if mode == "none":
        return None
    # A class absent from the training split has no count to weigh by; it keeps weight 1.
    weights = dict.fromkeys(range(n_classes), 1.0)
    present = np.unique(labels)
    balanced = compute_class_weight("balanced", classes=present, y=labels)
    weights.update(zip(present.tolist(), balanced.tolist(), strict=True))
    return weights


def augmented_inputs(
    patterns_dir: Path,
    split: str,
    pattern_settings: dict[str, Any],
    classes: list[str],
    target: str,
    augment: AugmentSettings,
    preprocess: InputSettings,
) -> tuple[functools.partial[np.ndarray], np.ndarray]:
    """What makes a split's model inputs from its peak lists, ``make_inputs(positions, rng)``:
    perturbed on the patterns stage's grid and wavelength, then through the input transform;
    and the split's class indices."""
    table, labels, _ = read_peak_split(patterns_dir, split, classes, target=target)
    wavelength = parse_wavelength(pattern_settings["wavelength"])
    make_inputs = functools.partial(
        augmented_pattern_inputs,
        table=table,
        grid=pattern_grid(pattern_settings),
        wavelength_angstrom=wavelength,
        settings=augment,
        # Every reflection of every peak, found once: preferred orientation needs them all.
        reflections=peak_reflections(table, wavelength),
        preprocess=preprocess,
    )
    return make_inputs, labels


def run(
    params: dict[str, Any],
    images_dir: Path,
    patterns_dir: Path,
    model_dir: Path,
    live_dir: Path,
) -> None:
    """Write ``model_dir/model.keras``, its numpy export ``inference.npz`` where the model has
    one, and ``model_dir/model.json`` (target, classes, preprocessing, calibration
    temperature); log per-epoch loss and accuracy with DVCLive in ``live_dir``."""
    section = params["train"]
    target = params["target"]
    classes = target_classes(target, params["classes"])
    input_kind = MODEL_INPUTS[params["model"]]
    augment = AugmentSettings.from_params(section["augment"])
    if augment is not None and input_kind == "image":
        raise ParamsError(
            f"params.yaml: train.augment.enabled=true is invalid for model {params['model']}: "
            "it trains on the images stage's fixed images; augmentation is for cnn1d"
        )
    keras.utils.set_random_seed(params["seed"])
    pattern_settings = json.loads((patterns_dir / PATTERN_SETTINGS_FILE).read_text())
    image_settings = None
    if input_kind == "image":
        image_settings = json.loads((images_dir / IMAGE_SETTINGS_FILE).read_text())["image"]
    # An image model reads the images stage's fixed images; train.preprocess is for cnn1d.
    preprocess = (
        InputSettings.from_params(section["preprocess"]) if input_kind == "pattern" else None
    )
    grid = pattern_grid(pattern_settings)
    train_data: tuple[np.ndarray, np.ndarray] | FreshBatches
    if preprocess is None:
        x_val, y_val, _ = read_split(
            input_kind, images_dir, patterns_dir, "val", classes, target=target
        )
        train_data = read_split(
            input_kind, images_dir, patterns_dir, "train", classes, target=target
        )[:2]
    elif augment is None:
        x_val, y_val, _ = preprocessed_pattern_split(
            patterns_dir, "val", classes, grid, preprocess, target=target
        )
        train_data = preprocessed_pattern_split(
            patterns_dir, "train", classes, grid, preprocess, target=target
        )[:2]
    else:
        split_inputs = functools.partial(
            augmented_inputs,
            patterns_dir,
            pattern_settings=pattern_settings,
            classes=classes,
            target=target,
            augment=augment,
            preprocess=preprocess,
        )
        make_train, y_train = split_inputs("train")
        # Threads, not processes: nothing is copied or pickled, and numpy releases the GIL in
        # most of its array loops.
        train_data = FreshBatches(
            y_train,
            make_train,
            section["batch_size"],
            params["seed"],
            workers=section["augment"]["workers"],
        )
        make_val, y_val = split_inputs("val")
        x_val = inputs_made_once(make_val, len(y_val), (params["seed"], VALIDATION_STREAM))
    y_train = train_data.labels if isinstance(train_data, FreshBatches) else train_data[1]
    # float16 compute with float32 weights (faster on GPUs with tensor cores, slower on a
    # CPU), for this model only: Keras' dtype policy is global.
    with mixed_precision(section["mixed_precision"]):
        model = build_model(params["model"], x_val.shape[1:], len(classes), section)
        settings = TrainSettings(
            epochs=section["epochs"],
            batch_size=section["batch_size"],
            learning_rate=section["learning_rate"],
            patience=section["patience"],
            class_weight=class_weights(y_train, len(classes), section["class_weight"]),
        )
        print(
            f"train: {params['model']} on {len(y_train)} training "
            f"{'patterns augmented afresh every epoch' if augment else input_kind + 's'} and "
            f"{len(x_val)} validation {input_kind}s{' augmented once' if augment else ''}, "
            f"{model.count_params():,} parameters, "
            f"Keras backend {keras.backend.backend()}"
        )
        with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
            result = fit(model, train_data, (x_val, y_val), settings, live)
            val_probabilities = model.predict(x_val, batch_size=settings.batch_size, verbose=0)
            temperature = fit_temperature(val_probabilities, y_val)
            # DVCLive's summary holds the last epoch; record which epoch's weights were kept.
            live.summary["best_epoch"] = result.best_epoch
            live.summary["best_val_loss"] = result.best_val_loss
            live.summary["epochs_run"] = result.epochs_run
            live.summary["train_seconds"] = round(result.seconds, 1)
            live.summary["n_train"] = len(y_train)
            live.summary["n_val"] = len(x_val)
            live.summary["temperature"] = round(temperature, 4)
            live.summary["val_nll_calibrated"] = negative_log_likelihood(
                apply_temperature(val_probabilities, temperature), y_val
            )
    meta = {
        "format": MODEL_FORMAT,
        "xrdsym_version": __version__,
        "model": params["model"],
        "input": input_kind,
        "target": target,
        "classes": classes,
        "preprocessing": {
            "pattern": pattern_settings,
            "image": image_settings,
            "inputs": None if preprocess is None else preprocess.to_json(),
        },
        "temperature": temperature,
        "train": section,
        # Identifies the run's settings: the train stage's params and the preprocessing.
        "params_hash": hashlib.sha256(
            json.dumps([params, pattern_settings, image_settings], sort_keys=True).encode()
        ).hexdigest()[:16],
        "keras_backend": keras.backend.backend(),
    }
    with atomic_path(model_dir) as tmp:
        tmp.mkdir()
        model.save(tmp / MODEL_FILE)
        # The numpy export lets `xrdsym predict` answer without starting Keras (1D CNN only).
        save_inference(model, tmp / INFERENCE_FILE)
        write_json(tmp / META_FILE, meta)
    print(
        f"train: {result.seconds:.0f} s, kept epoch {result.best_epoch} of {result.epochs_run} "
        f"(validation loss {result.best_val_loss:.3f}), temperature {temperature:.2f} "
        f"-> {model_dir}"
    )
