"""The combiner of the network and the indexing: its features and how it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdsym.hybrid import (
    FEATURES,
    MISSING,
    Combiner,
    combiner_inputs,
    feature_matrix,
    index_features,
    indexed_crystal_system,
    restrict_space_groups,
)
from xrdsym.index_scans import index_peaks, structure_peaks
from xrdsym.indexing import LATTICE_SYSTEMS, index_lines

CLASSES = ["cubic", "hexagonal", "tetragonal"]


def test_features_of_rock_salt_say_cubic_with_a_high_figure_of_merit(rock_salt):
    peaks = structure_peaks(rock_salt, "CuKa1")
    result = index_peaks(peaks)

    features = index_features(len(peaks), result)

    assert list(features) == list(FEATURES)
    assert features["chosen_cubic"] == 1 and features["chosen_none"] == 0
    assert sum(features[f"chosen_{s}"] for s in (*LATTICE_SYSTEMS, "none")) == 1
    assert features["cubic_m"] > 100 and features["cubic_indexed_share"] == 1
    assert features["cubic_merit_ratio"] == 1
    # The conventional F cell: a = 5.64 Å.
    assert features["cubic_volume"] == pytest.approx(5.64**3, rel=1e-3)
    assert features["n_peaks"] == len(peaks)
    # The cubic cell settled the search: the less symmetric systems have no cell.
    assert math.isnan(features["triclinic_m"])


def test_features_of_too_few_lines_are_missing_but_for_the_count():
    result = index_lines(np.array([20.0, 30.0, 40.0]), 1.5406)

    features = index_features(3, result)

    assert features["chosen_none"] == 1 and features["n_peaks"] == 3
    assert all(math.isnan(features[f"{s}_m"]) for s in LATTICE_SYSTEMS)
    row = combiner_inputs(np.full((1, 3), 1 / 3), feature_matrix([features]))[0]
    assert row[0] == pytest.approx(math.log(1 / 3))
    assert np.isfinite(row).all() and (row[3:] == MISSING).sum() == 6 * len(LATTICE_SYSTEMS)


def test_indexing_alone_reads_a_rhombohedral_lattice_as_trigonal():
    assert indexed_crystal_system("rhombohedral") == "trigonal"
    assert indexed_crystal_system("hexagonal") == "hexagonal"
    assert indexed_crystal_system(None) is None


def _patterns(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network probabilities that know nothing (uniform) and indexing features whose chosen
    lattice system is the class 9 times out of 10."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    chosen = np.where(rng.random(n) < 0.9, y, rng.integers(0, len(CLASSES), n))
    rows = []
    for system in chosen:
        row = dict.fromkeys(FEATURES, math.nan)
        row |= {f"chosen_{s}": 0.0 for s in (*LATTICE_SYSTEMS, "none")}
        row[f"chosen_{CLASSES[system]}"] = 1.0
        row[f"{CLASSES[system]}_m"] = rng.uniform(20, 200)
        row["n_peaks"] = float(rng.integers(5, 40))
        rows.append(row)
    return np.full((n, len(CLASSES)), 1 / len(CLASSES)), feature_matrix(rows), y


def test_the_combiner_learns_what_the_indexing_knows_and_the_network_does_not(tmp_path):
    network, features, y = _patterns(300, seed=0)
    combiner = Combiner.fit(network, features, y, CLASSES, seed=0)

    assert combiner.summary["network_accuracy"] < 0.5
    assert combiner.summary["out_of_fold_accuracy"] > 0.8
    network_test, features_test, y_test = _patterns(200, seed=1)
    probabilities = combiner.probabilities(network_test, features_test)
    assert probabilities.shape == (200, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
    assert np.mean(probabilities.argmax(axis=1) == y_test) > 0.8

    record = combiner.save(tmp_path)
    again = Combiner.load(tmp_path, record, CLASSES)
    np.testing.assert_array_equal(again.probabilities(network_test, features_test), probabilities)
    assert record["temperature"] == combiner.temperature and record["n_fit"] == 300


def test_a_class_missing_from_the_fit_keeps_its_place_with_a_tiny_probability():
    network, features, y = _patterns(120, seed=2)
    keep = y != 1
    combiner = Combiner.fit(network[keep], features[keep], y[keep], CLASSES, seed=0)

    probabilities = combiner.probabilities(network, features)

    assert probabilities.shape == (120, 3) and probabilities[:, 1].max() < 1e-3


def test_the_combiner_refuses_patterns_of_one_class_and_skips_folds_for_singletons():
    network, features, y = _patterns(30, seed=3)
    with pytest.raises(ValueError, match="two classes"):
        Combiner.fit(network, features, np.zeros(30, dtype=int), CLASSES, seed=0)
    y = np.array([0] * 15 + [1] * 14 + [2])
    combiner = Combiner.fit(network, features, y, CLASSES, seed=0)
    assert combiner.summary["out_of_fold_accuracy"] is None and combiner.temperature == 1.0


def test_space_groups_are_kept_to_those_of_the_indexed_lattice():
    groups = ["154", "167", "194", "225"]  # quartz, corundum (R), magnesium, rock salt
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4]] * 4)

    restricted = restrict_space_groups(
        probabilities, groups, ["hexagonal", "rhombohedral", None, "monoclinic"]
    )

    np.testing.assert_allclose(restricted[0], [0.25, 0, 0.75, 0])
    np.testing.assert_allclose(restricted[1], [0, 1, 0, 0])
    # Not indexed, or no group of the indexed lattice among them: as they were.
    np.testing.assert_allclose(restricted[2:], probabilities[2:])
