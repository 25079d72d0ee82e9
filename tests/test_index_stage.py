"""The index stage, the combiner fitted on its output, and what evaluate and predict make of
them: on a small store of real structures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CLASSES, GRID, patterns_store
from pymatgen.core import Lattice, Structure

from xrdsym import preprocessing
from xrdsym.augmentation import AugmentSettings
from xrdsym.cli import main
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.hybrid import FEATURES
from xrdsym.inputs import inputs_made_once
from xrdsym.prediction import load_classifier
from xrdsym.preprocessing import InputSettings
from xrdsym.stages import evaluate
from xrdsym.stages import index as index_stage
from xrdsym.stages.index import FEATURES_FILE, split_patterns, stage_settings
from xrdsym.stages.train import VALIDATION_STREAM, augmented_inputs, combine_existing

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DATA = ROOT / "tests" / "data"


def _cubic(a: float, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _hexagonal(a: float, c: float) -> Structure:
    return Structure(
        Lattice.hexagonal(a, c), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    )


def _tetragonal(a: float, c: float) -> Structure:
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(a, c), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )


# Two of each class in validation (the combiner's folds need two), one in test.
STRUCTURES = [
    (_cubic(5.64), "cubic", "val"),
    (_cubic(6.29, ("K", "Cl")), "cubic", "val"),
    (_hexagonal(3.21, 5.21), "hexagonal", "val"),
    (_hexagonal(2.95, 4.68), "hexagonal", "val"),
    (_tetragonal(4.594, 2.959), "tetragonal", "val"),
    (_tetragonal(4.65, 3.05), "tetragonal", "val"),
    (_cubic(5.45, ("Mg", "O")), "cubic", "test"),
    (_hexagonal(3.10, 5.00), "hexagonal", "test"),
    (_tetragonal(4.50, 2.90), "tetragonal", "test"),
]


@pytest.fixture
def store(tmp_path) -> Path:
    structures, systems, splits = zip(*STRUCTURES, strict=True)
    return patterns_store(tmp_path / "patterns", structures, systems, GRID, 2, list(splits))


# Measured once without noise or any sample effect: peaks at their exact angles, 0.3 degrees
# wide (3 points of the small grid), counting noise of 10⁵ counts. (The stored patterns put
# each peak on its nearest grid point, up to 0.05 degrees off on this coarse grid.)
CLEAN = dict.fromkeys(PARAMS["train"]["augment"]) | {
    "enabled": True,
    "profile": "gaussian",
    "instrument_fwhm_deg": 0.3,
    "noise_counts": 100000,
    "workers": 1,
}


def _params(augment: dict | None = CLEAN, per_split=None) -> dict:
    index = dict(PARAMS["index"]) | {"chunk_size": 4}
    if per_split is not None:
        index["per_split"] = per_split
    return {
        "seed": 0,
        "classes": CLASSES,
        "target": "crystal_system",
        "n_jobs": 1,
        "dask_scheduler": None,
        "train": {"augment": augment or {**CLEAN, "enabled": False}},
        "peaks": PARAMS["peaks"],
        "index": index,
    }


def _index(store: Path, tmp_path: Path, per_split=None) -> Path:
    out = tmp_path / "index"
    index_stage.run(_params(CLEAN, per_split), store, out, tmp_path / "index.json")
    return out


def test_the_stage_indexes_every_validation_and_test_pattern(store, tmp_path):
    out = _index(store, tmp_path)

    table = pd.read_csv(out / FEATURES_FILE, dtype={"id": str})
    assert sorted(table["id"]) == [f"s{i}" for i in range(len(STRUCTURES))]
    assert set(FEATURES) <= set(table.columns)
    # The metric oracle reads each structure's own lattice: what the positions allow.
    assert list(table["oracle_lattice_system"]) == list(table["lattice_system_true"])
    assert list(table["lattice_system_true"]) == list(table["crystal_system"])
    # Rock salt's cell, as the indexer finds it alone.
    rock_salt = table.set_index("id").loc["s0"]
    assert (rock_salt["lattice_system"], rock_salt["centring"]) == ("cubic", "F")
    assert rock_salt["a"] == pytest.approx(5.64, abs=0.01)
    metrics = json.loads((tmp_path / "index.json").read_text())
    assert metrics["per_split"]["val"]["n"] == 6 and metrics["per_split"]["test"]["n"] == 3
    assert sum(metrics["per_split"]["test"]["reasons"].values()) == 3
    assert not (tmp_path / index_stage.CHUNKS_DIR).exists()
    settings = json.loads((out / index_stage.SETTINGS_FILE).read_text())
    # How the patterns were measured: train.augment less its training threads.
    assert settings["augment"] == {k: v for k, v in CLEAN.items() if k != "workers"}
    assert settings["index"]["n_lines"] == 20


def test_a_stopped_run_resumes_from_its_finished_chunks(store, tmp_path, monkeypatch):
    real = index_stage.index_row
    calls = []

    def stops_on_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(index_stage, "index_row", stops_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        _index(store, tmp_path)
    monkeypatch.setattr(index_stage, "index_row", real)
    resumed = _index(store, tmp_path)

    metrics = json.loads((tmp_path / "index.json").read_text())
    assert (metrics["n_chunks"], metrics["n_chunks_reused"]) == (3, 1)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    index_stage.run(_params(), store, fresh / "index", fresh / "index.json")
    columns = ["id", "lattice_system", "M", "n_peaks"]
    pd.testing.assert_frame_equal(
        pd.read_csv(resumed / FEATURES_FILE)[columns],
        pd.read_csv(fresh / "index" / FEATURES_FILE)[columns],
    )


def test_validation_patterns_are_those_the_network_is_calibrated_on(store):
    augment_section = dict(PARAMS["train"]["augment"])
    augment = AugmentSettings.from_params(augment_section)
    settings = json.loads((store / "settings.json").read_text())
    preprocess = InputSettings.from_params(PARAMS["train"]["preprocess"])

    ids, patterns, _ = split_patterns(store, "val", CLASSES, "crystal_system", augment, 7)

    network_inputs = inputs_made_once(
        augmented_inputs([store], "val", settings, CLASSES, "crystal_system", augment, preprocess),
        len(ids),
        (7, VALIDATION_STREAM),
    )
    np.testing.assert_array_equal(
        preprocessing.model_inputs(patterns, GRID, preprocess), network_inputs[..., 0]
    )
    assert len(ids) == 6 and patterns.max(axis=1) == pytest.approx(1)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"per_split": {"val": -1}}, "index.per_split.val=-1"),
        ({"per_split": {"tests": 3}}, "index.per_split="),
        ({"chunk_size": 0}, "index.chunk_size=0"),
    ],
)
def test_bad_stage_settings_name_the_key(section, message):
    with pytest.raises(ParamsError, match=message):
        stage_settings(section)


def _combined_model(model_dir: Path, store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The small model with a combiner fitted on the store's validation split, whose test
    split the index stage was told to leave out: fitting never reads it."""
    index_dir = _index(store, tmp_path, per_split={"val": None, "test": 0})
    assert set(pd.read_csv(index_dir / FEATURES_FILE)["split"]) == {"val"}
    out = tmp_path / "combined"
    combine_existing(model_dir, store, index_dir, out)
    return out, index_dir


