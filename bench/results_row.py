"""One row of the README's results table from a finished run: the metrics the pipeline wrote
(metrics/metrics.json, metrics/train/metrics.json) and the measured dev sets' scores written by
bench/measured_accuracy.py.

    python bench/results_row.py --name "resnet1d" --command "dvc exp run ..." \
        --measured bench/results/measured/resnet1d.json >> bench/results/table.md

Prints two Markdown rows: the main table's (crystal system accuracy and macro-F1, space group
top-1 and top-5, ECE, accuracy at 80 % coverage, the measured sets, training time) and the
per-class F1 table's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CLASSES = ("cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal", "triclinic")
CLASSES += ("trigonal",)
MEASURED_SETS = ("rruff_dev150", "x15")


def space_group_scores(metrics: dict[str, Any]) -> tuple[float | None, float | None]:
    """Space-group top-1 and top-5 on the test split: of a space-group model's only head, or
    of a crystal-system model's space-group head; None without either."""
    if "top5_accuracy" in metrics:
        return metrics["accuracy"], metrics["top5_accuracy"]
    head = metrics.get("space_group_head")
    return (head["top1_accuracy"], head["top5_accuracy"]) if head else (None, None)


def crystal_system_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """The crystal-system metrics: the model's own, or those its space groups imply."""
    return metrics.get("crystal_system", metrics)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def rows(
    name: str, command: str, metrics: dict[str, Any], train: dict[str, Any], measured: dict
) -> tuple[str, str]:
    """The main table's row and the per-class F1 table's row."""
    systems = crystal_system_scores(metrics)
    top1, top5 = space_group_scores(metrics)
    sets = measured.get("sets", {})
    dev = " / ".join(
        _number(sets[s]["crystal_system"]["accuracy"]) if s in sets else "–" for s in MEASURED_SETS
    )
    members = train.get("members") or [train]
    epochs = ", ".join(f"{m['best_epoch']} of {m['epochs_run']}" for m in members)
    main = (
        f"| {name} | `{command}` | {systems['accuracy']:.3f} | {systems['macro_f1']:.3f} "
        f"| {_number(top1)} / {_number(top5)} | {metrics['calibration']['ece']:.3f} "
        f"| {metrics['accuracy_at_coverage']['80%']:.3f} | {dev} "
        f"| {train['train_seconds']:,.0f} s, epoch {epochs} |"
    )
    per_class = systems.get("per_class", {})
    f1 = " | ".join(f"{per_class[c]['f1']:.2f}" if c in per_class else "–" for c in CLASSES)
    return main, f"| {name} | {f1} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    parser.add_argument("--train", type=Path, default=Path("metrics/train/metrics.json"))
    parser.add_argument("--measured", type=Path, help="bench/measured_accuracy.py's --out")
    args = parser.parse_args()
    measured = json.loads(args.measured.read_text()) if args.measured else {}
    main_row, per_class = rows(
        args.name,
        args.command,
        json.loads(args.metrics.read_text()),
        json.loads(args.train.read_text()),
        measured,
    )
    print(main_row)
    print(per_class)


if __name__ == "__main__":
    main()
