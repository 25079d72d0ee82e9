"""Stage 5, evaluate: score the model on the held-out test split; the paper's table and figures."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdsym.augmentation import AugmentSettings, peak_reflections
from xrdsym.calibration import (
    accuracy_coverage,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_table,
)
from xrdsym.errors import XrdsymError
from xrdsym.evaluation import (
    accuracies_at_coverage,
    brief_scores,
    ceiling_answers,
    classification_metrics,
    condition_patterns,
    condition_settings,
    confusion,
    lattice_system_right,
    stored_fwhm_deg,
    top_k_accuracy,
)
from xrdsym.hybrid import indexed_crystal_system, restrict_space_groups
from xrdsym.inference import PRIMARY_HEAD, SPACE_GROUP_HEAD
from xrdsym.inputs import read_pattern_split, read_peak_split, read_split, read_split_labels
from xrdsym.io import rejects_table, write_json, write_table
from xrdsym.parallel import parallel_map
from xrdsym.plots import (
    plot_calibration,
    plot_class_balance,
    plot_confusion,
    plot_example,
    plot_robustness,
)
from xrdsym.prediction import (
    COVERAGES,
    Classifier,
    combined_probabilities,
    load_classifier,
    model_members,
    prepare_structure,
)
from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.cif_dir import iter_cif_dir
from xrdsym.stages.index import indexed_ids, read_features, read_index_settings, split_patterns
from xrdsym.stages.patterns import INDEX_FILE, PATTERNS_FILE, TWO_THETA_FILE
from xrdsym.symmetry import analyse_symmetry, crystal_system_of_space_group

PARAMS = ("n_jobs", "evaluate")


def run(
    params: dict[str, Any],
    model_dir: Path,
    images_dir: Path,
    patterns_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    index_dir: Path | None = None,
) -> None:
    """Write the metrics JSON, the confusion matrix (CSV for DVC, PNG), the calibration
    figures (reliability, accuracy against coverage) and the paper's figures; score every
    extra set of CIFs too (params evaluate.extra_sets), each in its own metrics section, and
    the test split under each measurement condition of evaluate.robustness (CSV, PNG); with
    the index stage's output in ``index_dir``, the test split measured once, scored for the
    network alone, the indexing alone and (for a model with a combiner) both combined, beside
    the metric oracle's ceiling (:func:`score_with_indexing`)."""
    classifier = load_classifier(model_dir, engine="keras")  # the reference, not the export
    meta, classes = classifier.meta, classifier.classes
    target = meta.get("target", "crystal_system")
    inputs, y_true, ids = read_split(
        meta["input"], images_dir, patterns_dir, "test", classes, target=target
    )
    if meta["input"] == "pattern":
        # Through the model's input transform, as training and predict see patterns.
        inputs = classifier.network_inputs(classifier.inputs(inputs[..., 0]))
    space_groups = classifier.heads.get(SPACE_GROUP_HEAD)
    y_space_group = None
    if space_groups:
        y_space_group = read_split_labels(
            patterns_dir, "test", classes, target=target, space_groups=space_groups
        )[SPACE_GROUP_HEAD]
    member_outputs = classifier.member_outputs(inputs)
    metrics = classifier_scores(classifier, member_outputs, y_true, y_space_group)
    probabilities = classifier.ensemble_probabilities(member_outputs)[PRIMARY_HEAD]
    plots_dir.mkdir(parents=True, exist_ok=True)
    if index_dir is not None and target == "crystal_system":
        measured = score_with_indexing(classifier, patterns_dir, index_dir, plots_dir)
        if measured is not None:
            metrics["test_measured"] = measured
    metrics["extra_sets"] = {}
    for folder in map(Path, params["evaluate"]["extra_sets"]):
        extra, predictions, rejects = score_structure_set(classifier, folder, params["n_jobs"])
        metrics["extra_sets"][folder.name] = extra
        write_table(plots_dir / f"extra_{folder.name}.csv", predictions)
        write_table(plots_dir / f"extra_{folder.name}_rejects.csv", rejects_table(rejects))
        print(
            f"evaluate: {folder}: accuracy {extra.get('accuracy', float('nan')):.3f} on "
            f"{extra['n_test']} structures, {extra['n_rejected']} rejected"
            + (
                f"; combined with the indexing {extra['combined']['accuracy']:.3f}"
                if "combined" in extra
                else ""
            )
        )
    started = time.perf_counter()
    robustness = score_robustness(classifier, patterns_dir, params["evaluate"]["robustness"])
    metrics["robustness"] = robustness
    write_table(
        plots_dir / "robustness.csv",
        pd.DataFrame(
            {
                "condition": list(robustness),
                "accuracy": [r["accuracy"] for r in robustness.values()],
            }
        ),
    )
    plot_robustness(robustness, plots_dir / "robustness.png")
    print(
        f"evaluate: robustness under {len(robustness)} measurement conditions in "
        f"{time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{name} {row['accuracy']:.3f}" for name, row in robustness.items())
    )
    write_json(metrics_path, metrics)
    coverage = accuracy_coverage(probabilities, y_true)
    reliability = reliability_table(probabilities, y_true)
    write_table(plots_dir / "accuracy_coverage.csv", coverage)
    write_table(plots_dir / "reliability.csv", reliability)
    plot_calibration(reliability, coverage, plots_dir / "calibration.png")
    # The confusion matrix is by crystal system, also for a space-group model (230 x 230
    # cells would be unreadable).
    systems, to_system = crystal_systems_of(classes, target)
    actual, predicted = to_system[y_true], to_system[np.argmax(probabilities, axis=1)]
    names = np.asarray(systems)
    write_table(
        plots_dir / "confusion.csv",
        pd.DataFrame({"id": ids, "actual": names[actual], "predicted": names[predicted]}),
    )
    plot_confusion(confusion(actual, predicted, len(systems)), systems, plots_dir / "confusion.png")

    index = pd.read_csv(patterns_dir / INDEX_FILE, dtype={"id": str})
    counts = index["crystal_system"].value_counts().reindex(systems, fill_value=0)
    write_table(
        plots_dir / "class_balance.csv",
        pd.DataFrame({"crystal_system": counts.index, "materials": counts.values}),
    )
    plot_class_balance(counts, plots_dir / "class_balance.png")

    example = int(np.flatnonzero(index["split"] == "test")[0])
    row = index.iloc[example]
    patterns = np.load(patterns_dir / PATTERNS_FILE, mmap_mode="r")
    plot_example(
        np.load(patterns_dir / TWO_THETA_FILE),
        patterns[example],
        classifier.network_inputs(classifier.inputs(patterns[example : example + 1]))[0],
        f"{row.formula} ({row.crystal_system}, space group {row.space_group})",
        plots_dir / "example_pattern.png",
    )
    print(
        f"evaluate: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
        f"ECE {metrics['calibration']['ece']:.3f} on {metrics['n_test']} test patterns "
        f"-> {metrics_path}"
    )


