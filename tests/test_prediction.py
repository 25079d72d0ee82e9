import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GRID
from pymatgen.io.cif import CifWriter

from xrdsym.cli import main
from xrdsym.diffraction import TwoThetaGrid, pattern_from_structure, simulate_peaks
from xrdsym.errors import XrdsymError
from xrdsym.inference import INFERENCE_FILE, save_inference
from xrdsym.measured import MeasuredPattern, NoPowderData, parse_wavelength, read_measured
from xrdsym.prediction import (
    META_FILE,
    MODEL_FORMAT,
    convert_wavelength,
    find_inputs,
    load_classifier,
    prepare_files,
    prepare_measured,
    prepare_structure,
    read_model_meta,
)


def _measured(structure, wavelength: str, low: float, high: float, step: float = 0.01):
    """A 'measured' scan: pymatgen's peaks as Gaussians of 0.08 degrees on a sloping background."""
    two_theta = np.arange(low, high, step)
    peaks = simulate_peaks(structure, wavelength, (low, high))
    counts = 500 + 10 * two_theta
    for position, height in zip(peaks.two_theta, peaks.intensities, strict=True):
        counts += 50 * height * np.exp(-0.5 * ((two_theta - position) / 0.08) ** 2)
    return MeasuredPattern(two_theta, counts, None, "scan.xy")


def test_bragg_conversion_keeps_the_d_spacing():
    mo, cu = parse_wavelength("MoKa"), parse_wavelength("CuKa")
    two_theta = np.array([10.0, 20.0, 60.0])
    converted, inside = convert_wavelength(two_theta, mo, cu)
    d_before = mo / (2 * np.sin(np.radians(two_theta[inside]) / 2))
    d_after = cu / (2 * np.sin(np.radians(converted) / 2))
    assert np.allclose(d_before, d_after)
    # 60 degrees at Mo Kα is a d-spacing Cu Kα cannot reach below 180 degrees.
    assert inside.tolist() == [True, True, False]


def test_measured_mo_scan_lands_on_the_cu_peaks(rock_salt):
    scan = _measured(rock_salt, "MoKa", 5, 40)
    prepared = prepare_measured(scan, parse_wavelength("MoKa"), parse_wavelength("CuKa"), GRID)
    reference = pattern_from_structure(rock_salt, "CuKa", GRID, 2)
    strongest = GRID.values[np.argmax(reference)]
    assert GRID.values[np.argmax(prepared.intensities)] == pytest.approx(strongest, abs=0.15)
    assert prepared.intensities.min() == 0 and prepared.intensities.max() == 1
    # 5-40 degrees at Mo Kα reach about 11-90 degrees at Cu Kα: most of the range, not all.
    assert 0.8 < prepared.covered_fraction < 0.95
    assert prepared.intensities[: int(10 / GRID.step)].max() == 0


def test_background_is_removed(rock_salt):
    scan = _measured(rock_salt, "CuKa", 10, 90)
    kept = prepare_measured(scan, 1.54184, 1.54184, GRID, background="none")
    removed = prepare_measured(scan, 1.54184, 1.54184, GRID, background="snip")
    between_peaks = (GRID.values > 58) & (GRID.values < 64)  # no NaCl peak here
    assert removed.intensities[between_peaks].max() < 0.02 < kept.intensities[between_peaks].min()


def test_wavelength_from_the_file_wins_and_is_required(rock_salt):
    scan = _measured(rock_salt, "CuKa", 10, 90)
    with pytest.raises(XrdsymError, match=r"scan\.xy: the file does not state its wavelength"):
        prepare_measured(scan, None, 1.54184, GRID)
    stated = MeasuredPattern(scan.two_theta, scan.intensities, 1.54184, "scan.xy")
    assert prepare_measured(stated, 0.7, 1.54184, GRID).wavelength == 1.54184


def test_data_outside_the_model_range_is_one_clear_error(rock_salt):
    scan = _measured(rock_salt, "CuKa", 60, 90)
    with pytest.raises(XrdsymError, match="fall outside the model's 2θ range"):
        # 60-90 degrees at 0.5 Å are d-spacings that 2 Å cannot reach at all.
        prepare_measured(scan, 0.5, 2.0, GRID)


