import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xrdsym.cli import main
from xrdsym.config import stage_params
from xrdsym.diffraction import TwoThetaGrid
from xrdsym.errors import ParamsError
from xrdsym.inputs import read_pattern_split, read_peak_split
from xrdsym.io import write_json, write_jsonl_gz, write_table
from xrdsym.sources import StructureRecord
from xrdsym.stages import synthesize
from xrdsym.stages.patterns import INDEX_COLUMNS

GRID = TwoThetaGrid(0, 90, 0.05)
CLASSES = ["cubic", "hexagonal", "monoclinic", "tetragonal"]
SETTINGS = {
    "wavelength": "CuKa",
    "two_theta_min": GRID.start,
    "two_theta_max": GRID.stop,
    "two_theta_step": GRID.step,
    "n_points": GRID.size,
    "sigma_points": 5,
    "symprec": 0.1,
    "angle_tolerance": 5,
    "simulator": "vectorised",
}
PARAMS = {
    "seed": 0,
    "classes": CLASSES,
    "n_jobs": 1,
    "dask_scheduler": None,
    "synthesize": {
        "n_structures": 12,
        "max_atoms": 24,
        "max_attempts": 20,
        "attempt_timeout_s": 10,
    },
}


def _rock_salt(a: float, cation: str) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _rutile(a: float) -> Structure:
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(a, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )


def _wurtzite(a: float) -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(a, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]
    )


# Space groups only validation and test hold: drawing one would mean they were read.
HELD_OUT_GROUPS = {221, 14}


def _held_out() -> list[tuple[str, str, Structure]]:
    perovskite = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0]]
    )
    baddeleyite = Structure.from_spacegroup(
        "P2_1/c",
        Lattice.monoclinic(5.1, 5.2, 5.3, 99),
        ["Zr", "O", "O"],
        [[0.276, 0.040, 0.208], [0.070, 0.332, 0.345], [0.450, 0.757, 0.479]],
    )
    return [("v0", "val", perovskite), ("t0", "test", baddeleyite), ("t1", "test", perovskite)]


def _store(tmp_path: Path) -> tuple[Path, Path]:
    """A structures folder and a patterns store (index and settings only) whose training
    split holds rock salts, rutiles and wurtzites, one of them broken; validation and test
    hold space groups the training split lacks, and a record that would fail if read."""
    entries = [
        *[(f"a{i}", "train", _rock_salt(5.0 + 0.2 * i, ["Na", "K", "Rb"][i])) for i in range(3)],
        *[(f"b{i}", "train", _rutile(4.5 + 0.1 * i)) for i in range(2)],
        *[(f"c{i}", "train", _wurtzite(3.2 + 0.1 * i)) for i in range(2)],
        ("broken", "train", _rutile(4.6)),
        *_held_out(),
        ("v-broken", "val", _rutile(4.6)),
    ]
    records = [StructureRecord(i, "test", s).to_json() for i, _, s in entries]
    for record in records:
        if record["id"].endswith("broken"):
            record["structure"]["sites"] = "not a list of sites"
    structures = tmp_path / "structures"
    structures.mkdir()
    write_jsonl_gz(structures / "structures.jsonl.gz", records)
    patterns = tmp_path / "patterns"
    patterns.mkdir()
    rows = [
        {"id": i, "formula": "X", "space_group": 0, "crystal_system": "cubic"}
        | {"structure_type": "0:a", "source": "test", "split": split}
        for i, split, _ in entries
    ]
    write_table(patterns / "index.csv", pd.DataFrame(rows, columns=INDEX_COLUMNS))
    write_json(patterns / "settings.json", SETTINGS)
    return structures, patterns


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """The stage run once on the small store; the ids the statistics read."""
    tmp_path = tmp_path_factory.mktemp("synthesize")
    structures, patterns = _store(tmp_path)
    read: list[str] = []
    summarise = synthesize.summarise_record

    def spy(data, **kwargs):
        read.append(data["id"])
        return summarise(data, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthesize, "summarise_record", spy)
        out, metrics = tmp_path / "synthetic", tmp_path / "synthesize.json"
        synthesize.run(PARAMS, structures, patterns, out, metrics)
    return patterns, out, json.loads(metrics.read_text()), read


