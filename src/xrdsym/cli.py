"""Command line: ``xrdsym <stage>`` runs one DVC stage; dvc.yaml calls exactly these.

Params are read here, once, and each stage gets only the keys it declares. Errors a user can
cause (bad params, missing inputs, no network) end as one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from xrdsym import __version__
from xrdsym.errors import XrdsymError

# Files per reading process in `xrdsym predict`: fewer do not pay for a process's start.
FILES_PER_JOB = 32
# TensorFlow's C++ start-up chatter (oneDNN, missing CUDA) buries the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _params(args: argparse.Namespace, keys: Sequence[str]) -> dict:
    """The keys of the params file that a stage declares, checked."""
    # Imported here, not at the top: checking params loads pymatgen, which `predict` does not
    # need for measured files and which takes over a second to import.
    from xrdsym.config import load_params, stage_params

    return stage_params(load_params(args.params), keys)


def _download(args: argparse.Namespace) -> None:
    from xrdsym.parallel import dask_scheduler
    from xrdsym.stages import download

    params = _params(args, download.PARAMS)
    with dask_scheduler(params["dask_scheduler"], params["n_jobs"]):
        download.run(params, args.out, args.metrics)


def _patterns(args: argparse.Namespace) -> None:
    from xrdsym.parallel import dask_scheduler
    from xrdsym.stages import patterns

    params = _params(args, patterns.PARAMS)
    with dask_scheduler(params["dask_scheduler"], params["n_jobs"]):
        patterns.run(params, args.structures, args.out, args.metrics)


def _synthesize(args: argparse.Namespace) -> None:
    from xrdsym.parallel import dask_scheduler
    from xrdsym.stages import synthesize

    params = _params(args, synthesize.PARAMS)
    with dask_scheduler(params["dask_scheduler"], params["n_jobs"]):
        synthesize.run(params, args.structures, args.patterns, args.out, args.metrics)


def _index_patterns(args: argparse.Namespace) -> None:
    from xrdsym.parallel import dask_scheduler
    from xrdsym.stages import index

    params = _params(args, index.PARAMS)
    with dask_scheduler(params["dask_scheduler"], params["n_jobs"]):
        index.run(params, args.patterns, args.out, args.metrics)


def _images(args: argparse.Namespace) -> None:
    from xrdsym.stages import images

    images.run(_params(args, images.PARAMS), args.patterns, args.out)


def _train(args: argparse.Namespace) -> None:
    from xrdsym.stages import train

    params = _params(args, train.PARAMS)
    train.run(params, args.images, args.patterns, args.synthetic, args.out, args.live, args.index)


def _combine(args: argparse.Namespace) -> None:
    from xrdsym.stages.train import combine_existing

    combine_existing(args.model, args.patterns, args.index, args.out)


def _evaluate(args: argparse.Namespace) -> None:
    from xrdsym.stages import evaluate

    params = _params(args, evaluate.PARAMS)
    evaluate.run(
        params, args.model, args.images, args.patterns, args.metrics, args.plots, args.index
    )


def _predict(args: argparse.Namespace) -> int:
    """Exit status 1 if any file failed (the others are still classified)."""
    from xrdsym.inference import SPACE_GROUP_HEAD
    from xrdsym.measured import parse_wavelength
    from xrdsym.prediction import (
        check_options,
        classify,
        find_inputs,
        load_classifier,
        model_directory,
        prediction_warnings,
        prepare_files,
        read_labels,
        read_model_meta,
        score_predictions,
    )

    if args.jobs < 0:
        raise XrdsymError(f"--jobs {args.jobs}: must be 0 (one per core) or more")
    check_options(
        top_k=args.top_k,
        background=args.background,
        smooth=args.smooth,
        min_confidence=args.min_confidence,
        command_line=True,
    )
    labels = read_labels(args.labels) if args.labels is not None else None
    wavelength = parse_wavelength(args.wavelength) if args.wavelength is not None else None
    model_dir, origin = model_directory(args.model)
    meta = read_model_meta(model_dir)
    files, skipped = find_inputs(args.inputs, exclude=[args.labels] if args.labels else [])
    # Files are read before the model is loaded: worker processes then start without Keras.
    reading = prepare_files(
        meta,
        files,
        wavelength=wavelength,
        background=args.background,
        smooth=args.smooth,
        n_jobs=min(args.jobs or os.cpu_count() or 1, max(1, len(files) // FILES_PER_JOB)),
    )
    # A file without a pattern (notes, a table) is skipped in a folder, a failure when named.
    skipped += reading.settle(args.inputs)
    failures = reading.failures
    if skipped:
        print(
            f"skipped {len(skipped)} files that are not patterns (of other types, or without "
            f"a line of numbers), e.g. {skipped[0]}",
            file=sys.stderr,
        )
    for note in reading.notes:
        print(f"warning: {note}", file=sys.stderr)
    classifier = load_classifier(model_dir)
    print(
        f"model: {model_dir} ({origin}), {meta['model']}, run by {classifier.engine}",
        file=sys.stderr,
    )
    if classifier.combiner_note is not None:
        print(f"note: {classifier.combiner_note}", file=sys.stderr)
    predictions = classify(classifier, reading.prepared, args.top_k)
    # What the classes are: crystal systems, or space-group numbers.
    target = meta.get("target", "crystal_system")
    grid = classifier.grid
    for prediction in predictions:
        for line in prediction_warnings(prediction, grid, classifier.wavelength):
            print(f"warning: {line}", file=sys.stderr)
    rows = [p.row(target, args.min_confidence) for p in predictions]
    if args.min_confidence > 0:
        uncertain = sum(row["uncertain"] for row in rows)
        print(
            f"uncertain: {uncertain} of {len(rows)} patterns (top probability below "
            f"{args.min_confidence:g})",
            file=sys.stderr,
        )
    scores = None
    if labels is not None:
        scores = score_predictions(
            predictions,
            labels,
            target,
            classifier.classes,
            args.min_confidence,
            classifier.heads.get(SPACE_GROUP_HEAD),
        )
    if args.json:
        from xrdsym.io import write_json

        result = {"model": str(model_dir), "patterns": rows, "failed": failures}
        write_json(args.json, result if scores is None else result | {"scores": scores})
    elif args.csv:
        import pandas as pd

        from xrdsym.io import write_table

        flat = []
        for row in rows:
            ranked = {}
            for rank, item in enumerate(row["predictions"], start=1):
                ranked[f"class_{rank}"] = item[target]
                ranked[f"probability_{rank}"] = item["probability"]
            for rank, item in enumerate(row.get("space_groups", []), start=1):
                ranked[f"space_group_{rank}"] = item["space_group"]
                ranked[f"space_group_probability_{rank}"] = item["probability"]
            listed = ("predictions", "space_groups")
            flat.append({k: v for k, v in row.items() if k not in listed} | ranked)
        write_table(args.csv, pd.DataFrame(flat))
    else:
        print(_prediction_table(rows, target))
    if scores is not None:
        print(_scores_text(scores))
    if args.plot:
        from xrdsym.plots import plot_predictions

        plot_predictions(grid.values, predictions, classifier.classes, args.plot)
    if failures:
        print(f"failed: {len(failures)} of {len(files)} files", file=sys.stderr)
        for source, reason in failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        return 1
    return 0


def _index(args: argparse.Namespace) -> int:
    """Exit status 1 if any file failed (the others are still indexed)."""
    from xrdsym.index_scans import index_file, search_settings
    from xrdsym.indexing import IndexSettings
    from xrdsym.measured import parse_wavelength
    from xrdsym.peaks import PeakSettings
    from xrdsym.prediction import find_inputs

    wavelength = parse_wavelength(args.wavelength) if args.wavelength is not None else None
    peak_settings, index_settings = PeakSettings(), IndexSettings()
    if args.params is not None:
        from xrdsym.config import load_params

        params = load_params(args.params)
        peak_settings, index_settings = search_settings(params.get("peaks"), params.get("index"))
    if args.all_systems:
        index_settings = replace(index_settings, settled_figure_of_merit=0.0)
    if args.time_budget is not None:
        if not args.time_budget > 0:
            raise XrdsymError(f"--time-budget {args.time_budget}: must be > 0 seconds")
        index_settings = replace(index_settings, time_budget_s=args.time_budget)
    files, skipped = find_inputs(args.inputs)
    if skipped:
        print(
            f"skipped {len(skipped)} files that are not patterns (of other types), e.g. "
            f"{skipped[0]}",
            file=sys.stderr,
        )
    indexed, failures = [], []
    for path in files:
        try:
            patterns, notes = index_file(
                path, wavelength, peak_settings, index_settings, args.wavelength or "CuKa1"
            )
        except XrdsymError as exc:
            failures.append((str(path), str(exc)))
            continue
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        indexed.extend(patterns)
    for pattern in indexed:
        print(_index_table(pattern))
    if args.json:
        from xrdsym.io import write_json

        write_json(args.json, [pattern.to_record() for pattern in indexed])
    if args.plot:
        from xrdsym.plots import plot_indexed

        args.plot.mkdir(parents=True, exist_ok=True)
        for number, pattern in enumerate(indexed):
            name = Path(pattern.source.split("#")[0]).stem
            best = pattern.result.best
            what = "not indexed" if best is None else f"{best.lattice_system} {best.centring}"
            plot_indexed(
                pattern.two_theta,
                pattern.intensities,
                pattern.peaks.two_theta,
                pattern.peaks.intensity,
                best,
                f"{pattern.source}: {what}",
                args.plot / f"{number:03d}_{name}.png",
            )
    if failures:
        print(f"failed: {len(failures)} of {len(files)} files", file=sys.stderr)
        for source, reason in failures:
            print(
                f"  {reason if reason.startswith(source) else f'{source}: {reason}'}",
                file=sys.stderr,
            )
        return 1
    return 0


def _index_table(pattern) -> str:
    """One pattern's indexing as text: a header line, the chosen cell marked *, and the best
    cell of every other lattice system searched."""
    result, peaks = pattern.result, pattern.peaks
    doublet = ", Kα2 fitted" if peaks.kalpha2 else ""
    lines = [
        f"{pattern.source} ({pattern.kind}, {peaks.wavelength:.5f} Å{doublet}): "
        f"{len(peaks)} peaks" + (", time budget spent" if result.budget_spent else "")
    ]
    if result.best is None:
        lines.append(f"  not indexed: {result.reason}")
    if result.not_searched and not result.budget_spent:
        lines.append(
            f"  not searched (a more symmetric cell settled it): {', '.join(result.not_searched)}"
        )
    header = (
        f"  {'':1}{'lattice system':<13} {'':2} {'a':>8} {'b':>8} {'c':>8} {'alpha':>7} "
        f"{'beta':>7} {'gamma':>7} {'V':>8} {'zero':>7} {'M(N)':>7} {'F(N)':>7}  indexed"
    )
    if result.candidates:
        lines.append(header)
    for cell in result.candidates.values():
        mark = "*" if cell is result.best else " "
        c = cell.cell
        lines.append(
            f"  {mark}{cell.lattice_system:<13} {cell.centring:<2} {c['a']:8.4f} {c['b']:8.4f} "
            f"{c['c']:8.4f} {c['alpha']:7.2f} {c['beta']:7.2f} {c['gamma']:7.2f} "
            f"{c['volume']:8.2f} {cell.zero_shift_deg:7.3f} {cell.m:7.1f} {cell.f:7.1f}  "
            f"{cell.lines_indexed} of {cell.lines_used}"
        )
    return "\n".join(lines)


# The cell parameters the table shows for each lattice system (the others follow from them).
_CELL_SHOWN = {
    "cubic": ("a",),
    "hexagonal": ("a", "c"),
    "rhombohedral": ("a", "c"),
    "tetragonal": ("a", "c"),
    "orthorhombic": ("a", "b", "c"),
    "monoclinic": ("a", "b", "c", "beta"),
    "triclinic": ("a", "b", "c", "alpha", "beta", "gamma"),
}


def _lattice_text(row: dict) -> str:
    """The indexed cell of a `predict` row in a few words, or why there is none."""
    if row["lattice_system"] is None:
        return f"not indexed ({row['n_peaks']} peaks)"
    system, merit = row["lattice_system"], row["figures_of_merit"]
    cell = " ".join(
        f"{key}={row['cell'][key]:.{2 if key in ('alpha', 'beta', 'gamma') else 4}f}"
        for key in _CELL_SHOWN[system]
    )
    return f"{system} {row['centring']} {cell} M({merit['lines_used']})={merit['M']:.0f}"


def _prediction_table(rows: list[dict], target: str) -> str:
    lines = []
    indexes = any("lattice_system" in row for row in rows)
    for row in rows:
        ranked = "  ".join(
            f"{item[target]} {item['probability']:.2f}" for item in row["predictions"]
        )
        answer = f"uncertain: {ranked}" if row["uncertain"] else ranked
        if row["no_peaks"]:
            answer = "none: no peak stands out of the noise"
        if "space_groups" in row:
            answer += "\tspace group " + "  ".join(
                f"{item['space_group']} {item['probability']:.2f}" for item in row["space_groups"]
            )
        if indexes:
            answer += "\t" + _lattice_text(row)
        lines.append(
            f"{row['source']}\t{row['kind']}\t{row['wavelength_angstrom']:.4f} Å\t"
            f"{row['covered_fraction']:.0%}\t{answer}"
        )
    what = target.replace("_", " ")
    header = f"file\tkind\twavelength\tcovered\t{what} (calibrated probability)"
    if any("space_groups" in row for row in rows):
        header += "\tspace group (head besides)"
    if indexes:
        header += "\tlattice (indexed cell, Å and degrees; de Wolff M(N))"
    return "\n".join([header, *lines])


def _scores_text(scores: dict) -> str:
    """The scores of `predict --labels` (see xrdsym.prediction.score_predictions) as text."""
    missing, unlabelled = scores["labelled_not_predicted"], scores["predicted_without_label"]
    lines = [
        "",
        f"scores against {scores['labels']}: {scores['n_scored']} patterns with a label; "
        f"{len(missing)} of {scores['n_labelled']} labelled files not predicted"
        + (f" (e.g. {missing[0]})" if missing else "")
        + f", {len(unlabelled)} predictions without a label"
        + (f" (e.g. {unlabelled[0]})" if unlabelled else ""),
    ]
    for key in ("crystal_system", "space_group"):
        if key not in scores:
            continue
        part, what = scores[key], key.replace("_", " ")
        at_coverage = ", ".join(f"{k} {v:.2f}" for k, v in part["accuracy_at_coverage"].items())
        lines += [
            f"{what}: accuracy {part['accuracy']:.2f}, macro-F1 {part['macro_f1']:.2f} over "
            f"the {len(part['recall'])} classes in the labels ({part['n']} patterns)",
            f"{what}: accuracy of the most confident patterns at coverage {at_coverage}",
        ]
        if part["min_confidence"] > 0:
            answered = part["accuracy_answered"]
            lines.append(
                f"{what}: at min confidence {part['min_confidence']:g}, coverage "
                f"{part['coverage']:.2f}, accuracy on answered "
                + ("-" if answered is None else f"{answered:.2f}")
                + f", accuracy over all {part['accuracy_all']:.2f} (uncertain counted wrong)"
            )
        lines.append(
            f"{what} recall: "
            + "  ".join(
                f"{name} {row['recall']:.2f} ({row['support']})"
                for name, row in part["recall"].items()
            )
        )
        if key == "crystal_system":
            classes, matrix = part["confusion"]["classes"], part["confusion"]["matrix"]
            lines.append("confusion (rows actual, columns predicted):")
            lines.append("\t".join(["actual \\ predicted", *classes]))
            lines += [
                "\t".join([name, *map(str, row)]) for name, row in zip(classes, matrix, strict=True)
            ]
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> None:
    import json

    from xrdsym.evaluation import metrics_table

    print(metrics_table(json.loads(args.metrics.read_text())))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrdsym",
        description="Crystal system from powder XRD patterns. Each command is one DVC stage; "
        "run them all with `dvc repro`.",
    )
    parser.add_argument("--version", action="version", version=f"xrdsym {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stage(name: str, help_text: str, handler, reads_params: bool = True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if reads_params:
            sub.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
        sub.set_defaults(handler=handler)
        return sub

    sub = stage("download", "make the table of crystal structures", _download)
    sub.add_argument("--out", type=Path, default=Path("data/structures"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/download.json"))

    sub = stage("patterns", "label structures and simulate their XRD patterns", _patterns)
    sub.add_argument("--structures", type=Path, default=Path("data/structures"))
    sub.add_argument("--out", type=Path, default=Path("data/patterns"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/patterns.json"))

    sub = stage(
        "synthesize",
        "draw synthetic crystals from the training split's Wyckoff statistics and simulate them",
        _synthesize,
    )
    sub.add_argument("--structures", type=Path, default=Path("data/structures"))
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--out", type=Path, default=Path("data/synthetic"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/synthesize.json"))

    sub = stage(
        "index-patterns",
        "find the peaks and index the validation and test patterns, measured once",
        _index_patterns,
    )
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--out", type=Path, default=Path("data/index"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/index.json"))

    sub = stage("images", "draw a square image of every pattern", _images)
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--out", type=Path, default=Path("data/images"))

    sub = stage("train", "train the classifier on the training split", _train)
    sub.add_argument("--images", type=Path, default=Path("data/images"))
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument(
        "--synthetic",
        type=Path,
        default=Path("data/synthetic"),
        help="the synthesize stage's patterns (read with train.data other than real)",
    )
    sub.add_argument("--out", type=Path, default=Path("models"))
    sub.add_argument("--live", type=Path, default=Path("metrics/train"), help="DVCLive folder")
    sub.add_argument(
        "--index",
        type=Path,
        default=Path("data/index"),
        help="the index stage's output (read with train.combine)",
    )

    sub = stage(
        "combine",
        "fit the combiner of network and indexing for a trained network (no retraining)",
        _combine,
        reads_params=False,
    )
    sub.add_argument("--model", type=Path, required=True, help="the trained model directory")
    sub.add_argument(
        "--patterns", type=Path, default=Path("data/patterns"), help="the store it was trained on"
    )
    sub.add_argument("--index", type=Path, default=Path("data/index"), help="its index stage")
    sub.add_argument("--out", type=Path, required=True, help="where the combined model goes")

    sub = stage("evaluate", "score the model on the test split and the extra sets", _evaluate)
    sub.add_argument("--model", type=Path, default=Path("models"))
    sub.add_argument("--images", type=Path, default=Path("data/images"))
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    sub.add_argument("--plots", type=Path, default=Path("plots/evaluate"))
    sub.add_argument(
        "--index",
        type=Path,
        default=None,
        help="the index stage's output: also score network, indexing and combination on the "
        "test split measured once",
    )

    sub = commands.add_parser(
        "predict",
        help="classify measured patterns or CIF structures with a trained model",
        description="Classify powder patterns from diffractometer files (.xy .xye .dat .csv "
        ".txt .xrdml, CIF powder data) or CIF structures (simulated first) with a trained "
        "model. Angles are converted to the model's wavelength through Bragg's law and "
        "resampled onto its 2θ grid; probabilities are calibrated.",
        epilog="example: xrdsym predict scans/quartz.xy --wavelength CuKa --top-k 3 "
        "--plot quartz.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub.set_defaults(handler=_predict)
    sub.add_argument(
        "inputs", nargs="+", type=Path, metavar="FILE_OR_FOLDER", help="files or folders"
    )
    sub.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory written by the train stage (default: the model shipped with "
        "xrdsym if any, else ./models)",
    )
    sub.add_argument(
        "--wavelength",
        default=None,
        metavar="W",
        help="wavelength of files that do not state theirs: Å (1.5406) or an anode (CuKa, "
        "MoKa, CoKa, ...)",
    )
    sub.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown")
    outputs = sub.add_mutually_exclusive_group()
    outputs.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    outputs.add_argument("--csv", type=Path, metavar="OUT", help="write the results as CSV")
    sub.add_argument(
        "--plot", type=Path, metavar="OUT.png", help="draw the patterns and probabilities"
    )
    sub.add_argument(
        "--background",
        default=None,
        help="background removal of measured patterns, in place of the model's own setting "
        "(train.preprocess.background, recorded in model.json): snip (SNIP, over the model's "
        "window) or none. Default: the model's; snip for a model that records none (such as "
        "the shipped one)",
    )
    sub.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help=f"processes reading files (0: one per CPU core; one per {FILES_PER_JOB} files "
        "at most)",
    )
    sub.add_argument(
        "--labels",
        type=Path,
        metavar="LABELS.csv",
        help="score the predictions: a CSV with columns file (path relative to its folder, or "
        "base name), crystal_system and optionally space_group; prints accuracy, macro-F1, "
        "per-class recall and the confusion matrix after the table",
    )
    sub.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="report a pattern whose top calibrated probability is below P (0 <= P < 1) as "
        "uncertain, its top classes still shown",
    )
    sub.add_argument(
        "--smooth",
        type=float,
        default=None,
        metavar="POINTS",
        help="Gaussian smoothing of measured patterns, σ in grid points of the model (0: "
        "none), in place of the model's own setting (train.preprocess.smooth_points). "
        "Default: the model's; 0 for a model that records none",
    )

    sub = commands.add_parser(
        "index",
        help="index powder patterns: peak positions, the lattice system and the unit cell",
        description="Find the peaks of powder patterns (the formats predict reads, or CIF "
        "structures, simulated first), and the unit cell and lattice system that index their "
        "first 20 lines: trial cells of every lattice system, refined by least squares with "
        "the zero shift and ranked by de Wolff's M(N). The chosen cell is marked *; the best "
        "cell of every other lattice system is listed below it.",
        epilog="example: xrdsym index scans/quartz.xy --wavelength CuKa --json cells.json "
        "--plot indexed/",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub.set_defaults(handler=_index)
    sub.add_argument(
        "inputs", nargs="+", type=Path, metavar="FILE_OR_FOLDER", help="files or folders"
    )
    sub.add_argument(
        "--wavelength",
        default=None,
        metavar="W",
        help="wavelength of files that do not state theirs, and of CIF structures: Å "
        "(1.5406) or an anode (CuKa, MoKa, CoKa, ...); structures default to CuKa1",
    )
    sub.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    sub.add_argument(
        "--plot", type=Path, metavar="DIR", help="draw each scan with its indexed reflections"
    )
    sub.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="PARAMS.yaml",
        help="read the peak finding and indexing settings from the sections peaks and index "
        "of this params file; none: the built-in defaults, those of params.yaml",
    )
    sub.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="S",
        help="seconds one pattern may take; none: index.time_budget_s",
    )
    sub.add_argument(
        "--all-systems",
        action="store_true",
        help="search every lattice system, also those a decisive more symmetric cell "
        "leaves out (index.settled_figure_of_merit 0)",
    )

    sub = stage("report", "print the test metrics as the paper's table", _report, False)
    sub.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.handler(args)
    except XrdsymError as exc:
        print(f"xrdsym {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(
            f"xrdsym {args.command}: error: {exc.filename}: file not found "
            "(has the previous stage run? try `dvc repro`)",
            file=sys.stderr,
        )
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
