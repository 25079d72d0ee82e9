import numpy as np

from xrdsym.split import grouped_stratified_split


def _data(n_per_class=40, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"class{i}" for i in range(n_classes)], n_per_class)
    # Several rows share a formula, as polymorphs do.
    groups = np.array([f"{label}-f{rng.integers(15)}" for label in labels])
    return labels, groups


def test_no_formula_in_two_splits():
    labels, groups = _data()
    split = grouped_stratified_split(labels, groups, 0.2, 0.1, seed=3)
    for group in np.unique(groups):
        assert len(set(split[groups == group])) == 1


def test_sizes_and_classes():
    labels, groups = _data()
    split = grouped_stratified_split(labels, groups, 0.2, 0.1, seed=3)
    assert set(split) == {"train", "val", "test"}
    assert 0.1 < np.mean(split == "test") < 0.3
    assert 0.03 < np.mean(split == "val") < 0.2
    for label in np.unique(labels):  # stratified: every class is tested
        assert np.any(split[labels == label] == "test")


def test_seeded():
    labels, groups = _data()
    first = grouped_stratified_split(labels, groups, 0.2, 0.1, seed=3)
    assert np.array_equal(first, grouped_stratified_split(labels, groups, 0.2, 0.1, seed=3))
    assert not np.array_equal(first, grouped_stratified_split(labels, groups, 0.2, 0.1, seed=4))


def test_tiny_data_still_gets_three_splits():
    labels = np.array(["a", "a", "b", "b", "c", "c", "a", "b", "c", "a"])
    groups = np.array([f"f{i}" for i in range(10)])
    split = grouped_stratified_split(labels, groups, 0.2, 0.1, seed=0)
    assert set(split) == {"train", "val", "test"}
