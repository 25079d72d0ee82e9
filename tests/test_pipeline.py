"""End to end: the real `dvc repro` and `dvc exp run` on a copy of this repo, tiny params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pymatgen.core import Lattice, Structure

ROOT = Path(__file__).resolve().parents[1]
# Outputs of a previous run in the source tree; the copy starts without them.
SKIP = ("dvc.lock", "metrics/", "plots/")
TINY = {
    "n_per_class": 8,
    "two_theta_step": 0.05,
    "images": {"method": "raster", "size": 32, "colormap": "viridis"},
    "train": {"epochs": 2, "batch_size": 16, "alpha": 0.35, "patience": 2},
    "evaluate": {"extra_sets": ["evaluation_sets/tiny"]},
}
NACL = Structure.from_spacegroup(
    "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
)


def _tiny_extra_set(folder: Path) -> None:
    """Two real structures and a broken CIF: the extra set that evaluate scores."""
    folder.mkdir(parents=True)
    NACL.to(filename=str(folder / "nacl.cif"))
    Structure(
        Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    ).to(filename=str(folder / "mg.cif"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5.0\n")


def _copy_repo(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if name.startswith(SKIP) or not (ROOT / name).is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


def _run(repo: Path, *command: str) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_repro_then_nothing_then_sigma_sweep_then_image_model(tmp_path):
    repo = tmp_path / "repo"
    _copy_repo(repo)
    _tiny_extra_set(repo / "evaluation_sets" / "tiny")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in TINY.items():
        params[key] = {**params[key], **value} if isinstance(value, dict) else value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.email", "test@example.org")
    _run(repo, "git", "config", "user.name", "xrdsym test")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "tiny params")

    first = _run(repo, "dvc", "repro")
    for stage in ["download", "patterns", "index", "synthesize", "images", "train", "evaluate"]:
        assert f"Running stage '{stage}'" in first
    # The default data: a seeded subset of the embedded real set, split by structure type.
    download = json.loads((repo / "metrics" / "download.json").read_text())
    assert download["per_source"]["cif_table"]["read"] == 8 * len(params["classes"])
    assert download["stated_space_group"]["cif_table"]["stated"] > 0
    index = pd.read_csv(repo / "data" / "patterns" / "index.csv")
    assert set(index["source"]) == {"cif_table"}
    assert (index.groupby("structure_type")["split"].nunique() == 1).all()
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["n_test"] > 0
    assert set(metrics["per_class"]) == set(params["classes"])
    assert (
        0 <= metrics["calibration"]["ece"] <= 1 and min(metrics["calibration"]["temperatures"]) > 0
    )
    tiny = metrics["extra_sets"]["tiny"]
    assert (tiny["n_test"], tiny["n_rejected"]) == (2, 1)
    assert "nacl.cif" in (repo / "plots" / "evaluate" / "extra_tiny.csv").read_text()
    assert "broken.cif" in (repo / "plots" / "evaluate" / "extra_tiny_rejects.csv").read_text()
    for figure in [
        "confusion.png",
        "class_balance.png",
        "example_pattern.png",
        "confusion.csv",
        "calibration.png",
        "accuracy_coverage.csv",
    ]:
        assert (repo / "plots" / "evaluate" / figure).stat().st_size > 0
    assert (repo / "metrics" / "train" / "plots" / "metrics" / "train" / "loss.tsv").exists()
    meta = json.loads((repo / "models" / "model.json").read_text())
    assert meta["classes"] == params["classes"]
    assert meta["preprocessing"]["pattern"]["sigma_points"] == 5
    # The index stage indexed every validation and test pattern; the combiner was fitted on
    # the validation ones and is scored beside the network, the indexing and the ceiling.
    indexed = json.loads((repo / "metrics" / "index.json").read_text())
    split_sizes = index["split"].value_counts()
    assert indexed["per_split"]["test"]["n"] == split_sizes["test"]
    assert indexed["per_split"]["val"]["n"] == split_sizes["val"]
    assert meta["combiner"]["n_fit"] == split_sizes["val"]
    measured = metrics["test_measured"]
    assert measured["n_test"] == split_sizes["test"]
    for source in ("network", "indexing", "combined", "ceiling"):
        assert 0 <= measured[source]["accuracy"] <= 1
        assert 0 <= measured["lattice_system_accuracy"][source] <= 1
    assert (repo / "plots" / "evaluate" / "confusion_measured.png").stat().st_size > 0

    second = _run(repo, "dvc", "repro")
    assert "Running stage" not in second
    assert "Data and pipelines are up to date." in second

    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "first run")
    sweep = _run(repo, "dvc", "exp", "run", "-S", "sigma=3")
    assert "Running stage 'download'" not in sweep
    for stage in ["patterns", "index", "images", "train", "evaluate"]:
        assert f"Running stage '{stage}'" in sweep
    meta = json.loads((repo / "models" / "model.json").read_text())
    assert meta["preprocessing"]["pattern"]["sigma_points"] == 3

    diff = json.loads(_run(repo, "dvc", "metrics", "diff", "--all", "--json"))
    assert "accuracy" in diff["metrics/metrics.json"]
    assert "test_measured.combined.accuracy" in diff["metrics/metrics.json"]
    assert "per_split.test.indexed" in diff["metrics/index.json"]
    assert "n_patterns" in diff["metrics/patterns.json"]
    assert "train.loss" in diff["metrics/train/metrics.json"]

    # The default 1D model read the patterns: no image was drawn.
    assert not list((repo / "data" / "images").rglob("*.png"))
    assert meta["model"] == "cnn1d" and meta["input"] == "pattern"

    # The paper's image model on the same patterns: images are drawn, patterns reused.
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "sigma 3")
    image = _run(
        repo,
        *("dvc", "exp", "run", "-S", "model=mobilenetv2", "-S", "train.augment.enabled=false"),
    )
    assert "Running stage 'patterns'" not in image
    for stage in ["index", "images", "train", "evaluate"]:
        assert f"Running stage '{stage}'" in image
    meta = json.loads((repo / "models" / "model.json").read_text())
    assert meta["model"] == "mobilenetv2" and meta["input"] == "image"
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and 0 <= metrics["accuracy"] <= 1
    _run(repo, "git", "checkout", "--", "params.yaml")

    NACL.to(filename=str(repo / "nacl.cif"))
    # A space-group model on the same patterns: only train and evaluate run again.
    NACL.to(filename=str(repo / "nacl.cif"))
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "1D model")
    space_group = _run(repo, "dvc", "exp", "run", "-S", "target=space_group")
    assert "Running stage 'patterns'" not in space_group
    assert "Running stage 'train'" in space_group and "Running stage 'evaluate'" in space_group
    meta = json.loads((repo / "models" / "model.json").read_text())
    assert meta["target"] == "space_group" and len(meta["classes"]) == 230
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= metrics["top5_accuracy"] <= 1
    assert set(metrics["crystal_system"]["per_class"]) == set(params["classes"])
    answer = _run(repo, "xrdsym", "predict", "nacl.cif", "--model", "models", "--top-k", "7")
    assert "space group (calibrated probability)" in answer and "nacl.cif\tstructure" in answer

    # Without --model, `xrdsym predict` uses the model shipped with xrdsym, and says so.
    answer = _run(repo, "xrdsym", "predict", "nacl.cif")
    assert "shipped with xrdsym" in answer and "crystal system (calibrated" in answer

    # The residual network with a space-group head, an ensemble of two, trained on the real
    # training split and synthetic crystals drawn from its statistics, on the log-d axis.
    _run(repo, "git", "checkout", "--", "params.yaml")
    strong = _run(
        repo,
        *("dvc", "exp", "run", "-S", "model=resnet1d", "-S", "train.space_group_head=true"),
        *("-S", "train.ensemble=2", "-S", "synthesize.n_structures=12"),
        *("-S", "train.data=real_and_synthetic", "-S", "train.preprocess.coordinate=log_d"),
    )
    assert "Running stage 'patterns'" not in strong
    for stage in ["synthesize", "train", "evaluate"]:
        assert f"Running stage '{stage}'" in strong
    synthetic = pd.read_csv(repo / "data" / "synthetic" / "index.csv")
    assert len(synthetic) > 0 and set(synthetic["split"]) == {"train"}
    meta = json.loads((repo / "models" / "model.json").read_text())
    assert meta["model"] == "resnet1d" and len(meta["members"]) == 2
    assert meta["preprocessing"]["inputs"]["coordinate"] == "log_d"
    assert len(meta["heads"]["space_group"]) == 230
    train_summary = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())
    real_train = (pd.read_csv(repo / "data" / "patterns" / "index.csv")["split"] == "train").sum()
    assert train_summary["n_train"] == real_train + len(synthetic)
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    head = metrics["space_group_head"]
    assert 0 <= head["top1_accuracy"] <= head["top5_accuracy"] <= 1
    assert len(metrics["calibration"]["temperatures"]) == 2
    answer = _run(repo, "xrdsym", "predict", "nacl.cif", "--model", "models")
    assert "space group (head besides)" in answer and "run by numpy" in answer

    # AMCSD minerals instead of the embedded set (a seeded few).
    _run(repo, "git", "checkout", "--", "params.yaml")
    minerals = _run(
        repo, *("dvc", "exp", "run", "-S", "source=amcsd", "-S", "download.amcsd.limit=60")
    )
    assert "Running stage 'download'" in minerals and "Running stage 'train'" in minerals
    download = json.loads((repo / "metrics" / "download.json").read_text())
    read = download["per_source"]["amcsd"]["read"]
    assert read + download["n_unreadable"] == 60
    assert download["stated_space_group"]["amcsd"]["stated"] == read
