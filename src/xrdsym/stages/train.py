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
import shutil
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
from xrdsym.diffraction import PeakTable
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.hybrid import Combiner
from xrdsym.inference import (
    INFERENCE_FILE,
    PRIMARY_HEAD,
    SPACE_GROUP_HEAD,
    head_outputs,
    save_inference,
)
from xrdsym.inputs import (
    MEASUREMENT_STREAMS,
    augmented_pattern_inputs,
    inputs_made_once,
    preprocessed_pattern_split,
    read_peak_split,
    read_split,
    read_split_labels,
)
from xrdsym.io import atomic_path, write_json
from xrdsym.measured import parse_wavelength
from xrdsym.models import build_model
from xrdsym.prediction import (
    META_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    Classifier,
    load_classifier,
    member_file,
    pattern_grid,
)
from xrdsym.preprocessing import InputSettings
from xrdsym.stages.images import SETTINGS_FILE as IMAGE_SETTINGS_FILE
from xrdsym.stages.index import indexed_ids, read_features, read_index_settings, split_patterns
from xrdsym.stages.patterns import SETTINGS_FILE as PATTERN_SETTINGS_FILE
from xrdsym.symmetry import target_classes
from xrdsym.training import (
    FreshBatches,
    Labels,
    TrainSettings,
    fit,
    head_labels,
    mixed_precision,
    sample_weights,
)

PARAMS = ("seed", "classes", "target", "model", "train")
# Seeds the validation split's one augmentation with ``seed`` (the index stage measures the
# same patterns).
VALIDATION_STREAM = MEASUREMENT_STREAMS["val"]


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


def training_stores(patterns_dir: Path, synthetic_dir: Path, data: str) -> list[Path]:
    """The pattern stores whose training splits the model learns from (params train.data):
    the real structures', the synthesize stage's, or both. Validation and test stay real."""
    return {
        "real": [patterns_dir],
        "synthetic": [synthetic_dir],
        "real_and_synthetic": [patterns_dir, synthetic_dir],
    }[data]


def check_store_settings(stores: list[Path]) -> dict[str, Any]:
    """The patterns stage's settings, shared by every store (a synthetic store simulated on
    another grid or wavelength than the real one is an error naming it)."""
    settings = [json.loads((store / PATTERN_SETTINGS_FILE).read_text()) for store in stores]
    for store, other in zip(stores[1:], settings[1:], strict=True):
        if other != settings[0]:
            raise XrdsymError(
                f"{store}: simulated with other settings than {stores[0]}; "
                "re-run `dvc repro synthesize`"
            )
    return settings[0]


def split_labels(
    stores: list[Path], split: str, classes: list[str], target: str, space_groups: list[str] | None
) -> Labels:
    """The class indices of ``split`` in every store, one after the other, per head."""
    parts = [
        read_split_labels(store, split, classes, target=target, space_groups=space_groups)
        for store in stores
    ]
    if isinstance(parts[0], dict):
        return {head: np.concatenate([part[head] for part in parts]) for head in parts[0]}
    return np.concatenate(parts)


def augmented_inputs(
    stores: list[Path],
    split: str,
    pattern_settings: dict[str, Any],
    classes: list[str],
    target: str,
    augment: AugmentSettings,
    preprocess: InputSettings,
) -> functools.partial[np.ndarray]:
    """What makes the model inputs of a split of ``stores`` (one after the other) from their
    peak lists, ``make_inputs(positions, rng)``: perturbed on the patterns stage's grid and
    wavelength, then through the input transform."""
    table = PeakTable.concatenate(
        [read_peak_split(store, split, classes, target=target)[0] for store in stores]
    )
    wavelength = parse_wavelength(pattern_settings["wavelength"])
    return functools.partial(
        augmented_pattern_inputs,
        table=table,
        grid=pattern_grid(pattern_settings),
        wavelength_angstrom=wavelength,
        settings=augment,
        # Every reflection of every peak, found once: preferred orientation needs them all.
        reflections=peak_reflections(table, wavelength),
        preprocess=preprocess,
    )


