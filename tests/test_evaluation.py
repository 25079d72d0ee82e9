import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdsym.config import validate
from xrdsym.errors import ParamsError
from xrdsym.evaluation import (
    CONDITION_KEYS,
    accuracies_at_coverage,
    ceiling_answers,
    classification_metrics,
    condition_settings,
    confusion,
    lattice_system_right,
    metrics_table,
    stored_fwhm_deg,
    top_k_accuracy,
)
from xrdsym.indexing import metric_lattice_system
from xrdsym.symmetry import lattice_system_of_space_group


def test_metrics_by_hand():
    classes = ["cubic", "hexagonal", "triclinic"]
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 1])
    metrics = classification_metrics(y_true, y_pred, classes)
    assert metrics["n_test"] == 6
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    cubic = metrics["per_class"]["cubic"]
    assert cubic["precision"] == pytest.approx(2 / 3)
    assert cubic["recall"] == pytest.approx(2 / 3)
    assert cubic["support"] == 3
    hexagonal = metrics["per_class"]["hexagonal"]
    assert hexagonal["precision"] == pytest.approx(1 / 3) and hexagonal["recall"] == 0.5
    assert metrics["per_class"]["triclinic"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    f1 = [2 / 3, 2 * (1 / 3 * 0.5) / (1 / 3 + 0.5), 0.0]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert metrics["weighted_f1"] == pytest.approx(np.average(f1, weights=[3, 2, 1]))


def test_confusion_rows_are_true_classes():
    matrix = confusion(np.array([0, 0, 1]), np.array([1, 0, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_table_has_a_row_per_class_and_the_averages():
    metrics = classification_metrics(
        np.array([0, 1, 1]), np.array([0, 1, 0]), ["cubic", "trigonal"]
    )
    table = metrics_table(metrics).splitlines()
    assert table[2] == "| cubic | 0.50 | 1.00 | 0.67 | 1 |"
    assert table[3] == "| trigonal | 1.00 | 0.50 | 0.67 | 2 |"
    assert table[4] == "| **accuracy** | | | 0.67 | 3 |"


def test_top_k_accuracy_by_hand():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    y_true = np.array([1, 0, 0])  # second, third and third most probable
    assert top_k_accuracy(probabilities, y_true, 1) == 0.0
    assert top_k_accuracy(probabilities, y_true, 2) == pytest.approx(1 / 3)
    assert top_k_accuracy(probabilities, y_true, 3) == 1.0


def test_accuracies_at_coverage_by_hand():
    # The most confident first: right, right, right, right, wrong, right, wrong, right, ...
    confidence = np.array([0.3, 0.9, 0.5, 0.8, 0.7, 0.05, 0.6, 0.2, 0.4, 0.1])
    correct = np.array([0, 1, 0, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert accuracies_at_coverage(confidence, correct, (0.5, 0.8, 1.0)) == {
        "50%": pytest.approx(4 / 5),
        "80%": pytest.approx(6 / 8),
        "100%": pytest.approx(6 / 10),
    }


def test_a_condition_sets_its_own_parts_only_at_the_stored_width():
    settings = condition_settings("kalpha2", {"ka2_ratio": 0.5}, stored_fwhm_deg(5, 0.02))
    assert settings.ka2_ratio == (0.5, 0.5)
    assert settings.instrument_fwhm_deg == pytest.approx((0.23548, 0.23548), abs=1e-5)
    assert settings.profile == "gaussian" and settings.crystallite_nm is None
    assert all(getattr(settings, key) is None for key in CONDITION_KEYS if key != "ka2_ratio")
    assert condition_settings("clean", {}, 0.2) is None  # the stored patterns themselves


@pytest.mark.parametrize(
    ("robustness", "message"),
    [
        ({"kalpha2": {"ka2_ratio": 2}}, "evaluate.robustness.kalpha2.ka2_ratio=2"),
        ({"wide": {"instrument_fwhm_deg": 0.5}}, "evaluate.robustness.wide.instrument_fwhm_deg"),
        ({"typo": {"noise_count": 300}}, "evaluate.robustness.typo.noise_count is not"),
        ({"bare": 0.5}, "evaluate.robustness.bare=0.5"),
        ([{"ka2_ratio": 0.5}], "evaluate.robustness="),
    ],
)
def test_invalid_conditions_are_named_in_one_line(robustness, message):
    params = {"evaluate": {"extra_sets": [], "robustness": robustness}}
    with pytest.raises(ParamsError) as error:
        validate(params)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_ceiling_reads_a_hexagonal_lattice_as_the_more_common_of_its_two_systems():
    oracle = ["hexagonal", "hexagonal", "hexagonal", "rhombohedral", "cubic", "orthorhombic"]
    truth = ["trigonal", "trigonal", "hexagonal", "trigonal", "cubic", "monoclinic"]

    answers, reading = ceiling_answers(oracle, truth)

    assert reading == "trigonal"
    assert answers == ["trigonal", "trigonal", "trigonal", "trigonal", "cubic", "orthorhombic"]
    assert ceiling_answers(oracle[2:], truth[2:])[1] == "hexagonal"


def test_a_lattice_system_is_right_when_powder_positions_cannot_tell_the_answers_apart():
    # Hexagonal and trigonal answers share a hexagonal lattice (quartz's, a trigonal P crystal);
    # a rhombohedral lattice is trigonal only; no answer is wrong.
    predicted = ["hexagonal", "trigonal", "hexagonal", "trigonal", "cubic", None]
    truth = ["hexagonal", "hexagonal", "rhombohedral", "rhombohedral", "tetragonal", "cubic"]

    assert lattice_system_right(predicted, truth).tolist() == [
        True,
        True,
        False,
        True,
        False,
        False,
    ]


def test_quartz_has_a_hexagonal_lattice_and_corundum_a_rhombohedral_one():
    quartz = Lattice.hexagonal(4.913, 5.405)
    assert metric_lattice_system(quartz.matrix) == ("hexagonal", "P")
    assert lattice_system_of_space_group(154) == "hexagonal"  # quartz, P3_221
    corundum = Structure.from_spacegroup(
        "R-3c", Lattice.hexagonal(4.759, 12.99), ["Al", "O"], [[0, 0, 0.352], [0.306, 0, 0.25]]
    )
    primitive = corundum.get_primitive_structure()
    assert metric_lattice_system(primitive.lattice.matrix) == ("rhombohedral", "R")
    assert lattice_system_of_space_group(167) == "rhombohedral"
    # A tetragonal cell with c / a = 1.0005 is a cubic metric as far as positions tell.
    assert metric_lattice_system(Lattice.tetragonal(4.0, 4.002).matrix)[0] == "cubic"