def test_a_combiner_is_fitted_on_validation_patterns_alone(model_dir, store, tmp_path):
    combined, _ = _combined_model(model_dir, store, tmp_path)

    meta = json.loads((combined / "model.json").read_text())
    assert meta["combiner"]["n_fit"] == 6 and meta["combiner"]["index"]["n_lines"] == 20
    assert load_classifier(combined).combiner is not None
    assert load_classifier(combined).combiner_note is None
    assert "no combiner" in load_classifier(model_dir).combiner_note
    with pytest.raises(XrdsymError, match="test patterns not indexed"):
        index_stage.read_features(tmp_path / "index", "test", ["s6"])
    # No test pattern indexed: evaluate leaves the measured test split out, in one line.
    assert (
        evaluate.score_with_indexing(load_classifier(combined), store, tmp_path / "index", tmp_path)
        is None
    )


def test_a_sample_of_the_validation_split_is_measured_as_the_stage_measured_it(
    model_dir, store, tmp_path
):
    index_dir = _index(store, tmp_path, per_split={"val": 4, "test": 0})
    out = tmp_path / "combined"

    combine_existing(model_dir, store, index_dir, out)

    assert json.loads((out / "model.json").read_text())["combiner"]["n_fit"] == 4
    ids, patterns, _ = split_patterns(
        store, "val", CLASSES, "crystal_system", AugmentSettings.from_params(CLEAN), 0, 4
    )
    assert sorted(ids) == sorted(pd.read_csv(index_dir / FEATURES_FILE, dtype={"id": str})["id"])
    rows = [
        index_stage.index_row(
            p, GRID.values, 1.5418, *index_stage.search_settings(PARAMS["peaks"], PARAMS["index"])
        )["n_peaks"]
        for p in patterns
    ]
    table = pd.read_csv(index_dir / FEATURES_FILE, dtype={"id": str}).set_index("id")
    assert rows == list(table.loc[ids, "n_peaks"])


def test_a_combiner_of_another_scikit_learn_is_not_used_and_predict_says_so(
    model_dir, store, tmp_path, capsys
):
    combined, _ = _combined_model(model_dir, store, tmp_path)
    meta = json.loads((combined / "model.json").read_text())
    meta["combiner"]["sklearn_version"] = "0.1"
    (combined / "model.json").write_text(json.dumps(meta))

    classifier = load_classifier(combined)

    assert classifier.combiner is None and "scikit-learn 0.1" in classifier.combiner_note
    assert main(["predict", str(DATA / "nacl_cu.xy"), "--model", str(combined)]) == 0
    printed = capsys.readouterr()
    assert "combiner not used (made with scikit-learn 0.1" in printed.err
    assert "cubic F a=5.640" in printed.out  # the indexing is still shown


