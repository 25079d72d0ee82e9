"""The evaluate stage's scoring of extra sets of CIF structures."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from xrdsym.prediction import load_classifier
from xrdsym.stages.evaluate import score_structure_set


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
