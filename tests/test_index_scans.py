"""`xrdsym index` and the file side of indexing on the committed reader samples: two-column
text, XRDML, a powder CIF and a CIF structure (rock salt, Fm-3m, a = 5.64 Å)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xrdsym.cli import main
from xrdsym.errors import XrdsymError
from xrdsym.index_scans import index_file, index_inputs

DATA = Path(__file__).parent / "data"
SAMPLES = ["nacl_cu.xy", "nacl_cu.xrdml", "nacl_mo.xye", "nacl_rietveld.cif", "nacl.cif"]


@pytest.mark.parametrize("name", SAMPLES)
def test_reader_samples_index_as_rock_salt(name):
    [pattern], _ = index_file(DATA / name, None)
    best = pattern.result.best
    assert (best.lattice_system, best.centring) == ("cubic", "F")
    assert best.cell["a"] == pytest.approx(5.64, rel=1e-3)
    assert pattern.kind == ("structure" if name == "nacl.cif" else "measured")


def test_index_command_writes_json_and_plots(tmp_path, capsys):
    out = tmp_path / "cells.json"
    status = main(
        [
            "index",
            str(DATA / "nacl_cu.xy"),
            str(DATA / "nacl_cu.xrdml"),
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "plots"),
            "--all-systems",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "*cubic" in printed and "hexagonal" in printed
    records = json.loads(out.read_text())
    assert [Path(r["source"]).name for r in records] == ["nacl_cu.xy", "nacl_cu.xrdml"]
    record = records[0]
    assert record["lattice_system"] == "cubic" and record["reason"] is None
    assert set(record["cell"]) == {"a", "b", "c", "alpha", "beta", "gamma", "volume"}
    assert set(record["figures_of_merit"]) == {"M", "F", "lines_indexed", "lines_used"}
    assert {c["lattice_system"] for c in record["candidates"]} >= {"cubic", "tetragonal"}
    assert set(record["peaks"][0]) == {"two_theta", "d", "intensity"}
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2


def test_unreadable_file_is_one_line_and_the_others_go_on(tmp_path, capsys):
    status = main(["index", str(tmp_path / "missing.xy"), str(DATA / "nacl_cu.xy")])
    assert status == 1
    captured = capsys.readouterr()
    assert "nacl_cu.xy" in captured.out
    assert "missing.xy: cannot read" in captured.err
    assert "Traceback" not in captured.err


def test_arrays_need_a_wavelength():
    two_theta = np.arange(10, 80, 0.02)
    with pytest.raises(XrdsymError, match="does not state its wavelength"):
        index_inputs((two_theta, np.ones_like(two_theta)))


def test_unknown_wavelength_is_one_line(capsys):
    assert main(["index", str(DATA / "nacl.cif"), "--wavelength", "Unobtainium"]) == 1
    assert "Unobtainium" in capsys.readouterr().err