def test_evaluate_scores_network_indexing_combination_and_the_ceiling(model_dir, store, tmp_path):
    combined, _ = _combined_model(model_dir, store, tmp_path)
    index_dir = tmp_path / "scored"
    index_dir.mkdir()
    index_stage.run(_params(), store, index_dir / "index", index_dir / "index.json")
    plots = tmp_path / "plots"
    plots.mkdir()

    scores = evaluate.score_with_indexing(
        load_classifier(combined), store, index_dir / "index", plots
    )

    assert scores["n_test"] == 3
    assert set(scores) >= {"network", "indexing", "combined", "ceiling"}
    assert scores["ceiling"]["accuracy"] == 1 and scores["ceiling"]["macro_f1"] == 1
    assert scores["ceiling"]["hexagonal_lattice_read_as"] == "hexagonal"
    for source in ("network", "indexing", "combined", "ceiling"):
        assert 0 <= scores["lattice_system_accuracy"][source] <= 1
        assert set(scores[source]["per_class_f1"]) == set(CLASSES)
    assert scores["lattice_system_accuracy"]["ceiling"] == 1
    assert 0 <= scores["combined"]["ece"] <= 1
    table = pd.read_csv(plots / "test_measured.csv")
    assert list(table["id"]) == ["s6", "s7", "s8"]
    assert (plots / "confusion_measured.png").stat().st_size > 0


def _glass(path: Path) -> Path:
    """An amorphous hump (FWHM 10 degrees at 25 degrees) with counting noise: no Bragg peak."""
    two_theta = np.arange(5, 90, 0.02)
    hump = 100 + 900 * np.exp(-4 * np.log(2) * ((two_theta - 25) / 10) ** 2)
    counts = np.random.default_rng(1).poisson(hump)
    np.savetxt(path, np.column_stack([two_theta, counts]), fmt="%.2f %d", header="λ = 1.5406")
    return path


def _noise(path: Path) -> Path:
    """Poisson counts around 100 with no peak: a pattern of pure noise."""
    two_theta = np.arange(5, 90, 0.02)
    counts = np.random.default_rng(0).poisson(100, two_theta.size)
    np.savetxt(path, np.column_stack([two_theta, counts]), fmt="%.2f %d", header="λ = 1.5406")
    return path


def test_predict_shows_the_cell_and_gives_no_crystal_system_without_peaks(
    model_dir, store, tmp_path, capsys
):
    combined, _ = _combined_model(model_dir, store, tmp_path)
    files = [DATA / "nacl_cu.xy", _noise(tmp_path / "noise.xy"), _glass(tmp_path / "glass.xy")]
    out = tmp_path / "out.json"

    assert main(["predict", *map(str, files), "--model", str(combined), "--json", str(out)]) == 0

    rows = {Path(row["source"]).stem: row for row in json.loads(out.read_text())["patterns"]}
    halite = rows["nacl_cu"]
    assert (halite["lattice_system"], halite["centring"]) == ("cubic", "F")
    assert halite["cell"]["a"] == pytest.approx(5.640, abs=0.002)
    assert halite["figures_of_merit"]["M"] > 100 and halite["n_peaks"] >= 8
    assert halite["crystal_system"] in CLASSES and halite["indexing_reason"] is None
    for name in ("noise", "glass"):
        row = rows[name]
        assert row["crystal_system"] is None and row["no_peaks"] and row["uncertain"]
        assert row["reason"].startswith("no peak stands out of the noise")
        assert row["lattice_system"] is None and row["n_peaks"] == 0
    assert main(["predict", str(DATA / "nacl_cu.xy"), "--model", str(combined)]) == 0
    printed = capsys.readouterr()
    assert "cubic F a=5.640" in printed.out and "combiner" not in printed.err


def test_a_model_without_a_combiner_still_predicts_and_says_so(model_dir, capsys):
    assert main(["predict", str(DATA / "nacl_cu.xy"), "--model", str(model_dir)]) == 0

    printed = capsys.readouterr()
    assert printed.err.count("no combiner") == 1 and "lattice" not in printed.out


def test_extra_structure_sets_are_scored_for_the_combination_too(model_dir, store, tmp_path):
    combined, _ = _combined_model(model_dir, store, tmp_path)
    folder = tmp_path / "real"
    folder.mkdir()
    _cubic(5.64).to(filename=str(folder / "nacl.cif"))
    _hexagonal(3.21, 5.21).to(filename=str(folder / "mg.cif"))

    metrics, table, _ = evaluate.score_structure_set(load_classifier(combined), folder, 1)

    assert metrics["n_test"] == 2 and set(metrics["combined"]) >= {"accuracy", "macro_f1"}
    # A structure is indexed from its calculated lines, as `xrdsym index` reads a CIF.
    assert metrics["indexing"]["accuracy"] == 1
    assert list(table["indexing"]) == list(table["actual"])
    assert set(table["combined"]) <= set(CLASSES)
