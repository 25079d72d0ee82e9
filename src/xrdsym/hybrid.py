"""Crystal system from the indexing and the network together.

The peak positions fix a lattice's metric, and :mod:`xrdsym.indexing` reads it from them.
What the positions cannot fix, the network's reading of the whole profile decides: a trigonal
crystal on a hexagonal lattice (its lines fall where a hexagonal crystal's do; only the
intensities differ), a metric more symmetric than the atoms (β = 90.02°), a scan with too few
lines to index (a textured film), impurity lines, a scan too poor to index.

The combiner is a gradient-boosted tree ensemble (scikit-learn's
``HistGradientBoostingClassifier``) over the network's calibrated log-probabilities and the
indexing's features (:func:`index_features`): per lattice system, the best cell's de Wolff
M(N), Smith-Snyder F(N), share of lines indexed, volume and zero shift, and its merit over the
best system's; the peaks found; the indexer's decision. A lattice system without a cell (not
searched because the search settled earlier or the time budget ran out, or no trial cell)
reads as MISSING, a value no feature takes, so that the trees can split it off. It is fitted
on patterns the network never trained on, the validation split measured once
(:data:`xrdsym.inputs.MEASUREMENT_STREAMS`), and temperature-scaled on its out-of-fold
probabilities.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrdsym.calibration import apply_temperature, fit_temperature
from xrdsym.indexing import CRYSTAL_SYSTEM_OF_LATTICE, LATTICE_SYSTEMS, IndexResult, lattice_vectors

PER_SYSTEM_FEATURES = ("m", "f", "indexed_share", "volume", "zero_shift_deg", "merit_ratio")
"""What each lattice system's best cell contributes (missing when the system has none)."""

FEATURES = (
    "n_peaks",
    "n_lines",
    "budget_spent",
    *(f"{system}_{name}" for system in LATTICE_SYSTEMS for name in PER_SYSTEM_FEATURES),
    *(f"chosen_{system}" for system in (*LATTICE_SYSTEMS, "none")),
)
"""The indexing's features of one pattern, in the order the combiner reads them."""

COMBINER_FILE = "combiner.pkl"
# Folds of the out-of-fold probabilities the combiner's temperature is fitted on.
CALIBRATION_FOLDS = 5
# The trees: shallow and regularised, for a few hundred to a few thousand patterns.
TREE_SETTINGS = {
    "learning_rate": 0.05,
    "max_iter": 200,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
}
# Probabilities are clipped here before their logarithm (a float32 softmax can give 0).
_TINY = 1e-6
# What a missing feature reads as: far below any feature's value (every one is >= 0 but the
# zero shift, a fraction of a degree). (Not NaN: scikit-learn's binning fails on a column
# that is NaN throughout, as a lattice system never searched in a fold is.)
MISSING = -1000.0


def index_features(n_peaks: int, result: IndexResult) -> dict[str, float]:
    """The features of one pattern's indexing (see :data:`FEATURES`): ``n_peaks`` peaks
    found, ``result`` the indexer's outcome on them. Missing values are NaN."""
    features = dict.fromkeys(FEATURES, math.nan)
    features["n_peaks"] = float(n_peaks)
    features["n_lines"] = float(len(result.two_theta))
    features["budget_spent"] = float(result.budget_spent)
    merits = [cell.merit for cell in result.candidates.values()]
    best_merit = max(merits, default=0.0)
    for system, cell in result.candidates.items():
        volume = abs(float(np.linalg.det(lattice_vectors(cell.cell)))) if cell.cell else math.nan
        features |= {
            f"{system}_m": cell.m,
            f"{system}_f": cell.f,
            f"{system}_indexed_share": cell.lines_indexed / max(cell.lines_used, 1),
            f"{system}_volume": volume,
            f"{system}_zero_shift_deg": cell.zero_shift_deg,
            f"{system}_merit_ratio": cell.merit / best_merit if best_merit > 0 else 0.0,
        }
    chosen = result.lattice_system or "none"
    for system in (*LATTICE_SYSTEMS, "none"):
        features[f"chosen_{system}"] = float(system == chosen)
    return features


def indexed_crystal_system(lattice_system: str | None) -> str | None:
    """The crystal system the indexing alone gives: the lattice system's (rhombohedral is
    trigonal, a hexagonal lattice hexagonal), None when nothing was indexed."""
    return None if lattice_system is None else CRYSTAL_SYSTEM_OF_LATTICE[lattice_system]


def restrict_space_groups(
    probabilities: np.ndarray, space_groups: Sequence[str], lattice_systems: Sequence[str | None]
) -> np.ndarray:
    """Space-group probabilities (N x groups, the groups' numbers as text) kept to the groups
    of each pattern's indexed lattice system and renormalised; a pattern without one (None),
    or whose groups all have probability 0, keeps its own. The centring is not used: the
    indexed cell's (C, A or I for one monoclinic lattice) need not be the group's setting."""
    from xrdsym.symmetry import lattice_system_of_space_group

    group_lattices = np.array([lattice_system_of_space_group(int(g)) for g in space_groups])
    restricted = np.array(probabilities, dtype=np.float64)
    for row, system in enumerate(lattice_systems):
        if system is None:
            continue
        kept = np.where(group_lattices == system, restricted[row], 0.0)
        if kept.sum() > 0:
            restricted[row] = kept / kept.sum()
    return restricted


