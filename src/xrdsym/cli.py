"""Command line: ``xrdsym <stage>`` runs one DVC stage; dvc.yaml calls exactly these.

Params are read here, once, and each stage gets only the keys it declares. Errors a user can
cause (bad params, missing inputs, no network) end as one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from xrdsym import __version__
from xrdsym.config import load_params, stage_params
from xrdsym.errors import XrdsymError

# TensorFlow's C++ start-up chatter (oneDNN, missing CUDA) buries the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _download(args: argparse.Namespace) -> None:
    from xrdsym.stages import download

    download.run(stage_params(load_params(args.params), download.PARAMS), args.out, args.metrics)


def _patterns(args: argparse.Namespace) -> None:
    from xrdsym.stages import patterns

    params = stage_params(load_params(args.params), patterns.PARAMS)
    patterns.run(params, args.structures, args.out, args.metrics)


def _images(args: argparse.Namespace) -> None:
    from xrdsym.stages import images

    images.run(stage_params(load_params(args.params), images.PARAMS), args.patterns, args.out)


def _train(args: argparse.Namespace) -> None:
    from xrdsym.stages import train

    params = stage_params(load_params(args.params), train.PARAMS)
    train.run(params, args.images, args.out, args.live)


def _evaluate(args: argparse.Namespace) -> None:
    from xrdsym.stages import evaluate

    evaluate.run(args.model, args.images, args.patterns, args.metrics, args.plots)


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

    sub = stage("images", "draw a square image of every pattern", _images)
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--out", type=Path, default=Path("data/images"))

    sub = stage("train", "train the classifier on the training images", _train)
    sub.add_argument("--images", type=Path, default=Path("data/images"))
    sub.add_argument("--out", type=Path, default=Path("models"))
    sub.add_argument("--live", type=Path, default=Path("metrics/train"), help="DVCLive folder")

    sub = stage("evaluate", "score the model on the test split", _evaluate, reads_params=False)
    sub.add_argument("--model", type=Path, default=Path("models"))
    sub.add_argument("--images", type=Path, default=Path("data/images"))
    sub.add_argument("--patterns", type=Path, default=Path("data/patterns"))
    sub.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    sub.add_argument("--plots", type=Path, default=Path("plots/evaluate"))

    sub = stage("report", "print the test metrics as the paper's table", _report, False)
    sub.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
