"""The evaluate stage: scoring extra sets of CIF structures, the test split under other
measurement conditions, the metrics and plots it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import GRID, patterns_store, simulated
from pymatgen.core import Lattice, Structure

from xrdsym.diffraction import TwoThetaGrid
from xrdsym.evaluation import condition_patterns, condition_settings, stored_fwhm_deg
from xrdsym.prediction import load_classifier
from xrdsym.stages import evaluate
from xrdsym.stages.evaluate import score_robustness, score_structure_set, scores

ROOT = Path(__file__).resolve().parents[1]
# The default conditions, as params.yaml states them.
CONDITIONS = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["robustness"]
MAGNESIUM = Structure(
    Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
)
# A large cell: its first peaks lie below 10 degrees, where a scan from 10 degrees sees nothing.
LARGE_CELL = Structure(Lattice.cubic(15.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
# Re-simulated peaks sit at their exact angle, the stored ones at the nearest grid point: up to
# half a step apart, which changes a Gaussian of sigma 5 points by up to 0.5 / (5 sqrt(e)) =
# 0.06 of its height on its flanks (more where peaks overlap); nowhere else.
CLEAN_MAX_DIFFERENCE = 0.1
CLEAN_MEAN_DIFFERENCE = 2e-3


def test_extra_set_scores_structures_and_lists_rejects(tmp_path, model_dir, rock_salt, rutile):
    folder = tmp_path / "real"
    (folder / "oxides").mkdir(parents=True)
    rock_salt.to(filename=str(folder / "nacl.cif"))
    rutile.to(filename=str(folder / "oxides" / "rutile.cif"))
    triclinic = Structure(Lattice.from_parameters(4, 5, 6, 80, 85, 95), ["Si"], [[0, 0, 0]])
    triclinic.to(filename=str(folder / "triclinic.cif"))  # not one of the model's classes
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5\n")
    classifier = load_classifier(model_dir)

    metrics, predictions, rejects = score_structure_set(classifier, folder, n_jobs=1)

    assert metrics["n_test"] == 2 and metrics["n_rejected"] == 2
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["calibration"]["ece"] <= 1
    assert list(predictions["id"]) == ["nacl.cif", "oxides/rutile.cif"]
    assert list(predictions["actual"]) == ["cubic", "tetragonal"]
    assert set(predictions["predicted"]) <= set(classifier.classes)
    reasons = {row["id"]: row["reason"] for row in rejects}
    assert set(reasons) == {"broken.cif", "triclinic.cif"}
    assert "triclinic is not one of the model's classes" in reasons["triclinic.cif"]
    assert set(metrics["accuracy_at_coverage"]) == {"50%", "80%", "100%"}


def test_space_group_scores_report_top5_and_the_implied_crystal_systems():
    # triclinic 1, 2; monoclinic 3, 4; cubic 221, 225, 227, 229
    classes = ["1", "2", "3", "4", "221", "225", "227", "229"]
    raw = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 0.2, 0.1],  # true 225, predicted 225
            [0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4],  # true 225 (3rd), predicted 229
            [0.5, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0],  # true 2 (2nd), predicted 1
            [0.0, 0.0, 0.05, 0.05, 0.3, 0.3, 0.2, 0.1],  # true 3 (5th or 6th), predicted 221
        ]
    )
    y_true = np.array([5, 5, 1, 2])

    metrics = scores(
        {"classes": raw}, {"classes": raw}, y_true, {"classes": classes}, "space_group"
    )

    assert metrics["accuracy"] == 0.25 and metrics["top5_accuracy"] == 0.75
    assert "per_class" not in metrics
    systems = metrics["crystal_system"]
    assert systems["accuracy"] == 0.75  # wrong group, right system twice
    assert set(systems["per_class"]) == {"cubic", "monoclinic", "triclinic"}


def test_a_space_group_head_is_scored_beside_the_crystal_system():
    systems = ["cubic", "monoclinic", "triclinic"]
    groups = ["1", "2", "3", "4", "221", "225", "227", "229"]
    crystal = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    group = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 0.2, 0.1],  # true 225: top-1
            [0.0, 0.0, 0.1, 0.0, 0.1, 0.2, 0.3, 0.3],  # true 3: top-5, implies cubic
            [0.5, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0],  # true 1: top-1
            [0.0, 0.0, 0.05, 0.05, 0.3, 0.3, 0.2, 0.1],  # true 1: last, implies cubic
        ]
    )
    heads = {"classes": systems, "space_group": groups}
    outputs = {"classes": crystal, "space_group": group}

    metrics = scores(
        outputs, outputs, np.array([0, 1, 2, 1]), heads, "crystal_system", np.array([5, 2, 0, 0])
    )

    assert metrics["accuracy"] == 0.75 and set(metrics["per_class"]) == set(systems)
    head = metrics["space_group_head"]
    assert head["top1_accuracy"] == 0.5 and head["top5_accuracy"] == 0.75
    # Implied: cubic, cubic, triclinic, cubic against the true groups' cubic, monoclinic,
    # triclinic, triclinic.
    assert head["implied_crystal_system"]["accuracy"] == 0.5
    assert 0 <= head["ece"] <= 1


def test_clean_condition_reproduces_the_stored_patterns(rock_salt, rutile):
    grid, sigma = TwoThetaGrid(0, 90, 0.02), 5  # the default grid and broadening
    table, stored = simulated([rock_salt, rutile, MAGNESIUM], grid, sigma)
    # A condition whose only part is switched off re-simulates the patterns unperturbed.
    clean = condition_settings("clean", {"ka2_ratio": 0}, stored_fwhm_deg(sigma, grid.step))

    again = condition_patterns(table, grid, 1.54184, clean)

    assert again.shape == stored.shape and again.dtype == np.float32
    assert np.abs(again - stored).max() < CLEAN_MAX_DIFFERENCE
    assert np.abs(again - stored).mean() < CLEAN_MEAN_DIFFERENCE
    assert np.array_equal(np.argmax(again, axis=1), np.argmax(stored, axis=1))


@pytest.mark.parametrize("name", [name for name, keys in CONDITIONS.items() if keys])
def test_each_condition_changes_the_patterns_the_same_way_every_run(name, rock_salt, rutile):
    grid, sigma = TwoThetaGrid(0, 90, 0.02), 5
    table, _ = simulated([rock_salt, rutile, MAGNESIUM, LARGE_CELL], grid, sigma)
    width = stored_fwhm_deg(sigma, grid.step)
    clean = condition_patterns(
        table, grid, 1.54184, condition_settings("clean", {"ka2_ratio": 0}, width)
    )
    settings = condition_settings(name, CONDITIONS[name], width)

    changed = condition_patterns(table, grid, 1.54184, settings)

    assert np.abs(changed - clean).max() > 0.01
    assert np.array_equal(changed, condition_patterns(table, grid, 1.54184, settings))


def test_robustness_scores_every_condition_against_the_stored_patterns(
    tmp_path, model_dir, rock_salt, rutile
):
    patterns_dir = tmp_path / "patterns"
    structures = [rock_salt, MAGNESIUM, rutile]
    patterns_store(patterns_dir, structures, ["cubic", "hexagonal", "tetragonal"], GRID, 2)
    classifier = load_classifier(model_dir, engine="keras")

    robustness = score_robustness(classifier, patterns_dir, CONDITIONS)

    assert list(robustness) == list(CONDITIONS)
    for row in robustness.values():
        assert set(row) == {"accuracy", "macro_f1", "drop"}
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1
    assert robustness["clean"]["drop"] == 0
    stored = robustness["clean"]["accuracy"]
    assert all(
        row["accuracy"] + row["drop"] == pytest.approx(stored) for row in robustness.values()
    )


def test_evaluate_writes_robustness_and_coverage_metrics_and_plots(
    tmp_path, model_dir, rock_salt, rutile
):
    patterns_dir = tmp_path / "patterns"
    structures = [rock_salt, MAGNESIUM, rutile]
    patterns_store(patterns_dir, structures, ["cubic", "hexagonal", "tetragonal"], GRID, 2)
    params = {"n_jobs": 1, "evaluate": {"extra_sets": [], "robustness": CONDITIONS}}
    metrics_path, plots_dir = tmp_path / "metrics.json", tmp_path / "plots"

    evaluate.run(params, model_dir, tmp_path / "images", patterns_dir, metrics_path, plots_dir)

    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["robustness"]) == set(CONDITIONS)
    assert set(metrics["accuracy_at_coverage"]) == {"50%", "80%", "100%"}
    assert metrics["accuracy_at_coverage"]["100%"] == pytest.approx(metrics["accuracy"])
    assert all(0 <= value <= 1 for value in metrics["accuracy_at_coverage"].values())
    table = pd.read_csv(plots_dir / "robustness.csv")
    assert list(table.columns) == ["condition", "accuracy"]
    assert list(table["condition"]) == list(CONDITIONS)
    assert (plots_dir / "robustness.png").stat().st_size > 0
