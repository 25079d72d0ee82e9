import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from xrdsym.config import stage_params
from xrdsym.diffraction import PeakTable, TwoThetaGrid, pattern_from_peaks, simulate_peaks
from xrdsym.errors import ParamsError
from xrdsym.io import write_jsonl_gz
from xrdsym.sources import Reject, StructureRecord
from xrdsym.stages.patterns import CHUNKS_DIR, PARAMS, process_record, run

ROOT = Path(__file__).resolve().parents[1]
GRID = TwoThetaGrid(0, 90, 0.05)
PARAMS_VALUES = {
    "seed": 0,
    "classes": ["cubic", "tetragonal", "hexagonal"],
    "n_jobs": 1,
    "dask_scheduler": None,
    "wavelength": "CuKa",
    "two_theta_min": 0,
    "two_theta_max": 90,
    "two_theta_step": 0.05,
    "sigma": 5,
    "patterns": {
        "symprec": 0.1,
        "angle_tolerance": 5,
        "test_size": 0.2,
        "val_size": 0.1,
        "simulator": "vectorised",
        "group_by": "structure_type",
        "chunk_size": 500,
    },
}


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
        "structure_type": "225:a",
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
    good = [
        StructureRecord(f"ok{i}", "synthetic", s).to_json()
        for i, s in enumerate([rock_salt, rutile] * 3)
    ]
    broken = StructureRecord("bad", "synthetic", rock_salt).to_json()
    broken["structure"]["sites"] = "not a list of sites"
    (tmp_path / "structures").mkdir()
    write_jsonl_gz(tmp_path / "structures" / "structures.jsonl.gz", [*good, broken])
    params = {**PARAMS_VALUES, "classes": ["cubic"]}
    run(params, tmp_path / "structures", tmp_path / "patterns", tmp_path / "metrics.json")

    rejects = pd.read_csv(tmp_path / "patterns" / "rejects.csv")
    assert sorted(rejects["id"]) == ["bad", "ok1", "ok3", "ok5"]  # broken, and 3 tetragonal
    assert set(rejects.loc[rejects["id"] != "bad", "stage"]) == {"patterns:label"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_patterns"] == 3 and metrics["n_rejected"] == 4
    assert metrics["simulator"] == "vectorised"
    assert metrics["n_chunks"] == 1 and metrics["n_chunks_reused"] == 0
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


def _structures(n: int) -> list[dict]:
    """``n`` stored records of cubic, tetragonal and hexagonal cells of growing size; s002 is
    broken and s005 monoclinic (not in PARAMS_VALUES' classes)."""
    records = []
    for i in range(n):
        a = 4.0 + 0.05 * i
        kind = i % 3
        if kind == 0:
            structure = Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
            )
        elif kind == 1:
            structure = Structure.from_spacegroup(
                "P4_2/mnm", Lattice.tetragonal(a, 2.96), ["Ti", "O"], [[0, 0, 0], [0.3, 0.3, 0]]
            )
        else:
            structure = Structure.from_spacegroup(
                "P6_3/mmc", Lattice.hexagonal(a / 1.5, a), ["Zn"], [[1 / 3, 2 / 3, 0.25]]
            )
        if i == 5:
            structure = Structure(Lattice.monoclinic(4, 5, 6, 100), ["Si"], [[0.1, 0.2, 0.3]])
        records.append(StructureRecord(f"s{i:03d}", "synthetic", structure).to_json())
    records[2]["structure"]["sites"] = "not a list of sites"
    return records


