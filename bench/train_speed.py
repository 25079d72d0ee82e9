"""Benchmark the training input pipeline: samples/s of the real training loop against the same
model trained on random tensors of the same shape already in memory (the ceiling).

    python bench/train_speed.py --steps 40 --repeats 5 --out bench/results/train.json

Run after `dvc repro` (it reads data/patterns, and data/images when the images stage drew
them). Each case trains a fresh model for ``--steps`` batches after a warm-up (graph tracing)
with Keras' own fit loop, the way the train stage does:

- cnn1d, resnet1d: the stored patterns (numpy arrays cut into batches by Keras);
- cnn1d_augmented, resnet1d_augmented: batches made afresh from the peak lists (params
  train.augment, defaults), through the input transform (train.preprocess);
- mobilenetv2: the images stage's array store (only if data/images/images.npy exists);
- mobilenetv2_224: the paper's full-size network (alpha 1.0, 224 x 224), ceiling only, for the
  cost of the paper profile.

A ratio near 1 means the model, not the input pipeline, sets the pace. For the augmented cases
it also gives the milliseconds one thread takes to make a batch, next to the training step's
(ceiling): on a CPU the two share the cores, so that share is what a ratio below 1 costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import yaml

from xrdsym.augmentation import AugmentSettings
from xrdsym.inputs import read_split
from xrdsym.io import write_json
from xrdsym.models import build_model
from xrdsym.preprocessing import InputSettings
from xrdsym.stages.images import IMAGES_FILE
from xrdsym.stages.train import augmented_inputs
from xrdsym.training import FreshBatches

CLASSES = ["cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal", "triclinic"]
CLASSES += ["trigonal"]
BATCH = 32


def _device() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax: {jax.devices()[0].device_kind}"
    if backend == "torch":
        import torch

        return f"torch: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"tensorflow: {gpus[0].name if gpus else 'cpu'}"


def _fitter(model: keras.Model, data: Any, labels: Any, steps: int) -> Callable[[], float]:
    """Compile ``model`` and trace its graph with one warm-up fit on ``data`` (arrays or a
    PyDataset); returns a function giving samples/s of ``model.fit`` over ``steps`` batches."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if isinstance(data, FreshBatches):
        model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)

        def fit() -> None:
            model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    else:
        n = steps * BATCH
        model.fit(data[: 2 * BATCH], labels[: 2 * BATCH], batch_size=BATCH, verbose=0)

        def fit() -> None:
            model.fit(data[:n], labels[:n], batch_size=BATCH, epochs=1, verbose=0)

    def samples_per_second() -> float:
        start = time.perf_counter()
        fit()
        return steps * BATCH / (time.perf_counter() - start)

    return samples_per_second


