"""Ship the model the pipeline last trained: copy it into the package with its provenance.

    dvc exp apply NAME
    python scripts/ship_model.py --experiment NAME --reproduce "dvc exp run -S ..." \
        --why "best on the measured dev sets" --measured bench/results/measured_accuracy.json

Run it in the workspace of the run being shipped (after `dvc repro`, `dvc exp run` or
`dvc exp apply`, whose params.yaml, dvc.lock and metrics are then those of the run).

A network shipped before that only got a combiner (`xrdsym combine`, after
`xrdsym index-patterns` on the store it was trained on) is shipped with
``--network-provenance``: the network's own provenance is kept under ``network``, and
params.yaml and dvc.lock are those of the index stage's workspace.
`xrdsym predict` uses the shipped model when no --model is given. The provenance file records
the git commit, the params, the data (DVC's hashes of the pattern set and the model), the test
metrics and how to reproduce it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import keras
import yaml

from xrdsym.io import atomic_path, write_json
from xrdsym.prediction import META_FILE, model_heads, model_members, read_model_meta

SHIPPED = Path("src/xrdsym/shipped_model")  # where `xrdsym predict` looks without --model
PROVENANCE_FILE = "provenance.json"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def _stage_outputs(lock: dict, stage: str) -> dict[str, str]:
    """Path -> DVC hash of a stage's outputs, from dvc.lock."""
    return {out["path"]: out["md5"] for out in lock["stages"][stage]["outs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/metrics.json"))
    parser.add_argument("--reproduce", required=True, help="the command that trained the model")
    parser.add_argument("--experiment", default=None, help="the DVC experiment's name, if any")
    parser.add_argument("--why", required=True, help="why this model is the one shipped")
    parser.add_argument(
        "--measured",
        type=Path,
        default=None,
        help="bench/measured_accuracy.py's JSON for this model (measured dev sets), if run",
    )
    parser.add_argument(
        "--network-provenance",
        type=Path,
        default=None,
        help="for a combiner added to a network shipped before: that network's provenance.json",
    )
    args = parser.parse_args()
    meta = read_model_meta(args.model)
    members = model_members(meta)
    for member in members:
        if not member["inference"] or not (args.model / member["inference"]).exists():
            raise SystemExit(
                f"{args.model}: no numpy export of {member['model']}; ship a model that "
                "predict can run without Keras"
            )
    lock = yaml.safe_load(Path("dvc.lock").read_text())
    network = json.loads(args.network_provenance.read_text()) if args.network_provenance else None
    provenance = {
        "reproduce": args.reproduce,
        "chosen_because": args.why,
        "dvc_experiment": args.experiment,
        # The code; params.yaml and dvc.lock differ from the commit's after `dvc exp apply`,
        # so the run's own params and data hashes are recorded below.
        "git_commit": _git("rev-parse", "HEAD").strip(),
        "params": yaml.safe_load(Path("params.yaml").read_text()),
        "data": _stage_outputs(lock, "patterns")
        | (_stage_outputs(lock, "train") if network is None else {}),
        "model": {key: meta[key] for key in ("model", "classes", "params_hash", "keras_backend")}
        | {"heads": list(model_heads(meta)), "ensemble_members": len(members)},
        "test_metrics": json.loads(args.metrics.read_text()),
        "measured_dev_sets": json.loads(args.measured.read_text()) if args.measured else None,
    }
    if "combiner" in meta:
        provenance["combiner"] = {k: v for k, v in meta["combiner"].items() if k != "features"}
    if network is not None:
        provenance["network"] = network
    with atomic_path(SHIPPED) as tmp:
        tmp.mkdir()
        shutil.copy2(args.model / META_FILE, tmp / META_FILE)
        if "combiner" in meta:
            shutil.copy2(args.model / meta["combiner"]["file"], tmp / meta["combiner"]["file"])
        for member in members:
            shutil.copy2(args.model / member["inference"], tmp / member["inference"])
            # Without the optimizer's state (two more copies of every weight): inference only.
            keras.saving.load_model(args.model / member["model"], compile=False).save(
                tmp / member["model"]
            )
        write_json(tmp / PROVENANCE_FILE, provenance)
    size = sum(path.stat().st_size for path in SHIPPED.iterdir()) / 1e6
    print(f"shipped {args.model} -> {SHIPPED} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