def _write_structures(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    write_jsonl_gz(folder / "structures.jsonl.gz", _structures(n))
    return folder


def _run(params: dict, structures: Path, out: Path, **patterns) -> Path:
    params = {**params, "patterns": {**params["patterns"], **patterns}}
    run(params, structures, out / "patterns", out / "metrics.json")
    return out / "patterns"


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_new_patterns_params_are_checked():
    for key, value in [("simulator", "xrayutilities"), ("chunk_size", 0)]:
        params = {**PARAMS_VALUES, "patterns": {**PARAMS_VALUES["patterns"], key: value}}
        with pytest.raises(ParamsError, match=f"patterns.{key}"):
            stage_params(params, PARAMS)


def test_chunks_give_the_same_files_as_one_chunk(tmp_path):
    structures = _write_structures(tmp_path / "structures", 13)
    whole = _run(PARAMS_VALUES, structures, tmp_path / "whole", chunk_size=100)
    chunked = _run(PARAMS_VALUES, structures, tmp_path / "chunked", chunk_size=3)
    # Every file, peaks.npz too, byte for byte.
    assert _files(chunked) == _files(whole)
    index = pd.read_csv(whole / "index.csv")
    rejects = pd.read_csv(whole / "rejects.csv")
    assert list(rejects["id"]) == ["s002", "s005"]  # broken, monoclinic: in input order
    assert len(index) == 11 and index["id"].is_monotonic_increasing
    metrics = json.loads((tmp_path / "chunked" / "metrics.json").read_text())
    assert metrics["n_chunks"] == 5 and metrics["n_chunks_reused"] == 0
    # The chunks are gone once the output is in place.
    assert not (tmp_path / "chunked" / CHUNKS_DIR).exists()


def test_both_simulators_give_the_same_patterns(tmp_path):
    structures = _write_structures(tmp_path / "structures", 9)
    vectorised = _run(PARAMS_VALUES, structures, tmp_path / "v", simulator="vectorised")
    reference = _run(PARAMS_VALUES, structures, tmp_path / "p", simulator="pymatgen")
    for name in ["patterns.npy", "two_theta.npy", "index.csv", "rejects.csv"]:
        assert (vectorised / name).read_bytes() == (reference / name).read_bytes(), name
    with np.load(vectorised / "peaks.npz") as fast, np.load(reference / "peaks.npz") as slow:
        assert fast.files == slow.files
        for name in fast.files:
            # Intensities are summed in another order: equal to float64 rounding.
            assert np.allclose(fast[name], slow[name], rtol=1e-12, atol=0), name
            assert name == "intensities" or np.array_equal(fast[name], slow[name]), name
    settings = [json.loads((p / "settings.json").read_text()) for p in (vectorised, reference)]
    assert settings[0].pop("simulator") == "vectorised"
    assert settings[1].pop("simulator") == "pymatgen"
    assert settings[0] == settings[1]


# A run slow enough to stop between chunks: pymatgen's simulator, chunks of 5 structures.
KILLED_RUN = {"simulator": "pymatgen", "chunk_size": 5}


def test_a_killed_run_resumes_from_its_chunks(tmp_path):
    structures = _write_structures(tmp_path / "structures", 60)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update({key: value for key, value in PARAMS_VALUES.items() if key != "patterns"})
    params["patterns"].update(KILLED_RUN)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = [
        sys.executable,
        "-m",
        "xrdsym.cli",
        "patterns",
        "--structures",
        str(structures),
        "--out",
        "resumed/patterns",
        "--metrics",
        "resumed/metrics.json",
        "--params",
        "params.yaml",
    ]
    cache = tmp_path / "resumed" / CHUNKS_DIR
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not list(cache.glob("*/chunk-*.npz")) and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before writing a chunk"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    n_left = len(list(cache.glob("*/chunk-*.npz")))
    assert 1 <= n_left < 12 and not (tmp_path / "resumed" / "patterns").exists()

    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"reusing {n_left} finished chunks" in result.stdout
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["n_chunks"] == 12 and metrics["n_chunks_reused"] == n_left
    assert not cache.exists()

    uninterrupted = _run(PARAMS_VALUES, structures, tmp_path / "uninterrupted", **KILLED_RUN)
    assert _files(tmp_path / "resumed" / "patterns") == _files(uninterrupted)


def test_no_structure_type_is_in_two_splits(tmp_path):
    structures = _write_structures(tmp_path / "structures", 30)
    out = _run(PARAMS_VALUES, structures, tmp_path / "out", group_by="structure_type")
    index = pd.read_csv(out / "index.csv")
    # Rock salts, rutiles and hcp metals with other lattice parameters: three types.
    assert set(index["structure_type"]) == {"225:ab", "136:af", "194:c"}
    assert (index.groupby("structure_type")["split"].nunique() == 1).all()
    per_split = json.loads((tmp_path / "out" / "metrics.json").read_text())["per_split"]
    assert sum(s["structures"] for s in per_split.values()) == len(index)
    assert sum(s["structure_types"] for s in per_split.values()) == 3