def test_only_training_structures_are_read(synthesized):
    _, out, metrics, read = synthesized
    assert sorted(read) == ["a0", "a1", "a2", "b0", "b1", "broken", "c0", "c1"]
    statistics = json.loads((out / synthesize.STATISTICS_FILE).read_text())
    assert {int(g) for g in statistics["space_groups"]} == {136, 186, 225}
    assert statistics["n_structures"] == 7
    index = pd.read_csv(out / "index.csv")
    assert not set(index["space_group"]) & HELD_OUT_GROUPS
    assert metrics["n_training_structures"] == 7
    requested = metrics["space_group_fit"]["requested"]
    assert requested["n"] == 12 and requested["n_outside"] == 0


def test_store_is_read_as_a_training_split(synthesized):
    patterns, out, metrics, _ = synthesized
    index = pd.read_csv(out / "index.csv", dtype={"id": str})
    assert list(index.columns) == INDEX_COLUMNS
    assert set(index["split"]) == {"train"} and set(index["source"]) == {"synthesize"}
    assert all(i.startswith("synthetic:0000") for i in index["id"])
    assert len(index) == metrics["n_generated"] >= 10
    assert metrics["n_generated"] + metrics["n_rejected"] == 12
    assert sum(metrics["per_class"].values()) == len(index)
    x, labels, ids = read_pattern_split(out, "train", CLASSES)
    assert x.shape == (len(index), GRID.size, 1) and len(labels) == len(ids) == len(index)
    peaks, peak_labels, peak_ids = read_peak_split(out, "train", CLASSES)
    assert peak_ids == ids and np.array_equal(peak_labels, labels)
    assert len(peaks.offsets) == len(index) + 1
    assert np.allclose(np.load(out / "two_theta.npy"), GRID.values)
    settings = (out / "settings.json").read_bytes()
    assert settings == (patterns / "settings.json").read_bytes()
    # Labels come from symmetry analysis of the generated structures.
    assert set(index["crystal_system"]) <= {"cubic", "tetragonal", "hexagonal"}


def test_a_record_that_cannot_be_counted_is_a_reject(synthesized):
    _, out, _, _ = synthesized
    rejects = pd.read_csv(out / "rejects.csv")
    broken = rejects[rejects["id"] == "broken"]
    assert list(broken["stage"]) == ["synthesize:statistics"]
    assert broken["reason"].str.len().iloc[0] > 0
    assert "v-broken" not in set(rejects["id"])


def test_no_structures_give_an_empty_store_without_reading_them(tmp_path):
    _, patterns = _store(tmp_path)
    params = {**PARAMS, "synthesize": {**PARAMS["synthesize"], "n_structures": 0}}
    out, metrics = tmp_path / "synthetic", tmp_path / "synthesize.json"
    synthesize.run(params, tmp_path / "no-structures", patterns, out, metrics)
    assert np.load(out / "patterns.npy").shape == (0, GRID.size)
    index = pd.read_csv(out / "index.csv")
    assert list(index.columns) == INDEX_COLUMNS and index.empty
    with np.load(out / "peaks.npz") as peaks:
        assert list(peaks["offsets"]) == [0]
    assert json.loads(metrics.read_text())["n_generated"] == 0
    assert json.loads((out / "statistics.json").read_text())["n_structures"] == 0


def test_synthesize_params_are_checked():
    for key, value in [("n_structures", -1), ("max_atoms", 0), ("attempt_timeout_s", 0)]:
        params = {**PARAMS, "synthesize": {**PARAMS["synthesize"], key: value}}
        with pytest.raises(ParamsError, match=f"synthesize.{key}=") as error:
            stage_params(params, synthesize.PARAMS)
        assert "\n" not in str(error.value)


def test_cli_without_the_patterns_store_is_one_line(tmp_path, capsys):
    missing, out, metrics = tmp_path / "missing", tmp_path / "synthetic", tmp_path / "m.json"
    status = main(
        ["synthesize", "--patterns", str(missing), "--out", str(out), "--metrics", str(metrics)]
    )
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("xrdsym synthesize: error:") and error.count("\n") == 1