def fit_combiner(
    classifier: Classifier, patterns_dir: Path, index_dir: Path
) -> tuple[Combiner, dict[str, Any]] | None:
    """The combiner of ``classifier``'s network and the indexing, fitted on the validation
    patterns the index stage indexed in ``index_dir``: each measured again as the stage
    measured it, the network's calibrated probabilities of it beside its features; with the
    peak and search settings predict is to index with. None, said in one line, when the
    patterns cannot fit one; XrdsymError when the index stage indexed none, or other classes.
    The class weights are the network's (``train.class_weight``)."""
    classes = classifier.classes
    made = read_index_settings(index_dir, classes)
    if made["per_split"]["val"] == 0 or not indexed_ids(index_dir, "val"):
        raise XrdsymError(
            f"{index_dir}: no validation patterns indexed (index.per_split.val); the combiner "
            "is fitted on them"
        )
    augment = None if made["augment"] is None else AugmentSettings.from_params(made["augment"])
    ids, patterns, _ = split_patterns(
        patterns_dir,
        "val",
        classes,
        "crystal_system",
        augment,
        made["seed"],
        made["per_split"]["val"],
    )
    features, rows = read_features(index_dir, "val", ids)
    y_val = np.array([classes.index(name) for name in rows["crystal_system"]])
    weights = classifier.meta.get("train", {}).get("class_weight", "balanced")
    try:
        combiner = Combiner.fit(
            classifier.probabilities(patterns), features, y_val, classes, made["seed"], weights
        )
    except ValueError as exc:
        print(f"train: no combiner: {exc} among the {len(ids)} validation patterns")
        return None
    summary = combiner.summary
    held_out = summary["out_of_fold_accuracy"]
    print(
        f"train: combiner of network and indexing on {summary['n_fit']} validation patterns: "
        "out-of-fold accuracy "
        + ("not measured (too few patterns)" if held_out is None else f"{held_out:.3f}")
        + f" (network alone {summary['network_accuracy']:.3f}), temperature "
        f"{summary['temperature']:.2f}"
    )
    return combiner, {"peaks": made["peaks"], "index": made["index"]}