def crystal_systems_of(classes: list[str], target: str) -> tuple[list[str], np.ndarray]:
    """The crystal systems ``classes`` cover, and each class's index among them (classes are
    crystal systems, or space-group numbers of a space-group model)."""
    if target == "crystal_system":
        return list(classes), np.arange(len(classes))
    of_class = [crystal_system_of_space_group(int(name)) for name in classes]
    systems = sorted(set(of_class))
    return systems, np.array([systems.index(system) for system in of_class])


def classifier_scores(
    classifier: Classifier,
    member_outputs: list[dict[str, np.ndarray]],
    y_true: np.ndarray,
    y_space_group: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`scores` of the ensemble's probabilities from its members' outputs
    (Classifier.member_outputs), with the members' temperatures."""
    metrics = scores(
        classifier.ensemble_probabilities(member_outputs),
        classifier.ensemble_probabilities(member_outputs, calibrated=False),
        y_true,
        classifier.heads,
        classifier.meta.get("target", "crystal_system"),
        y_space_group,
    )
    metrics["calibration"]["temperatures"] = [
        member["temperatures"][PRIMARY_HEAD] for member in model_members(classifier.meta)
    ]
    return metrics


def scores(
    probabilities: dict[str, np.ndarray],
    uncalibrated: dict[str, np.ndarray],
    y_true: np.ndarray,
    heads: dict[str, list[str]],
    target: str,
    y_space_group: np.ndarray | None = None,
) -> dict[str, Any]:
    """Classification metrics of the calibrated probabilities of each head (``heads``: name
    -> classes), their accuracy at the coverages COVERAGES (the most confident answers kept),
    and the calibration metrics before and after temperature scaling (``uncalibrated``).

    For a space-group model: top-1 (``accuracy``) and top-5 accuracy and macro-F1 over space
    groups, and the full crystal-system metrics of the systems its predictions imply, under
    ``crystal_system`` (230 per-class rows would drown the metrics). For a model with a
    space-group head besides, given the true space groups' indices ``y_space_group``: that
    head's top-1, top-5, macro-F1, ECE and the crystal-system accuracy it implies, under
    ``space_group_head``.
    """
    classes, calibrated, raw = heads[PRIMARY_HEAD], probabilities, uncalibrated
    probabilities = calibrated[PRIMARY_HEAD]
    y_pred = np.argmax(probabilities, axis=1)
    metrics = classification_metrics(y_true, y_pred, classes)
    if target == "space_group":
        del metrics["per_class"]
        metrics["top5_accuracy"] = top_k_accuracy(probabilities, y_true, 5)
        systems, to_system = crystal_systems_of(classes, target)
        metrics["crystal_system"] = classification_metrics(
            to_system[y_true], to_system[y_pred], systems
        )
    metrics["accuracy_at_coverage"] = accuracies_at_coverage(
        probabilities.max(axis=1), y_pred == y_true, COVERAGES
    )
    metrics["calibration"] = {
        "ece": expected_calibration_error(probabilities, y_true),
        "ece_uncalibrated": expected_calibration_error(raw[PRIMARY_HEAD], y_true),
        "nll": negative_log_likelihood(probabilities, y_true),
        "nll_uncalibrated": negative_log_likelihood(raw[PRIMARY_HEAD], y_true),
    }
    if y_space_group is not None and SPACE_GROUP_HEAD in calibrated:
        groups = heads[SPACE_GROUP_HEAD]
        group_probabilities = calibrated[SPACE_GROUP_HEAD]
        group_pred = np.argmax(group_probabilities, axis=1)
        systems, to_system = crystal_systems_of(groups, "space_group")
        implied = classification_metrics(to_system[y_space_group], to_system[group_pred], systems)
        metrics["space_group_head"] = {
            "top1_accuracy": float(np.mean(group_pred == y_space_group)),
            "top5_accuracy": top_k_accuracy(group_probabilities, y_space_group, 5),
            "macro_f1": classification_metrics(y_space_group, group_pred, groups)["macro_f1"],
            "ece": expected_calibration_error(group_probabilities, y_space_group),
            "implied_crystal_system": {
                "accuracy": implied["accuracy"],
                "macro_f1": implied["macro_f1"],
            },
        }
    return metrics


def score_with_indexing(
    classifier: Classifier, patterns_dir: Path, index_dir: Path, plots_dir: Path
) -> dict[str, Any] | None:
    """The test split as the index stage measured it (once, ``train.augment``'s conditions):
    accuracy, macro-F1 and per-class F1 of the network alone, of the indexing alone (its
    lattice system's crystal system; not indexed counts as wrong) and, for a model with a
    combiner, of both combined (with its calibration and the accuracy of its most confident
    answers); the metric oracle's ceiling on the same structures; each one's lattice-system
    accuracy (:func:`~xrdsym.evaluation.lattice_system_right`). Writes the combined (else the
    network's) confusion matrix and per-pattern answers under ``plots_dir``. None, said in
    one line, when the index stage indexed no test pattern."""
    classes = classifier.classes
    made = read_index_settings(index_dir, classes)
    if made["per_split"]["test"] == 0 or not indexed_ids(index_dir, "test"):
        print(f"evaluate: {index_dir} holds no test patterns (index.per_split.test): not scored")
        return None
    augment = None if made["augment"] is None else AugmentSettings.from_params(made["augment"])
    sample = made["per_split"]["test"]
    ids, patterns, _ = split_patterns(
        patterns_dir, "test", classes, "crystal_system", augment, made["seed"], sample
    )
    features, rows = read_features(index_dir, "test", ids)
    y_true = np.array([classes.index(name) for name in rows["crystal_system"]])
    network = classifier.probabilities(patterns)
    lattice_systems = rows["lattice_system"].astype(object).where(rows["lattice_system"].notna())
    indexed = [indexed_crystal_system(s) if isinstance(s, str) else None for s in lattice_systems]
    # -1: no answer, counted as wrong (and read as None through ``names`` below).
    y_indexed = np.array([classes.index(s) if s in classes else -1 for s in indexed])
    oracle, reading = ceiling_answers(rows["oracle_lattice_system"], rows["crystal_system"])
    y_oracle = np.array([classes.index(s) if s in classes else -1 for s in oracle])
    true_lattice = rows["lattice_system_true"].tolist()
    answers = {"network": network.argmax(axis=1), "indexing": y_indexed}
    scores = {
        "n_test": len(ids),
        "network": brief_scores(y_true, answers["network"], classes)
        | {"ece": expected_calibration_error(network, y_true)},
        "indexing": brief_scores(y_true, y_indexed, classes)
        | {
            "indexed": float(np.mean(y_indexed >= 0)),
            "reasons": {k: int(v) for k, v in rows["reason"].value_counts().items()},
        },
    }
    shown = network
    if classifier.combiner is not None:
        shown = classifier.combiner.probabilities(network, features)
        answers["combined"] = shown.argmax(axis=1)
        correct = answers["combined"] == y_true
        scores["combined"] = brief_scores(y_true, answers["combined"], classes) | {
            "ece": expected_calibration_error(shown, y_true),
            "accuracy_at_coverage": accuracies_at_coverage(shown.max(axis=1), correct, COVERAGES),
        }
    answers["ceiling"] = y_oracle
    scores["ceiling"] = brief_scores(y_true, y_oracle, classes) | {
        "hexagonal_lattice_read_as": reading
    }
    names = np.asarray([*classes, None], dtype=object)
    scores["lattice_system_accuracy"] = {
        source: float(np.mean(lattice_system_right(names[predicted], true_lattice)))
        for source, predicted in answers.items()
    }
    space_groups = classifier.heads.get(SPACE_GROUP_HEAD)
    if space_groups:
        scores["space_group_head"] = space_group_scores(
            classifier.calibrated_heads(classifier.inputs(patterns))[SPACE_GROUP_HEAD],
            space_groups,
            [str(n) for n in rows["space_group"]],
            [s if isinstance(s, str) else None for s in lattice_systems],
        )
    shown_answers = shown.argmax(axis=1)
    write_table(
        plots_dir / "test_measured.csv",
        pd.DataFrame(
            {
                "id": ids,
                "actual": rows["crystal_system"],
                "network": names[answers["network"]],
                "indexing": names[y_indexed],
                "predicted": names[shown_answers],
                "probability": shown.max(axis=1).round(4),
                "lattice_system": rows["lattice_system"],
                "oracle_lattice_system": rows["oracle_lattice_system"],
            }
        ),
    )
    source = "combined" if classifier.combiner is not None else "network"
    plot_confusion(
        confusion(y_true, shown_answers, len(classes)),
        classes,
        plots_dir / "confusion_measured.png",
        f"Confusion matrix ({source}, test split measured once)",
    )
    print(
        f"evaluate: test split measured once ({len(ids)} patterns): "
        + ", ".join(f"{name} {scores[name]['accuracy']:.3f}" for name in answers)
        + "; lattice system: "
        + ", ".join(f"{k} {v:.3f}" for k, v in scores["lattice_system_accuracy"].items())
    )
    return scores


def space_group_scores(
    probabilities: np.ndarray,
    space_groups: list[str],
    actual: list[str],
    lattice_systems: list[str | None],
) -> dict[str, dict[str, float]]:
    """Top-1 and top-5 accuracy of a space-group head's probabilities as they are and kept to
    the groups of each pattern's indexed lattice system
    (:func:`~xrdsym.hybrid.restrict_space_groups`)."""
    index = {name: i for i, name in enumerate(space_groups)}
    y_true = np.array([index.get(name, -1) for name in actual])
    known = y_true >= 0
    restricted = restrict_space_groups(probabilities, space_groups, lattice_systems)
    return {
        name: {
            "top1_accuracy": float(np.mean(np.argmax(p[known], axis=1) == y_true[known])),
            "top5_accuracy": top_k_accuracy(p[known], y_true[known], 5),
        }
        for name, p in (("network", probabilities), ("restricted_to_indexed_lattice", restricted))
    }


def score_robustness(
    classifier: Classifier, patterns_dir: Path, conditions: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of ``classifier`` on the test split measured under each of
    ``conditions`` (evaluate.robustness: name -> augmentation keys) alone, and the drop from
    its accuracy on the stored patterns. Each condition re-simulates the split from its peak
    lists (:func:`condition_settings`: the stored peak width, every other part off, a fixed
    seed); one that sets nothing is the stored patterns. Patterns go through
    ``Classifier.probabilities`` as any other (an image model's images are drawn there)."""
    meta, classes = classifier.meta, classifier.classes
    target = meta.get("target", "crystal_system")
    pattern = meta["preprocessing"]["pattern"]
    width = stored_fwhm_deg(pattern["sigma_points"], pattern["two_theta_step"])
    settings = {name: condition_settings(name, c, width) for name, c in conditions.items()}
    stored, y_true, _ = read_pattern_split(patterns_dir, "test", classes, target=target)
    table, _, _ = read_peak_split(patterns_dir, "test", classes, target=target)
    # Texture acts on every reflection of every peak: found once for all batches.
    textured = any(
        s is not None and (s.march_dollase_r is not None or s.film_probability is not None)
        for s in settings.values()
    )
    reflections = peak_reflections(table, classifier.wavelength) if textured else None

    def scored(patterns: np.ndarray) -> tuple[float, float]:
        y_pred = np.argmax(classifier.probabilities(patterns), axis=1)
        metrics = classification_metrics(y_true, y_pred, classes)
        return metrics["accuracy"], metrics["macro_f1"]

    clean = scored(stored[..., 0])
    results = {}
    for name, condition in settings.items():
        accuracy, macro_f1 = (
            clean
            if condition is None
            else scored(
                condition_patterns(
                    table, classifier.grid, classifier.wavelength, condition, reflections
                )
            )
        )
        results[name] = {"accuracy": accuracy, "macro_f1": macro_f1, "drop": clean[0] - accuracy}
    return results


def _label_and_simulate(record: StructureRecord, meta: dict[str, Any]) -> tuple | str:
    """Space group, crystal system and the model-ready pattern of one structure (with its
    indexing, for a model with a combiner), or why not."""
    settings = meta["preprocessing"]["pattern"]
    try:
        space_group, crystal_system, _ = analyse_symmetry(
            record.structure, settings["symprec"], settings["angle_tolerance"]
        )
        return space_group, crystal_system, prepare_structure(record.structure, meta)
    except Exception as exc:  # pymatgen or spglib failing on one structure is recorded
        return f"{exc.__class__.__name__}: {exc}"


def _label(result: tuple, target: str) -> str:
    """The class name of a labelled structure (space group, crystal system, pattern)."""
    space_group, crystal_system, _ = result
    return crystal_system if target == "crystal_system" else str(space_group)


def score_structure_set(
    classifier: Classifier, folder: Path, n_jobs: int
) -> tuple[dict[str, Any], pd.DataFrame, list[dict[str, str]]]:
    """Metrics of ``classifier`` on every structure in the CIFs under ``folder``, labelled by
    symmetry analysis and simulated as the training patterns were; the per-structure
    predictions; and the structures that could not be used, with the reason."""
    if not folder.is_dir():
        raise XrdsymError(f"evaluate.extra_sets: {folder} is not a folder of CIF files")
    target = classifier.meta.get("target", "crystal_system")
    records, rejects = [], []
    for item in iter_cif_dir(folder, n_jobs):
        (rejects.append(item.to_row()) if isinstance(item, Reject) else records.append(item))
    worker = functools.partial(_label_and_simulate, meta=classifier.meta)
    rows, patterns = [], []
    results = parallel_map(worker, records, n_jobs, f"simulating {folder.name}")
    for record, result in zip(records, results, strict=True):
        if isinstance(result, str):
            rejects.append(Reject(record.id, "evaluate:xrd", result).to_row())
        elif (label := _label(result, target)) not in classifier.classes:
            reason = f"{target.replace('_', ' ')} {label} is not one of the model's classes"
            rejects.append(Reject(record.id, "evaluate:label", reason).to_row())
        else:
            space_group, _, pattern = result
            formula = record.structure.composition.reduced_formula
            rows.append(
                {
                    "id": record.id,
                    "formula": formula,
                    "space_group": space_group,
                    "actual": label,
                }
            )
            patterns.append(pattern)
    table = pd.DataFrame(rows, columns=["id", "formula", "space_group", "actual"])
    if not rows:
        return {"n_test": 0, "n_rejected": len(rejects)}, table, rejects
    y_true = np.array([classifier.classes.index(name) for name in table["actual"]])
    space_groups = classifier.heads.get(SPACE_GROUP_HEAD)
    y_space_group = (
        np.array([space_groups.index(str(n)) for n in table["space_group"]])
        if space_groups
        else None
    )
    member_outputs = classifier.member_outputs(
        classifier.network_inputs(classifier.inputs(np.stack([p.intensities for p in patterns])))
    )
    metrics = classifier_scores(classifier, member_outputs, y_true, y_space_group)
    metrics["n_rejected"] = len(rejects)
    probabilities = classifier.ensemble_probabilities(member_outputs)[PRIMARY_HEAD]
    classes = classifier.classes
    table["predicted"] = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    table["probability"] = probabilities.max(axis=1).round(4)
    if classifier.combiner is not None:
        # The network's answers above, the combination's here: the same patterns, indexed.
        combined = combined_probabilities(classifier, probabilities, patterns)
        indexed = [indexed_crystal_system(p.indexed.result.lattice_system) for p in patterns]
        y_indexed = np.array([classes.index(s) if s in classes else -1 for s in indexed])
        metrics["indexing"] = brief_scores(y_true, y_indexed, classes)
        metrics["combined"] = brief_scores(y_true, combined.argmax(axis=1), classes)
        table["indexing"] = indexed
        table["combined"] = np.asarray(classes)[combined.argmax(axis=1)]
        table["combined_probability"] = combined.max(axis=1).round(4)
    return metrics, table, rejects
