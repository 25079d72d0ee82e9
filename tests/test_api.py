"""The Python API (xrdsym.predict, load_model, read_pattern) on the committed reader samples, on
numpy arrays, and against `xrdsym predict` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xrdsym
from xrdsym.cli import main
from xrdsym.errors import XrdsymError
from xrdsym.prediction import SHIPPED_MODEL, PredictionResult

DATA = Path(__file__).parent / "data"
# The committed samples (halite, NaCl) and the wavelength the CLI example gives them.
SAMPLES = [
    "nacl_cu.xy",
    "nacl_mo.xye",
    "nacl_cu.xrdml",
    "nacl_rietveld.cif",
    "nacl.cif",
    "nacl_cu_decimal_comma.csv",
]
CU_KA = 1.5418
# Rock salt's strongest lines at Cu Kα: (2θ in degrees, relative intensity), from pymatgen's
# XRDCalculator for NaCl (a = 5.6402 Å).
NACL_LINES = [
    (27.37, 13),
    (31.70, 100),
    (45.45, 55),
    (53.87, 2),
    (56.48, 15),
    (66.23, 6),
    (73.07, 1),
    (75.30, 11),
    (83.99, 7),
]


@pytest.fixture(scope="module")
def model():
    return xrdsym.load_model()


def _cli_json(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out.json"
    main(["predict", *args, "--json", str(out)])
    return json.loads(out.read_text())


def _nacl_scan(two_theta: np.ndarray, fwhm: float = 0.15) -> np.ndarray:
    sigma = fwhm / 2.3548
    counts = sum(
        height * np.exp(-0.5 * ((two_theta - centre) / sigma) ** 2) for centre, height in NACL_LINES
    )
    return 20 + 50 * counts


def test_predict_classifies_every_committed_sample_as_the_command_does(tmp_path, model):
    paths = [str(DATA / name) for name in SAMPLES]
    results = xrdsym.predict(paths, model, wavelength="CuKa")
    assert [r.source for r in results] == [
        str(DATA / "nacl_rietveld.cif#NaCl_powder_pattern") if "rietveld" in p else p for p in paths
    ]
    assert all(isinstance(r, PredictionResult) for r in results)
    assert [r.crystal_system for r in results] == ["cubic"] * len(SAMPLES)
    assert [r.kind for r in results] == ["measured"] * 4 + ["structure", "measured"]
    cli = _cli_json(tmp_path, *paths, "--wavelength", "CuKa")
    # The API's dictionary holds the command's JSON row, and more.
    for result, row in zip(results, cli["patterns"], strict=True):
        as_dict = result.to_dict()
        assert {key: as_dict[key] for key in row} == row
    for result in results:
        probabilities = result.probabilities
        assert list(probabilities) == model.classes
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert result.confidence == max(probabilities.values())
        assert result.top[0] == (result.crystal_system, result.confidence)


def test_flags_and_warnings_say_what_the_command_warns(model, capsys):
    [result] = xrdsym.predict(DATA / "nacl_cu.xy", model, min_confidence=0.99)
    assert result.flags == ("uncertain", "partial_coverage")
    assert result.uncertain and result.partial_coverage and not result.no_peaks
    main(["predict", str(DATA / "nacl_cu.xy")])
    printed = capsys.readouterr().err
    assert [f"warning: {line}" for line in result.warnings] == [
        line for line in printed.splitlines() if line.startswith("warning:")
    ]
    as_dict = result.to_dict()
    assert as_dict["flags"] == ["uncertain", "partial_coverage"]
    assert as_dict["uncertain"] is True
    json.dumps(as_dict)  # plain types only
    [whole] = xrdsym.predict(DATA / "nacl.cif", model)
    assert whole.flags == () and whole.warnings == ()


def test_arrays_with_their_two_theta_values(model):
    """A numpy scan of rock salt's lines, as (2θ, intensities), a 2 x N array or a list."""
    two_theta = np.arange(10.0, 90.0, 0.02)
    counts = _nacl_scan(two_theta)
    [result] = xrdsym.predict((two_theta, counts), model, wavelength="CuKa")
    assert result.source == "array 0"
    assert result.kind == "measured"
    assert result.wavelength == pytest.approx(CU_KA, abs=1e-4)
    assert result.crystal_system == "cubic"
    assert result.covered_fraction == pytest.approx(80 / 90, abs=1e-3)
    # The same scan at Mo Kα (the same d-spacings) gives the same answer.
    mo = np.degrees(2 * np.arcsin(0.71073 / CU_KA * np.sin(np.radians(two_theta) / 2)))
    [at_mo] = xrdsym.predict((mo, counts), model, wavelength=0.71073)
    assert at_mo.crystal_system == "cubic"
    stacked = xrdsym.predict(np.vstack([two_theta, counts]), model, wavelength="CuKa")
    listed = xrdsym.predict([(two_theta, counts), (two_theta, counts)], model, wavelength="CuKa")
    assert [r.source for r in listed] == ["array 0", "array 1"]
    for other in (*stacked, *listed):  # float32 sums in batches of another size: to 1e-5
        assert list(other.probabilities) == list(result.probabilities)
        np.testing.assert_allclose(
            list(other.probabilities.values()), list(result.probabilities.values()), atol=1e-5
        )