def _case(
    name: str,
    model_name: str,
    data: Any,
    labels: Any,
    shape: tuple[int, ...],
    settings: dict,
    steps: int,
    repeats: int,
) -> dict[str, Any]:
    heads = {"classes": 7}
    keras.utils.set_random_seed(0)
    model = build_model(model_name, shape, heads, settings)
    real = _fitter(model, data, labels, steps)
    # The ceiling: the same model on random tensors of the same shape, already in memory.
    rng = np.random.default_rng(0)
    random_x = keras.ops.convert_to_tensor(rng.random((steps * BATCH, *shape), np.float32))
    random_y = keras.ops.convert_to_tensor(rng.integers(0, 7, steps * BATCH))
    keras.utils.set_random_seed(0)
    ceiling = _fitter(build_model(model_name, shape, heads, settings), random_x, random_y, steps)
    # On this shared CPU one measurement of either was off by up to 1.7x, in spells longer
    # than a measurement: so each real one is paired with the ceiling measured next to it
    # (which of the two goes first alternates), and the ratio is the median of the pairs'.
    speeds = []
    for repeat in range(repeats):
        first, second = (ceiling, real) if repeat % 2 else (real, ceiling)
        measured = {first: first(), second: second()}
        speeds.append((measured[real], measured[ceiling]))
    ratios = [a / b for a, b in speeds]
    ratio = float(np.median(ratios))
    real_speed = float(np.median([speed for speed, _ in speeds]))
    ceiling_speed = float(np.median([speed for _, speed in speeds]))
    print(
        f"{name}: {real_speed:.1f} samples/s, ceiling {ceiling_speed:.1f}, ratio {ratio:.2f}"
        f" (pairs {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return {
        "samples_per_second": round(real_speed, 1),
        "random_tensor_samples_per_second": round(ceiling_speed, 1),
        "ratio": round(ratio, 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "repeats": [[round(a, 1), round(b, 1)] for a, b in speeds],
        "parameters": model.count_params(),
    }


def _input_cost(batches: FreshBatches, steps: int) -> float:
    """Milliseconds one thread takes to make a batch of ``batches`` (median over ``steps``),
    nothing else running: the CPU time the augmentation takes from the model's."""
    times = []
    for index in range(steps):
        start = time.perf_counter()
        batches[index % len(batches)]
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    parser.add_argument("--images", type=Path, default=Path("data/images"))
    parser.add_argument("--steps", type=int, default=40, help="batches of 32 per measurement")
    parser.add_argument(
        "--repeats", type=int, default=5, help="measurement pairs, real and ceiling (median ratio)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    settings = params["train"]
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": _device(),
        "keras_backend": keras.backend.backend(),
        "batch_size": BATCH,
        "steps": args.steps,
        "repeats": args.repeats,
        "cases": {},
    }
    cases = results["cases"]
    x, y, _ = read_split("pattern", args.images, args.patterns, "train", CLASSES)
    augment = AugmentSettings.from_params({**settings["augment"], "enabled": True})
    pattern_settings = json.loads((args.patterns / "settings.json").read_text())
    # As the train stage feeds it: perturbed afresh, then through the model's input transform.
    make_inputs = augmented_inputs(
        [args.patterns],
        "train",
        pattern_settings,
        CLASSES,
        "crystal_system",
        augment,
        InputSettings.from_params(settings["preprocess"]),
    )
    for model_name in ("cnn1d", "resnet1d"):
        cases[model_name] = _case(
            model_name, model_name, x, y, x.shape[1:], settings, args.steps, args.repeats
        )
        batches = FreshBatches(
            y, np.ones(len(y)), make_inputs, BATCH, seed=0, workers=settings["augment"]["workers"]
        )
        name = f"{model_name}_augmented"
        cases[name] = _case(
            name, model_name, batches, None, x.shape[1:], settings, args.steps, args.repeats
        )
        cases[name]["input_ms_per_batch"] = round(_input_cost(batches, args.steps), 1)
        step_ms = 1e3 * BATCH / cases[name]["random_tensor_samples_per_second"]
        cases[name]["ceiling_ms_per_batch"] = round(step_ms, 1)
        print(
            f"{name}: {cases[name]['input_ms_per_batch']} ms to make a batch in one thread,"
            f" {step_ms:.1f} ms per training step (ceiling, all cores)"
        )

    if (args.images / IMAGES_FILE).exists():
        images, image_labels, _ = read_split("image", args.images, args.patterns, "train", CLASSES)
        cases["mobilenetv2"] = _case(
            "mobilenetv2",
            "mobilenetv2",
            images,
            image_labels,
            images.shape[1:],
            settings,
            args.steps,
            args.repeats,
        )
    paper = {**settings, "alpha": 1.0}
    rng = np.random.default_rng(0)
    full = rng.integers(0, 256, (args.steps * BATCH, 224, 224, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = build_model("mobilenetv2", full.shape[1:], {"classes": 7}, paper)
    speed = _fitter(model, full, rng.integers(0, 7, len(full)), args.steps)()
    cases["mobilenetv2_224_alpha1_ceiling"] = {
        "random_tensor_samples_per_second": round(speed, 1),
        "parameters": model.count_params(),
    }
    print(f"mobilenetv2 224 x 224, alpha 1.0: {speed:.1f} samples/s on random tensors")
    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