def combine_existing(model_dir: Path, patterns_dir: Path, index_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir``: the trained model in ``model_dir`` with a combiner fitted on the
    validation patterns the index stage indexed in ``index_dir`` (`xrdsym combine`).
    ``patterns_dir`` must be the store the network was trained on (its validation split
    then never trained it), simulated as its model.json records."""
    classifier = load_classifier(model_dir)
    meta = dict(classifier.meta)
    if meta.get("target", "crystal_system") != "crystal_system":
        raise XrdsymError(f"{model_dir}: a combiner is for a crystal-system model")
    stored = json.loads((patterns_dir / PATTERN_SETTINGS_FILE).read_text())
    if stored != meta["preprocessing"]["pattern"]:
        raise XrdsymError(
            f"{patterns_dir}: simulated with other settings than {model_dir} was trained on"
        )
    combiner = fit_combiner(classifier, patterns_dir, index_dir)
    if combiner is None:
        raise XrdsymError(f"{index_dir}: too few validation patterns to fit a combiner")
    fitted, search = combiner
    with atomic_path(out_dir) as tmp:
        shutil.copytree(model_dir, tmp)
        meta["combiner"] = fitted.save(tmp) | search
        write_json(tmp / META_FILE, meta)
    print(f"combine: {model_dir} with a combiner -> {out_dir}")


def model_heads(params: dict[str, Any]) -> dict[str, list[str]]:
    """The model's softmax heads, name -> classes: the target's, and the space groups of the
    crystal systems with train.space_group_head."""
    target, section = params["target"], params["train"]
    heads = {PRIMARY_HEAD: target_classes(target, params["classes"])}
    if section["space_group_head"]:
        if target != "crystal_system" or MODEL_INPUTS[params["model"]] != "pattern":
            raise ParamsError(
                "params.yaml: train.space_group_head=true is for a 1D model (cnn1d, resnet1d) "
                f"with target crystal_system, not {params['model']} with target {target}"
            )
        heads[SPACE_GROUP_HEAD] = target_classes("space_group", params["classes"])
    return heads


def run(
    params: dict[str, Any],
    images_dir: Path,
    patterns_dir: Path,
    synthetic_dir: Path,
    model_dir: Path,
    live_dir: Path,
    index_dir: Path | None = None,
) -> None:
    """Write ``model_dir/model.keras``, its numpy export ``inference.npz`` where the model has
    one, and ``model_dir/model.json`` (target, heads, preprocessing, calibration temperatures);
    an ensemble (train.ensemble) writes ``model_<k>.keras`` and ``inference_<k>.npz`` for its
    members after the first. Log per-epoch loss and accuracy with DVCLive in ``live_dir``
    (the first member's curves; the summary has every member's). With train.combine and
    target crystal_system, also fit the combiner of the network and the indexing
    (:mod:`xrdsym.hybrid`) on the validation split indexed in ``index_dir``."""
    section = params["train"]
    target = params["target"]
    heads = model_heads(params)
    classes = heads[PRIMARY_HEAD]
    space_groups = heads.get(SPACE_GROUP_HEAD)
    input_kind = MODEL_INPUTS[params["model"]]
    augment = AugmentSettings.from_params(section["augment"])
    if augment is not None and input_kind == "image":
        raise ParamsError(
            f"params.yaml: train.augment.enabled=true is invalid for model {params['model']}: "
            "it trains on the images stage's fixed images; augmentation is for 1D models"
        )
    if section["data"] != "real" and input_kind == "image":
        raise ParamsError(
            f"params.yaml: train.data={section['data']} is for 1D models: the images stage "
            "draws the real structures' patterns only"
        )
    stores = training_stores(patterns_dir, synthetic_dir, section["data"])
    pattern_settings = check_store_settings(
        [patterns_dir, *(store for store in stores if store != patterns_dir)]
    )
    image_settings = None
    if input_kind == "image":
        image_settings = json.loads((images_dir / IMAGE_SETTINGS_FILE).read_text())["image"]
    # An image model reads the images stage's fixed images; train.preprocess is for 1D models.
    preprocess = (
        InputSettings.from_params(section["preprocess"]) if input_kind == "pattern" else None
    )
    grid = pattern_grid(pattern_settings)
    labels = functools.partial(
        split_labels, classes=classes, target=target, space_groups=space_groups
    )
    y_train, y_val = labels(stores, "train"), labels([patterns_dir], "val")
    make_train = None
    if preprocess is None:
        x_val = read_split(input_kind, images_dir, patterns_dir, "val", classes, target=target)[0]
        x_train = read_split(input_kind, images_dir, patterns_dir, "train", classes, target=target)[
            0
        ]
    elif augment is None:
        x_val, x_train = (
            np.concatenate(
                [
                    preprocessed_pattern_split(
                        store, split, classes, grid, preprocess, target=target
                    )[0]
                    for store in split_stores
                ]
            )
            for split, split_stores in (("val", [patterns_dir]), ("train", stores))
        )
    else:
        split_inputs = functools.partial(
            augmented_inputs,
            pattern_settings=pattern_settings,
            classes=classes,
            target=target,
            augment=augment,
            preprocess=preprocess,
        )
        make_train = split_inputs(stores, "train")
        x_val = inputs_made_once(
            split_inputs([patterns_dir], "val"),
            len(head_labels(y_val)),
            (params["seed"], VALIDATION_STREAM),
        )
    weights = sample_weights(
        head_labels(y_train),
        class_weights(head_labels(y_train), len(classes), section["class_weight"]),
    )
    settings = TrainSettings(
        epochs=section["epochs"],
        batch_size=section["batch_size"],
        learning_rate=section["learning_rate"],
        patience=section["patience"],
        learning_rate_patience=section["learning_rate_patience"],
        loss_weights={PRIMARY_HEAD: 1.0}
        | ({SPACE_GROUP_HEAD: section["space_group_loss_weight"]} if space_groups else {}),
    )
    n_train, n_val = len(weights), len(x_val)
    combine = section["combine"] and target == "crystal_system"
    if section["combine"] and not combine:
        print("train: train.combine is for target crystal_system; training without the combiner")
    if combine:
        # Checked before training: a missing or mismatched index stage is found at once.
        if index_dir is None:
            raise XrdsymError("train.combine=true needs the index stage's output (--index)")
        read_index_settings(index_dir, classes)
    members, models = [], []
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        for member in range(section["ensemble"]):
            # Each member its own initial weights, batch order and augmentation draws.
            seed = params["seed"] + member
            keras.utils.set_random_seed(seed)
            train_data = (
                (x_train, y_train, weights)
                if make_train is None
                # Threads, not processes: nothing is copied or pickled, and numpy releases
                # the GIL in most of its array loops.
                else FreshBatches(
                    y_train,
                    weights,
                    make_train,
                    section["batch_size"],
                    seed,
                    workers=section["augment"]["workers"],
                )
            )
            # float16 compute with float32 weights (faster on GPUs with tensor cores, slower
            # on a CPU), for this model only: Keras' dtype policy is global.
            with mixed_precision(section["mixed_precision"]):
                model = build_model(
                    params["model"], x_val.shape[1:], {h: len(c) for h, c in heads.items()}, section
                )
                print(
                    f"train: {params['model']} member {member + 1} of {section['ensemble']} on "
                    f"{n_train} training "
                    f"{'patterns augmented afresh every epoch' if augment else input_kind + 's'} "
                    f"({', '.join(map(str, stores))}) and {n_val} validation {input_kind}s"
                    f"{' augmented once' if augment else ''}, heads {', '.join(heads)}, "
                    f"{model.count_params():,} parameters, "
                    f"Keras backend {keras.backend.backend()}"
                )
                # The curves are the first member's: DVCLive's steps are one sequence.
                result = fit(
                    model, train_data, (x_val, y_val), settings, live if member == 0 else None
                )
                outputs = head_outputs(
                    model.predict(x_val, batch_size=settings.batch_size, verbose=0)
                )
            temperatures = {
                head: fit_temperature(outputs[head], head_labels(y_val, head)) for head in heads
            }
            members.append(
                {
                    "model": member_file(MODEL_FILE, member),
                    "inference": member_file(INFERENCE_FILE, member),
                    "seed": seed,
                    "temperatures": temperatures,
                    "best_epoch": result.best_epoch,
                    "best_val_loss": result.best_val_loss,
                    "epochs_run": result.epochs_run,
                    "train_seconds": round(result.seconds, 1),
                    "val_nll_calibrated": negative_log_likelihood(
                        apply_temperature(outputs[PRIMARY_HEAD], temperatures[PRIMARY_HEAD]),
                        head_labels(y_val),
                    ),
                }
            )
            models.append(model)
            print(
                f"train: member {member + 1}: {result.seconds:.0f} s, kept epoch "
                f"{result.best_epoch} of {result.epochs_run} (validation loss "
                f"{result.best_val_loss:.3f}), temperatures "
                + ", ".join(f"{h} {t:.2f}" for h, t in temperatures.items())
            )
        # DVCLive's summary holds the first member's last epoch; record what was kept.
        live.summary["best_epoch"] = members[0]["best_epoch"]
        live.summary["epochs_run"] = members[0]["epochs_run"]
        live.summary["train_seconds"] = round(sum(m["train_seconds"] for m in members), 1)
        live.summary["n_train"] = n_train
        live.summary["n_val"] = n_val
        live.summary["temperature"] = round(members[0]["temperatures"][PRIMARY_HEAD], 4)
        live.summary["val_nll_calibrated"] = members[0]["val_nll_calibrated"]
        live.summary["members"] = members
    meta = {
        "format": MODEL_FORMAT,
        "xrdsym_version": __version__,
        "model": params["model"],
        "input": input_kind,
        "target": target,
        "classes": classes,
        "heads": heads,
        "members": members,
        "preprocessing": {
            "pattern": pattern_settings,
            "image": image_settings,
            "inputs": None if preprocess is None else preprocess.to_json(),
        },
        "train": section,
        # Identifies the run's settings: the train stage's params and the preprocessing.
        "params_hash": hashlib.sha256(
            json.dumps([params, pattern_settings, image_settings], sort_keys=True).encode()
        ).hexdigest()[:16],
        "keras_backend": keras.backend.backend(),
    }
    combiner = None
    if combine:
        # The combiner reads the network as predict will: every member, its temperature.
        combiner = fit_combiner(Classifier(models, meta, model_dir), patterns_dir, index_dir)
    with atomic_path(model_dir) as tmp:
        tmp.mkdir()
        for model, member in zip(models, members, strict=True):
            model.save(tmp / member["model"])
            # The numpy export lets `xrdsym predict` answer without starting Keras.
            if not save_inference(model, tmp / member["inference"]):
                member["inference"] = None
        if combiner is not None:
            combiner_record, search = combiner
            meta["combiner"] = combiner_record.save(tmp) | search
        write_json(tmp / META_FILE, meta)
    print(f"train: {len(models)} member(s) -> {model_dir}")