def combiner_inputs(network_probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
    """What the combiner reads: the network's log-probabilities (N x classes) beside the
    indexing's features (N x len(FEATURES), NaN where missing, read as MISSING)."""
    log_p = np.log(np.clip(np.asarray(network_probabilities, dtype=np.float64), _TINY, 1.0))
    return np.hstack([log_p, np.nan_to_num(np.asarray(features, dtype=np.float64), nan=MISSING)])


def feature_matrix(rows: Sequence[dict[str, float]] | Any) -> np.ndarray:
    """The :data:`FEATURES` of many patterns (dicts of :func:`index_features`, or a table
    with those columns) as an N x len(FEATURES) array."""
    if hasattr(rows, "columns"):  # a pandas DataFrame
        return rows.loc[:, list(FEATURES)].to_numpy(dtype=np.float64)
    return np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)


@dataclass
class Combiner:
    """The fitted combiner: the trees, the temperature of their probabilities, the classes
    (those of the network it was fitted with) and what it was fitted on."""

    model: Any
    temperature: float
    classes: list[str]
    summary: dict[str, Any]

    @classmethod
    def fit(
        cls,
        network_probabilities: np.ndarray,
        features: np.ndarray,
        y_true: np.ndarray,
        classes: Sequence[str],
        seed: int,
        class_weight: str = "balanced",
    ) -> Combiner:
        """Fit on patterns the network did not train on: its calibrated probabilities (N x
        classes), their indexing features and true class indices. The temperature is fitted
        on out-of-fold probabilities (CALIBRATION_FOLDS stratified folds, fewer for a class
        with fewer patterns; none, temperature 1, when one has a single pattern), the trees
        then on every pattern. ``class_weight``: "balanced" weighs every class alike (as
        train.class_weight does the network's loss; the probabilities then hold for balanced
        classes), "none" weighs every pattern alike. ValueError for patterns of fewer than
        two classes."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        x = combiner_inputs(network_probabilities, features)
        y = np.asarray(y_true)
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError("the combiner needs patterns of at least two classes")
        temperature, out_of_fold_accuracy = 1.0, None
        smallest = min(int(np.sum(y == c)) for c in present)
        if smallest >= 2:
            splitter = StratifiedKFold(
                min(CALIBRATION_FOLDS, smallest), shuffle=True, random_state=seed
            )
            out_of_fold = _all_classes(
                cross_val_predict(
                    _trees(seed, class_weight), x, y, cv=splitter, method="predict_proba"
                ),
                present,
                len(classes),
            )
            temperature = fit_temperature(out_of_fold, y)
            calibrated = apply_temperature(out_of_fold, temperature)
            out_of_fold_accuracy = float(np.mean(np.argmax(calibrated, axis=1) == y))
        model = _trees(seed, class_weight).fit(x, y)
        summary = {
            "n_fit": len(y),
            # None: a class with one pattern leaves no folds; the temperature stays 1.
            "out_of_fold_accuracy": out_of_fold_accuracy,
            "network_accuracy": float(np.mean(np.argmax(network_probabilities, axis=1) == y)),
            "temperature": temperature,
            "class_weight": class_weight,
        }
        return cls(model, temperature, list(classes), summary)

    def probabilities(self, network_probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Calibrated crystal-system probabilities (N x classes)."""
        raw = self.model.predict_proba(combiner_inputs(network_probabilities, features))
        full = _all_classes(raw, self.model.classes_, len(self.classes))
        return apply_temperature(full, self.temperature)

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the trees into ``directory``; what model.json records about the combiner."""
        import sklearn

        with open(directory / COMBINER_FILE, "wb") as handle:
            pickle.dump(self.model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return {
            "file": COMBINER_FILE,
            "learner": "HistGradientBoostingClassifier",
            "sklearn_version": sklearn.__version__,
            "features": ["network log-probability of each class", *FEATURES],
            "temperature": self.temperature,
            **self.summary,
        }

    @classmethod
    def load(cls, directory: Path, record: dict[str, Any], classes: Sequence[str]) -> Combiner:
        """The combiner model.json's ``record`` describes, from ``directory``; ValueError, one
        line, when it was made by another scikit-learn or for other features (its trees would
        not be read as they were fitted)."""
        from importlib.metadata import version

        installed = version("scikit-learn")
        if record.get("sklearn_version") != installed:
            raise ValueError(
                f"made with scikit-learn {record.get('sklearn_version')}, this is {installed}"
            )
        if record.get("features", [])[1:] != list(FEATURES):
            raise ValueError("made for other indexing features than this xrdsym's")
        with open(directory / record["file"], "rb") as handle:
            # Our own file, written by save with the pinned scikit-learn.
            model = pickle.load(handle)
        return cls(model, float(record["temperature"]), list(classes), record)


def _trees(seed: int, class_weight: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        **TREE_SETTINGS,
        class_weight="balanced" if class_weight == "balanced" else None,
        random_state=seed,
    )


def _all_classes(probabilities: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over every class from those over the classes ``present`` in the fit."""
    full = np.full((len(probabilities), n_classes), _TINY)
    full[:, np.asarray(present, dtype=int)] = probabilities
    return full / full.sum(axis=1, keepdims=True)
