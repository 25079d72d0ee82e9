"""Accuracy of a model on sets of measured patterns: every folder holding a ``labels.csv``,
read and scored as ``xrdsym predict FOLDER --labels FOLDER/labels.csv`` does.

    python bench/measured_accuracy.py --sets DIR [DIR ...] --model src/xrdsym/shipped_model

Prints a Markdown table (set, patterns scored, accuracy, macro-F1, accuracy of the most
confident 80 %, per-class recall) and writes every set's scores to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import xrdsym
from xrdsym.hybrid import indexed_crystal_system
from xrdsym.inference import SPACE_GROUP_HEAD
from xrdsym.io import write_json
from xrdsym.measured import parse_wavelength
from xrdsym.prediction import (
    NO_ANSWER,
    Classifier,
    classify,
    find_inputs,
    load_classifier,
    prepare_files,
    read_labels,
    score_predictions,
)

LABELS_FILE = "labels.csv"
SHIPPED_MODEL = Path(xrdsym.__file__).parent / "shipped_model"


def score_set(
    folder: Path, classifier: Classifier, wavelength: float | None, n_jobs: int
) -> dict[str, Any]:
    """The scores of the patterns under ``folder`` against its labels, with the files that
    failed and what was left out of the others."""
    labels_path = folder / LABELS_FILE
    labels = read_labels(labels_path)
    files, _ = find_inputs([folder], exclude=[labels_path])
    reading = prepare_files(
        classifier.meta,
        files,
        wavelength=wavelength,
        background="snip",
        smooth=0.0,
        n_jobs=n_jobs,
    )
    predictions = classify(classifier, reading.prepared, k=1)
    target = classifier.meta.get("target", "crystal_system")
    scores = score_predictions(
        predictions,
        labels,
        target,
        classifier.classes,
        space_groups=classifier.heads.get(SPACE_GROUP_HEAD),
    )
    significance = [p.peak_significance for p in predictions if p.peak_significance is not None]
    if any(p.indexed is not None for p in predictions):
        # A model with a combiner: the network alone and the indexing alone on the same scans.
        indexed = [indexed_crystal_system(p.indexed.result.lattice_system) for p in predictions]
        alone = {
            "network_alone": [replace(p, top=p.network_top) for p in predictions],
            "indexing_alone": [
                replace(p, top=[(system or NO_ANSWER, 1.0)])
                for p, system in zip(predictions, indexed, strict=True)
            ],
        }
        for name, answers in alone.items():
            scores[name] = score_predictions(answers, labels, target, classifier.classes)[
                "crystal_system"
            ]
    return scores | {
        # Every scan here holds peaks: how close the no-peaks check comes to calling one empty.
        "no_peaks": sum(p.no_peaks for p in predictions),
        "lowest_peak_significance": round(min(significance), 1) if significance else None,
        "failed": reading.failures,
        "not_patterns": reading.not_patterns,
        "notes": reading.notes,
    }


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per set: patterns scored, accuracy, macro-F1, accuracy of the most confident
    80 %, recall of every class in its labels (support in brackets)."""
    lines = [
        "| set | patterns | accuracy | macro-F1 | accuracy at 80 % coverage | recall per class |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, scores in results.items():
        part = scores.get("crystal_system")
        if part is None:
            lines.append(f"| {name} | 0 | | | | |")
            continue
        for alone in ("network_alone", "indexing_alone"):
            if alone in scores:
                other = scores[alone]
                lines.append(
                    f"| {name}, {alone.replace('_', ' ')} | {other['n']} | "
                    f"{other['accuracy']:.3f} | {other['macro_f1']:.3f} | | |"
                )
        recall = ", ".join(
            f"{cls} {row['recall']:.2f} ({row['support']})" for cls, row in part["recall"].items()
        )
        lines.append(
            f"| {name} | {part['n']} | {part['accuracy']:.3f} | {part['macro_f1']:.3f} "
            f"| {part['accuracy_at_coverage']['80%']:.3f} | {recall} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets", type=Path, nargs="+", required=True, help="folders searched for labels.csv"
    )
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument(
        "--wavelength", default=None, help="for files that do not state theirs (Å or anode)"
    )
    parser.add_argument("--jobs", type=int, default=0, help="reading processes (0: per core)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/measured_accuracy.json"))
    args = parser.parse_args()
    folders = sorted({labels.parent for root in args.sets for labels in root.rglob(LABELS_FILE)})
    if not folders:
        sys.exit(f"no {LABELS_FILE} under {' '.join(map(str, args.sets))}")
    classifier = load_classifier(args.model)
    wavelength = parse_wavelength(args.wavelength) if args.wavelength else None
    n_jobs = args.jobs or os.cpu_count() or 1
    results = {}
    for folder in folders:
        scores = score_set(folder, classifier, wavelength, n_jobs)
        results[folder.name] = {"folder": str(folder)} | scores
        print(
            f"{folder}: {scores['n_scored']} patterns scored, {len(scores['failed'])} files "
            f"failed, {len(scores['labelled_not_predicted'])} labelled files not predicted, "
            f"{len(scores['notes'])} calculated blocks skipped",
            file=sys.stderr,
        )
    table = markdown_table(results)
    print(table)
    write_json(
        args.out,
        {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "model": f"{args.model} ({classifier.meta['model']}, run by {classifier.engine})",
            "sets": results,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