def test_an_array_gives_what_its_file_gives(model):
    pattern = xrdsym.read_pattern(DATA / "nacl_mo.xye")
    [from_file] = xrdsym.predict(DATA / "nacl_mo.xye", model)
    [from_pattern] = xrdsym.predict(pattern, model)
    [from_arrays] = xrdsym.predict(
        (pattern.two_theta, pattern.intensities), model, wavelength=pattern.wavelength
    )
    assert from_pattern.source == from_file.source
    for result in (from_pattern, from_arrays):
        np.testing.assert_allclose(
            list(result.probabilities.values()), list(from_file.probabilities.values()), atol=1e-6
        )


def test_a_folder_and_the_default_model(tmp_path):
    for name in ("nacl_cu.xy", "nacl.cif"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    (tmp_path / "notes.txt").write_text("measured on Monday\n")  # not a pattern: skipped
    results = xrdsym.predict(tmp_path)
    assert [Path(r.source).name for r in results] == ["nacl.cif", "nacl_cu.xy"]
    assert {r.crystal_system for r in results} == {"cubic"}


def test_load_model_and_read_pattern():
    model = xrdsym.load_model(SHIPPED_MODEL)
    assert model.engine == "numpy"
    assert model.directory == SHIPPED_MODEL
    assert model.wavelength == pytest.approx(CU_KA, abs=1e-4)
    pattern = xrdsym.read_pattern(str(DATA / "nacl_cu_decimal_comma.csv"))
    assert pattern.wavelength is None
    assert pattern.two_theta.shape == pattern.intensities.shape
    assert np.all(np.diff(pattern.two_theta) > 0)


def _cli_failure(capsys, *args: str) -> str:
    """The one line `xrdsym predict` prints for the (only) input that failed."""
    assert main(["predict", *args]) == 1
    err = capsys.readouterr().err.splitlines()
    if err[-1].startswith("xrdsym predict: error: "):
        return err[-1].removeprefix("xrdsym predict: error: ")
    return err[-1].strip()


def test_bad_input_raises_the_commands_one_line_message(tmp_path, model, capsys):
    missing = str(tmp_path / "missing.xy")
    unreadable = tmp_path / "notes.xy"
    unreadable.write_text("no numbers here\n")
    short = tmp_path / "short.xy"
    short.write_text("10 1\n11 2\n")
    not_a_model = tmp_path / "empty_model"
    not_a_model.mkdir()
    for path in (missing, str(unreadable), str(short)):
        with pytest.raises(XrdsymError) as caught:
            xrdsym.predict(path, model)
        assert str(caught.value) == _cli_failure(capsys, path)
    with pytest.raises(XrdsymError) as caught:
        xrdsym.predict(DATA / "nacl_cu.xy", not_a_model)
    assert str(caught.value) == _cli_failure(
        capsys, str(DATA / "nacl_cu.xy"), "--model", str(not_a_model)
    )
    with pytest.raises(XrdsymError) as caught:
        xrdsym.load_model(not_a_model)
    assert str(caught.value) == f"{not_a_model}: not a model directory (no model.json)"
    with pytest.raises(XrdsymError, match="cannot read"):
        xrdsym.read_pattern(missing)


def test_bad_arguments_are_one_line_errors(model):
    two_theta = np.arange(10.0, 90.0, 0.02)
    with pytest.raises(XrdsymError, match=r"^array 0: no wavelength stated; give wavelength="):
        xrdsym.predict((two_theta, _nacl_scan(two_theta)), model)
    with pytest.raises(XrdsymError, match=r"^array 0: lengths differ"):
        xrdsym.predict((two_theta, _nacl_scan(two_theta)[:-1]), model, wavelength="CuKa")
    with pytest.raises(XrdsymError, match=r"^top_k 0: must be at least 1"):
        xrdsym.predict(DATA / "nacl_cu.xy", model, top_k=0)
    with pytest.raises(XrdsymError, match=r"^min_confidence 1: must be in \[0, 1\)"):
        xrdsym.predict(DATA / "nacl_cu.xy", model, min_confidence=1.0)
    with pytest.raises(XrdsymError, match=r"^unknown wavelength 'CuKz'"):
        xrdsym.predict(DATA / "nacl_cu.xy", model, wavelength="CuKz")
    with pytest.raises(XrdsymError, match=r"^input 0: int is neither"):
        xrdsym.predict([3], model)


def test_importing_xrdsym_loads_no_numpy_nor_model():
    code = (
        "import sys, xrdsym; "
        "print(sorted(m for m in ('numpy', 'pymatgen', 'keras', 'tensorflow') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(xrdsym.__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
