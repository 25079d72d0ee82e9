import numpy as np
from pymatgen.core import Lattice, Structure

from xrdsym.diffraction import PeakTable, TwoThetaGrid, pattern_from_peaks, simulate_peaks
from xrdsym.sources import Reject, StructureRecord
from xrdsym.stages.patterns import process_record

GRID = TwoThetaGrid(0, 90, 0.05)


def _process(record: StructureRecord):
    return process_record(record.to_json(), "CuKa", GRID, 5, symprec=0.1, angle_tolerance=5)


def test_label_is_the_analysed_crystal_system_not_the_requested_one():
    fcc = Structure(
        Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    record = StructureRecord(
        "x1",
        "synthetic",
        fcc,
        {"requested_space_group": 1, "requested_crystal_system": "triclinic"},
    )
    row, pattern, peaks, reciprocal = _process(record)
    assert row == {
        "id": "x1",
        "formula": "Al",
        "space_group": 225,
        "crystal_system": "cubic",
        "source": "synthetic",
    }
    assert pattern.shape == (GRID.size,) and np.isclose(pattern.max(), 1.0)
    # The pattern is made from the peaks returned beside it, simulated once.
    assert np.array_equal(pattern, pattern_from_peaks(peaks, GRID, 5))
    assert peaks.hkl.shape == (len(peaks.two_theta), 3)
    assert np.allclose(reciprocal, np.eye(3) / 4.05)


def test_a_structure_that_fails_becomes_a_reject():
    data = StructureRecord(
        "x2", "synthetic", Structure(Lattice.cubic(3), ["Na"], [[0, 0, 0]])
    ).to_json()
    data["structure"]["lattice"]["matrix"] = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
    result = process_record(data, "CuKa", GRID, 5, symprec=0.1, angle_tolerance=5)
    assert isinstance(result, Reject)
    assert result.id == "x2" and result.stage.startswith("patterns:")
    assert result.reason


def test_stage_lists_rejects_and_counts_them(tmp_path, rock_salt, rutile):
    import json

    import pandas as pd

    from xrdsym.io import write_jsonl_gz
    from xrdsym.stages.patterns import run

    good = [
        StructureRecord(f"ok{i}", "synthetic", s).to_json()
        for i, s in enumerate([rock_salt, rutile] * 3)
    ]
    broken = StructureRecord("bad", "synthetic", rock_salt).to_json()
    broken["structure"]["sites"] = "not a list of sites"
    (tmp_path / "structures").mkdir()
    write_jsonl_gz(tmp_path / "structures" / "structures.jsonl.gz", [*good, broken])
    params = {
        "seed": 0,
        "classes": ["cubic"],
        "n_jobs": 1,
        "wavelength": "CuKa",
        "two_theta_min": 0,
        "two_theta_max": 90,
        "two_theta_step": 0.05,
        "sigma": 5,
        "patterns": {"symprec": 0.1, "angle_tolerance": 5, "test_size": 0.2, "val_size": 0.1},
    }
    run(params, tmp_path / "structures", tmp_path / "patterns", tmp_path / "metrics.json")

    rejects = pd.read_csv(tmp_path / "patterns" / "rejects.csv")
    assert sorted(rejects["id"]) == ["bad", "ok1", "ok3", "ok5"]  # broken, and 3 tetragonal
    assert set(rejects.loc[rejects["id"] != "bad", "stage"]) == {"patterns:label"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_patterns"] == 3 and metrics["n_rejected"] == 4
    index = pd.read_csv(tmp_path / "patterns" / "index.csv")
    patterns = np.load(tmp_path / "patterns" / "patterns.npy")
    assert list(index["id"]) == ["ok0", "ok2", "ok4"]
    assert patterns.shape == (3, GRID.size) and patterns.dtype == np.float32

    # The peak lists, in index order: smoothing them again gives the stored patterns exactly.
    with np.load(tmp_path / "patterns" / "peaks.npz") as stored:
        table = PeakTable(**{name: stored[name] for name in stored.files})
    assert len(table) == 3 and table.hkl.shape == (len(table.two_theta), 3)
    for position in range(3):
        assert np.array_equal(
            pattern_from_peaks(table.peaks(position), GRID, 5), patterns[position]
        )
    reference = simulate_peaks(rock_salt, "CuKa", (0, 90))
    assert np.array_equal(table.peaks(0).two_theta, reference.two_theta)
    assert np.array_equal(table.peaks(0).hkl, reference.hkl)
    assert np.allclose(table.reciprocal_lattices, np.eye(3) / 5.64)