def test_structure_is_simulated_as_in_training(model_dir, rock_salt):
    classifier = load_classifier(model_dir)
    prepared = prepare_structure(rock_salt, classifier.meta)
    assert np.array_equal(prepared.intensities, pattern_from_structure(rock_salt, "CuKa", GRID, 2))
    probabilities = classifier.probabilities(prepared.intensities[np.newaxis])
    assert probabilities.shape == (1, 3) and np.isclose(probabilities.sum(), 1)


def test_model_directory_checks(tmp_path, model_dir):
    with pytest.raises(XrdsymError, match="not a model directory"):
        read_model_meta(tmp_path)
    meta = json.loads((model_dir / META_FILE).read_text())
    meta["format"] = MODEL_FORMAT + 1
    (model_dir / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(XrdsymError, match="another format") as error:
        load_classifier(model_dir)
    assert "\n" not in str(error.value)


def test_find_inputs_walks_folders(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ["a/x.xy", "a/y.XRDML", "a/notes.docx", "z.cif"]:
        (tmp_path / name).write_text("")
    files, skipped = find_inputs([tmp_path / "a", tmp_path / "z.cif"])
    assert [f.name for f in files] == ["x.xy", "y.XRDML", "z.cif"]
    assert [f.name for f in skipped] == ["notes.docx"]


def test_predict_command_goes_on_past_bad_files(tmp_path, model_dir, rock_salt, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    scan = _measured(rock_salt, "MoKa", 5, 40)
    np.savetxt(folder / "nacl_mo.xy", np.column_stack([scan.two_theta, scan.intensities]))
    (folder / "broken.xy").write_text("2theta intensity\n1 2\nthree 4\n")
    CifWriter(rock_salt).write_file(folder / "nacl.cif")
    out = tmp_path / "out.json"
    plot = tmp_path / "out.png"
    code = main(
        ["predict", str(folder), "--model", str(model_dir), "--wavelength", "MoKa",
         "--top-k", "2", "--json", str(out), "--plot", str(plot)]
    )  # fmt: skip
    assert code == 1
    result = json.loads(out.read_text())
    kinds = {row["source"].rsplit("/", 1)[-1]: row["kind"] for row in result["patterns"]}
    assert kinds == {"nacl.cif": "structure", "nacl_mo.xy": "measured"}
    for row in result["patterns"]:
        assert len(row["predictions"]) == 2
        assert row["predictions"][0]["probability"] >= row["predictions"][1]["probability"]
    assert [source.rsplit("/", 1)[-1] for source, _ in result["failed"]] == ["broken.xy"]
    assert plot.stat().st_size > 0
    err = capsys.readouterr().err
    assert "broken.xy" in err and "failed: 1 of 3 files" in err
    assert "warning:" in err and "nacl_mo.xy: covers" in err
    assert "Traceback" not in err


def test_predict_prints_a_table_and_needs_a_wavelength(tmp_path, model_dir, rock_salt, capsys):
    scan = _measured(rock_salt, "CuKa", 10, 90)
    path = tmp_path / "nacl.xy"
    np.savetxt(path, np.column_stack([scan.two_theta, scan.intensities]))
    assert main(["predict", str(path), "--model", str(model_dir), "--wavelength", "1.5406"]) == 0
    table = capsys.readouterr().out
    assert "nacl.xy\tmeasured\t1.5406 Å" in table
    assert main(["predict", str(path), "--model", str(model_dir)]) == 1
    assert "give --wavelength" in capsys.readouterr().err


def test_a_cif_with_neither_powder_data_nor_a_structure_fails(tmp_path, model_dir, capsys):
    empty = tmp_path / "empty.cif"
    empty.write_text("data_nothing\n_cell_length_a 5.0\n")
    assert main(["predict", str(empty), "--model", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert "failed: 1 of 1 files" in err and "empty.cif: no powder data, and unreadable CIF" in err


DATA = Path(__file__).parent / "data"
# NaCl's strongest reflection, (200): d = a/2 = 2.8201 Å, at Cu Kα 2θ = 2 asin(λ / 2d).
NACL_200_CU = 2 * np.degrees(np.arcsin(parse_wavelength("CuKa") / (2 * 5.6402 / 2)))


@pytest.mark.parametrize(
    ("name", "wavelength"),
    [
        ("nacl_cu.xy", 1.54184),
        ("nacl_cu_decimal_comma.csv", None),
        ("nacl_cu.xrdml", (1.540598 + 0.5 * 1.544426) / 1.5),
        ("nacl_mo.xye", 0.71073),
        ("nacl_rietveld.cif", 1.54184),
    ],
)
def test_committed_samples_convert_to_the_cu_peak_positions(name, wavelength):
    """Each reader on its committed sample: the wavelength stated in the file is found, and on
    the Cu Kα grid NaCl's (200) peak lands where Bragg's law puts it, whatever the anode."""
    (pattern,) = read_measured(DATA / name)
    assert pattern.wavelength == (None if wavelength is None else pytest.approx(wavelength))
    grid = TwoThetaGrid(0, 90, 0.02)

    prepared = prepare_measured(pattern, parse_wavelength("CuKa"), parse_wavelength("CuKa"), grid)

    assert grid.values[np.argmax(prepared.intensities)] == pytest.approx(NACL_200_CU, abs=0.04)


def test_committed_structure_cif_has_no_powder_data():
    with pytest.raises(NoPowderData):
        read_measured(DATA / "nacl.cif")


def test_numpy_export_answers_as_keras(model_dir):
    """With the export the train stage writes, predict runs without Keras and gives the same
    probabilities as the Keras model (the reference)."""
    by_keras = load_classifier(model_dir, engine="keras")
    assert save_inference(by_keras.model, model_dir / INFERENCE_FILE)
    by_numpy = load_classifier(model_dir)
    patterns = np.random.default_rng(0).random((4, GRID.size)).astype(np.float32)

    assert (by_keras.engine, by_numpy.engine) == ("keras", "numpy")
    np.testing.assert_allclose(
        by_numpy.probabilities(patterns), by_keras.probabilities(patterns), atol=1e-5
    )


SHIPPED = Path(__file__).parents[1] / "src" / "xrdsym" / "shipped_model"


def test_shipped_model_classifies_every_sample_as_keras_would():
    """The model shipped with xrdsym says where it came from, runs without Keras, and gives
    the Keras model's probabilities on every committed sample."""
    provenance = json.loads((SHIPPED / "provenance.json").read_text())
    assert len(provenance["git_commit"]) == 40 and provenance["test_metrics"]["n_test"] > 0
    assert provenance["reproduce"].startswith("dvc exp run")
    by_numpy = load_classifier(SHIPPED)
    samples = [path for path in sorted(DATA.iterdir()) if path.suffix != ".md"]
    prepared, failures = prepare_files(
        by_numpy.meta,
        samples,
        wavelength=parse_wavelength("CuKa"),
        background="snip",
        smooth=0.0,
        n_jobs=1,
    )
    assert failures == [] and len(prepared) == len(samples)
    patterns = np.stack([ready.intensities for _, _, ready in prepared])

    probabilities = by_numpy.probabilities(patterns)

    assert by_numpy.engine == "numpy" and np.allclose(probabilities.sum(axis=1), 1)
    by_keras = load_classifier(SHIPPED, engine="keras").probabilities(patterns)
    np.testing.assert_allclose(probabilities, by_keras, atol=1e-4)


def test_predict_uses_the_shipped_model_without_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/ here
    assert main(["predict", str(DATA / "nacl_cu.xy")]) == 0
    err = capsys.readouterr().err
    assert "shipped with xrdsym" in err and "run by numpy" in err


def test_probabilities_of_a_1d_model_use_the_training_inputs(model_dir):
    """predict shapes a 1D model's input without importing xrdsym.inputs; it must be what
    training and evaluation feed the model."""
    from xrdsym.calibration import apply_temperature
    from xrdsym.inputs import model_inputs

    classifier = load_classifier(model_dir)
    patterns = np.random.default_rng(1).random((3, GRID.size))
    expected = apply_temperature(
        classifier.outputs(model_inputs(patterns, "pattern", None)), classifier.meta["temperature"]
    )
    np.testing.assert_array_equal(classifier.probabilities(patterns), expected)


def test_shipped_model_finds_halite_cubic_in_every_format(tmp_path, monkeypatch, capsys):
    """The shipped model on the committed samples (NaCl measured at Cu and Mo Kα in five
    formats, and its structure): cubic first every time. A retrained model must keep this."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "answers.json"
    samples = [str(path) for path in sorted(DATA.iterdir()) if path.suffix != ".md"]
    assert main(["predict", *samples, "--wavelength", "CuKa", "--json", str(out)]) == 0
    answers = json.loads(out.read_text())["patterns"]
    assert len(answers) == len(samples)
    assert {answer["predictions"][0]["crystal_system"] for answer in answers} == {"cubic"}
