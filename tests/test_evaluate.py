"""The evaluate stage's scoring of extra sets of CIF structures."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from xrdsym.prediction import load_classifier
from xrdsym.stages.evaluate import score_structure_set, scores


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

    metrics = scores(raw, y_true, classes, 1.0, "space_group")

    assert metrics["accuracy"] == 0.25 and metrics["top5_accuracy"] == 0.75
    assert "per_class" not in metrics
    systems = metrics["crystal_system"]
    assert systems["accuracy"] == 0.75  # wrong group, right system twice
    assert set(systems["per_class"]) == {"cubic", "monoclinic", "triclinic"}
