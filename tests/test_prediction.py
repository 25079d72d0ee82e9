import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, GRID
from pymatgen.io.cif import CifWriter

import xrdsym
from xrdsym.cli import main
from xrdsym.diffraction import TwoThetaGrid, pattern_from_structure, simulate_peaks
from xrdsym.errors import XrdsymError
from xrdsym.inference import INFERENCE_FILE, save_inference
from xrdsym.measured import MeasuredPattern, NoPowderData, parse_wavelength, read_measured
from xrdsym.prediction import (
    META_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    Label,
    Labels,
    Prediction,
    classify,
    convert_wavelength,
    find_inputs,
    load_classifier,
    measured_settings,
    member_file,
    prepare_files,
    prepare_measured,
    prepare_structure,
    read_labels,
    read_model_meta,
    score_predictions,
)
from xrdsym.preprocessing import (
    MEASURED_DEFAULT,
    MIN_PEAK_SIGNIFICANCE,
    NO_PREPROCESSING,
    InputSettings,
    model_inputs,
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
    prepared = prepare_measured(
        scan, parse_wavelength("MoKa"), parse_wavelength("CuKa"), GRID, MEASURED_DEFAULT
    )
    reference = pattern_from_structure(rock_salt, "CuKa", GRID, 2)
    strongest = GRID.values[np.argmax(reference)]
    assert GRID.values[np.argmax(prepared.intensities)] == pytest.approx(strongest, abs=0.15)
    assert prepared.intensities.min() == 0 and prepared.intensities.max() == 1
    # 5-40 degrees at Mo Kα reach about 11-90 degrees at Cu Kα: most of the range, not all.
    assert 0.8 < prepared.covered_fraction < 0.95
    assert prepared.intensities[: int(10 / GRID.step)].max() == 0


def test_background_is_removed(rock_salt):
    scan = _measured(rock_salt, "CuKa", 10, 90)
    prepared = prepare_measured(scan, 1.54184, 1.54184, GRID, MEASURED_DEFAULT)
    kept = model_inputs(prepared.intensities, GRID, replace(MEASURED_DEFAULT, background="none"))
    removed = model_inputs(prepared.intensities, GRID, MEASURED_DEFAULT)
    between_peaks = (GRID.values > 58) & (GRID.values < 64)  # no NaCl peak here
    assert removed[between_peaks].max() < 0.02 < kept[between_peaks].min()
    assert prepared.settings == MEASURED_DEFAULT


def test_a_scan_with_nothing_left_after_background_removal_is_one_clear_error():
    two_theta = np.arange(10, 80, 0.02)
    flat = MeasuredPattern(two_theta, np.full(two_theta.size, 100.0), 1.54184, "flat.xy")
    with pytest.raises(XrdsymError, match=r"flat\.xy: no intensity left .* --background none"):
        prepare_measured(flat, None, 1.54184, GRID, MEASURED_DEFAULT)
    kept = prepare_measured(flat, None, 1.54184, GRID, NO_PREPROCESSING)
    assert kept.intensities.max() == 1


def test_wavelength_from_the_file_wins_and_is_required(rock_salt):
    scan = _measured(rock_salt, "CuKa", 10, 90)
    with pytest.raises(XrdsymError, match=r"scan\.xy: the file does not state its wavelength"):
        prepare_measured(scan, None, 1.54184, GRID, MEASURED_DEFAULT)
    stated = MeasuredPattern(scan.two_theta, scan.intensities, 1.54184, "scan.xy")
    assert prepare_measured(stated, 0.7, 1.54184, GRID, MEASURED_DEFAULT).wavelength == 1.54184


def test_data_outside_the_model_range_is_one_clear_error(rock_salt):
    scan = _measured(rock_salt, "CuKa", 60, 90)
    with pytest.raises(XrdsymError, match="fall outside the model's 2θ range"):
        # 60-90 degrees at 0.5 Å are d-spacings that 2 Å cannot reach at all.
        prepare_measured(scan, 0.5, 2.0, GRID, MEASURED_DEFAULT)


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
    for name in ["a/x.xy", "a/y.XRDML", "a/notes.docx", "a/labels.csv", "z.cif"]:
        (tmp_path / name).write_text("")
    files, skipped = find_inputs([tmp_path / "a", tmp_path / "z.cif"])
    assert [f.name for f in files] == ["labels.csv", "x.xy", "y.XRDML", "z.cif"]
    assert [f.name for f in skipped] == ["notes.docx"]
    files, _ = find_inputs([tmp_path / "a"], exclude=[tmp_path / "a" / ".." / "a" / "labels.csv"])
    assert [f.name for f in files] == ["x.xy", "y.XRDML"]


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
# The reader samples (tests/data/README.md), one file per format.
SAMPLES = [path for path in sorted(DATA.iterdir()) if path.is_file() and path.suffix != ".md"]
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

    cu = parse_wavelength("CuKa")
    prepared = prepare_measured(pattern, cu, cu, grid, MEASURED_DEFAULT)

    assert grid.values[np.argmax(prepared.intensities)] == pytest.approx(NACL_200_CU, abs=0.04)


def test_committed_structure_cif_has_no_powder_data():
    with pytest.raises(NoPowderData):
        read_measured(DATA / "nacl.cif")


def test_numpy_export_answers_as_keras(model_dir):
    """With the export the train stage writes, predict runs without Keras and gives the same
    probabilities as the Keras model (the reference)."""
    by_keras = load_classifier(model_dir, engine="keras")
    assert save_inference(by_keras.models[0], model_dir / INFERENCE_FILE)
    by_numpy = load_classifier(model_dir)
    patterns = np.random.default_rng(0).random((4, GRID.size)).astype(np.float32)

    assert (by_keras.engine, by_numpy.engine) == ("keras", "numpy")
    np.testing.assert_allclose(
        by_numpy.probabilities(patterns), by_keras.probabilities(patterns), atol=1e-5
    )


def _ensemble_dir(model_dir: Path) -> Path:
    """``model_dir`` made an ensemble of two residual members with a space-group head each,
    other weights and temperatures per member and head, exported as the train stage does."""
    import keras

    from xrdsym.models import build_resnet1d

    meta = json.loads((model_dir / META_FILE).read_text())
    groups = ["195", "221", "225", "62", "14"]
    meta["heads"] = {"classes": meta["classes"], "space_group": groups}
    meta["members"] = []
    for member, temperatures in enumerate([(1.5, 0.8), (0.7, 1.2)]):
        keras.utils.set_random_seed(member)
        model = build_resnet1d(
            GRID.size,
            {"classes": len(CLASSES), "space_group": len(groups)},
            dropout=0.0,
            blocks_per_stage=1,
        )
        names = {
            "model": member_file(MODEL_FILE, member),
            "inference": member_file(INFERENCE_FILE, member),
        }
        model.save(model_dir / names["model"])
        assert save_inference(model, model_dir / names["inference"])
        meta["members"].append(
            names
            | {"temperatures": dict(zip(("classes", "space_group"), temperatures, strict=True))}
        )
    del meta["temperature"]
    (model_dir / META_FILE).write_text(json.dumps(meta))
    return model_dir


def test_an_ensemble_averages_its_members_calibrated_probabilities(model_dir):
    import keras

    from xrdsym.calibration import apply_temperature

    directory = _ensemble_dir(model_dir)
    meta = read_model_meta(directory)
    patterns = np.random.default_rng(0).random((4, GRID.size)).astype(np.float32)
    by_numpy, by_keras = load_classifier(directory), load_classifier(directory, engine="keras")
    assert (len(by_numpy.models), by_numpy.engine, by_keras.engine) == (2, "numpy", "keras")
    inputs = by_keras.network_inputs(by_keras.inputs(patterns))
    expected = {}
    for head in ("classes", "space_group"):
        members = [
            apply_temperature(
                keras.saving.load_model(directory / m["model"]).predict(inputs, verbose=0)[head],
                m["temperatures"][head],
            )
            for m in meta["members"]
        ]
        expected[head] = (members[0] + members[1]) / 2
        # The members differ: the mean is not either one.
        assert np.abs(members[0] - members[1]).max() > 1e-3
    for classifier in (by_numpy, by_keras):
        heads = classifier.calibrated_heads(classifier.inputs(patterns))
        for head, values in expected.items():
            np.testing.assert_allclose(heads[head], values, atol=1e-5)
        np.testing.assert_allclose(
            classifier.probabilities(patterns), expected["classes"], atol=1e-5
        )


def test_predict_names_space_groups_of_a_model_with_that_head(
    tmp_path, model_dir, rock_salt, capsys
):
    directory = _ensemble_dir(model_dir)
    scan = _measured(rock_salt, "CuKa", 10, 90)
    path = tmp_path / "nacl.xy"
    np.savetxt(path, np.column_stack([scan.two_theta, scan.intensities]))
    labels = tmp_path / "labels.csv"
    labels.write_text("file,crystal_system,space_group\nnacl.xy,cubic,225\n")
    out = tmp_path / "out.json"

    assert (
        main(
            [
                "predict",
                str(path),
                "--model",
                str(directory),
                "--wavelength",
                "CuKa",
                "--top-k",
                "2",
                "--labels",
                str(labels),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    groups = result["patterns"][0]["space_groups"]
    assert len(groups) == 2 and {g["space_group"] for g in groups} <= {
        "195",
        "221",
        "225",
        "62",
        "14",
    }
    assert result["scores"]["space_group"]["n"] == 1
    assert main(["predict", str(path), "--model", str(directory), "--wavelength", "CuKa"]) == 0
    assert "space group (head besides)" in capsys.readouterr().out


SHIPPED = Path(__file__).parents[1] / "src" / "xrdsym" / "shipped_model"


def test_shipped_model_classifies_every_sample_as_keras_would():
    """The model shipped with xrdsym says where it came from, runs without Keras, and gives
    the Keras model's probabilities on every committed sample."""
    provenance = json.loads((SHIPPED / "provenance.json").read_text())
    assert len(provenance["git_commit"]) == 40 and provenance["test_metrics"]["n_test"] > 0
    assert provenance["reproduce"].startswith("dvc exp run")
    assert "xrdsym combine" in provenance["reproduce"] and provenance["combiner"]["n_fit"] > 0
    by_numpy = load_classifier(SHIPPED)
    reading = prepare_files(
        by_numpy.meta,
        SAMPLES,
        wavelength=parse_wavelength("CuKa"),
        background="snip",
        smooth=0.0,
        n_jobs=1,
    )
    assert reading.failures == reading.not_patterns == reading.notes == []
    assert len(reading.prepared) == len(SAMPLES)
    patterns = np.stack([ready.intensities for _, _, ready in reading.prepared])

    probabilities = by_numpy.probabilities(patterns, MEASURED_DEFAULT)

    assert by_numpy.engine == "numpy" and np.allclose(probabilities.sum(axis=1), 1)
    by_keras = load_classifier(SHIPPED, engine="keras").probabilities(patterns, MEASURED_DEFAULT)
    np.testing.assert_allclose(probabilities, by_keras, atol=1e-4)


def test_predict_uses_the_shipped_model_without_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/ here
    assert main(["predict", str(DATA / "nacl_cu.xy")]) == 0
    err = capsys.readouterr().err
    assert "shipped with xrdsym" in err and "run by numpy" in err


@pytest.mark.parametrize("stored", [None, InputSettings("snip", 2.0, 1.5)])
def test_probabilities_of_a_1d_model_use_the_training_inputs(model_dir, stored):
    """predict shapes a 1D model's input without importing xrdsym.inputs; it must be what
    training and evaluation feed the model: the stored patterns through the input transform
    with the settings the model records (none recorded: the patterns as they are)."""
    import keras

    from xrdsym.calibration import apply_temperature
    from xrdsym.inputs import network_inputs

    meta = json.loads((model_dir / META_FILE).read_text())
    meta["preprocessing"]["inputs"] = None if stored is None else stored.to_json()
    (model_dir / META_FILE).write_text(json.dumps(meta))
    classifier = load_classifier(model_dir)
    patterns = np.random.default_rng(1).random((3, GRID.size))
    seen = model_inputs(patterns, GRID, stored or NO_PREPROCESSING)
    keras_model = keras.saving.load_model(model_dir / MODEL_FILE)
    expected = apply_temperature(
        keras_model.predict(network_inputs(seen, "pattern", None), verbose=0),
        classifier.meta["temperature"],
    )
    assert classifier.input_settings == (stored or NO_PREPROCESSING)
    np.testing.assert_array_equal(classifier.inputs(patterns), seen)
    np.testing.assert_array_equal(classifier.probabilities(patterns), expected)


def test_a_model_without_input_settings_predicts_as_before(model_dir, rock_salt):
    """A model that records no input settings (one from before they existed) reads measured
    scans after SNIP without smoothing, and simulated structures as they are, as predict did;
    --background and --smooth replace the settings of measured scans only."""
    meta = read_model_meta(SHIPPED)
    del meta["preprocessing"]["inputs"]  # as models trained before the transform existed
    assert measured_settings(meta) == MEASURED_DEFAULT == InputSettings("snip", 3.0, 0.0)
    assert measured_settings(meta, "none", 2) == InputSettings("none", 3.0, 2.0)
    assert prepare_structure(rock_salt, meta).settings == NO_PREPROCESSING
    stored = InputSettings("none", 4.0, 1.0)
    meta["preprocessing"]["inputs"] = stored.to_json()
    assert measured_settings(meta) == stored
    assert measured_settings(meta, background="snip") == InputSettings("snip", 4.0, 1.0)
    assert prepare_structure(rock_salt, meta).settings == stored
    # classify reads each pattern through its own settings, and keeps what the model saw.
    classifier = load_classifier(model_dir)
    scan = _measured(rock_salt, "CuKa", 10, 90)
    measured = prepare_measured(scan, 1.54184, 1.54184, GRID, MEASURED_DEFAULT)
    structure = prepare_structure(rock_salt, classifier.meta)
    predictions = classify(
        classifier, [("s", "measured", measured), ("c", "structure", structure)], 2
    )
    np.testing.assert_array_equal(
        predictions[0].intensities, model_inputs(measured.intensities, GRID, MEASURED_DEFAULT)
    )
    np.testing.assert_array_equal(predictions[1].intensities, structure.intensities)
    np.testing.assert_allclose(
        predictions[0].probabilities,
        classifier.probabilities(measured.intensities[np.newaxis], MEASURED_DEFAULT)[0],
        rtol=1e-6,
    )


def test_predict_background_and_smooth_override_the_model(tmp_path, capsys):
    sample = str(DATA / "nacl_cu.xy")
    out = {name: tmp_path / f"{name}.json" for name in ("default", "snip", "none", "smooth")}
    assert main(["predict", sample, "--json", str(out["default"])]) == 0
    assert main(["predict", sample, "--background", "snip", "--json", str(out["snip"])]) == 0
    assert main(["predict", sample, "--background", "none", "--json", str(out["none"])]) == 0
    assert main(["predict", sample, "--smooth", "2", "--json", str(out["smooth"])]) == 0
    answers = {name: json.loads(path.read_text())["patterns"] for name, path in out.items()}
    assert answers["default"] == answers["snip"]  # the shipped model's default is SNIP
    assert answers["none"] != answers["snip"] and answers["smooth"] != answers["snip"]
    assert main(["predict", sample, "--background", "rolling"]) == 1
    assert main(["predict", sample, "--smooth", "-1"]) == 1
    err = capsys.readouterr().err
    assert "--background rolling: must be one of" in err and "--smooth -1: must be 0" in err


def test_shipped_model_finds_halite_cubic_in_every_format(tmp_path, monkeypatch, capsys):
    """The shipped model on the committed samples (NaCl measured at Cu and Mo Kα in five
    formats, and its structure): cubic first every time. A retrained model must keep this."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "answers.json"
    samples = [str(path) for path in SAMPLES]
    assert main(["predict", *samples, "--wavelength", "CuKa", "--json", str(out)]) == 0
    answers = json.loads(out.read_text())["patterns"]
    assert len(answers) == len(samples)
    assert {answer["predictions"][0]["crystal_system"] for answer in answers} == {"cubic"}


# --- scoring against labels (predict --labels, --min-confidence) ------------------------------

# PLATON's simulated powder pattern, as IUCr journals append it to a Rietveld CIF: calculated
# intensities over 0.02-5 degrees at Mo Kα.
PLATON_BLOCK = (
    "\ndata_NaCl_phase_1_simulated_\n_publcif_pd_cifplot 'simulated 2021-05-09'\n"
    "_pd_proc_2theta_range_min 0.020\n_pd_proc_2theta_range_max 5.000\n"
    "_pd_proc_2theta_range_inc 0.020\n_diffrn_radiation_wavelength 0.71073\n"
    "loop_ _pd_calc_intensity_total\n" + "\n".join(f"{i % 7 * 10.0:.1f}" for i in range(250))
)


def _prediction(source: str, top: list[tuple[str, float]]) -> Prediction:
    probabilities = np.array([p for _, p in top])
    return Prediction(source, "measured", 1.54, 1.0, top, probabilities, np.zeros(GRID.size))


def _noise_scan(path: Path) -> Path:
    """Poisson counts around 100 with no peak: a pattern of pure noise."""
    two_theta = np.arange(5, 90, 0.02)
    counts = np.random.default_rng(0).poisson(100, two_theta.size)
    np.savetxt(path, np.column_stack([two_theta, counts]), fmt="%.2f %d", header="λ = 1.5406")
    return path


def test_predict_scores_the_committed_samples_against_labels(tmp_path, capsys):
    """Labels kept in another folder match the samples by base name (a CIF's data block by
    its file); a labelled file not predicted and a prediction without a label are counted."""
    labels = tmp_path / "labels.csv"
    rows = [f"{path.name},cubic,Fm-3m (No.225)" for path in SAMPLES if path.name != "nacl.cif"]
    labels.write_text("\n".join(["file,crystal_system,space_group", *rows, "quartz.xy,trigonal"]))
    out = tmp_path / "answers.json"
    samples = [str(path) for path in SAMPLES]
    command = ["predict", *samples, "--wavelength", "CuKa", "--labels", str(labels)]

    assert main([*command, "--json", str(out)]) == 0

    scores = json.loads(out.read_text())["scores"]
    n = len(SAMPLES) - 1
    assert (scores["n_labelled"], scores["n_scored"]) == (n + 1, n)
    assert scores["labelled_not_predicted"] == ["quartz.xy"]
    assert scores["predicted_without_label"] == [str(DATA / "nacl.cif")]
    system = scores["crystal_system"]
    assert system["accuracy"] == system["macro_f1"] == 1.0
    assert system["recall"] == {"cubic": {"recall": 1.0, "support": n}}
    assert system["confusion"] == {"classes": ["cubic"], "matrix": [[n]]}
    assert system["accuracy_at_coverage"] == {"50%": 1.0, "80%": 1.0, "100%": 1.0}
    printed = capsys.readouterr().out
    assert f"1 of {n + 1} labelled files not predicted (e.g. quartz.xy)" in printed
    assert "crystal system: accuracy 1.00, macro-F1 1.00 over the 1 classes" in printed
    assert f"(rows actual, columns predicted):\nactual \\ predicted\tcubic\ncubic\t{n}\n" in printed
    # The table first, then the scores.
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert printed.index("nacl_cu.xy\tmeasured") < printed.index("scores against")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("name,system\na.xy,cubic\n", "missing file, crystal_system, found name, system"),
        ("", "missing file, crystal_system, found no header"),
        ("file,crystal_system\na.xy,cubik\n", "line 2: crystal system 'cubik' is not one of"),
        ("file,crystal_system\na.xy,cubic\na.xy,cubic\n", "line 3: a.xy is labelled twice"),
        ("file,crystal_system\n\n", "no labelled files"),
        (b"\xff\xfe\x00\x01", "not a CSV table of labels (UnicodeDecodeError)"),
        (None, "cannot read the labels (No such file or directory)"),
    ],
)
def test_bad_labels_stop_predict_with_one_line(tmp_path, content, reason, capsys):
    labels = tmp_path / "labels.csv"
    if isinstance(content, bytes):
        labels.write_bytes(content)
    elif content is not None:
        labels.write_text(content)
    assert main(["predict", str(DATA / "nacl_cu.xy"), "--labels", str(labels)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"xrdsym predict: error: {labels}: ") and reason in err
    assert err.count("\n") == 1


def test_labels_columns_and_space_groups(tmp_path):
    """Column names in any case, blanks or hyphens; a space group as a number or "No. N"."""
    path = tmp_path / "labels.csv"
    path.write_text(
        "File,Crystal System,space-group,notes\n"
        "a.xy,Cubic,Fd-3m (No.227),\n"
        'b.cif,monoclinic,"P n (No.7; 57 wt%) + P c a 21 (No.29)","two phases, the first"\n'
        "c.cif,monoclinic,superspace X2/m(a0g)0s (no 3D H-M symbol in file),\n"
        "d.xy,trigonal, 154 ,\n"
    )
    rows = read_labels(path).rows
    assert [(row.file, row.crystal_system, row.space_group) for row in rows] == [
        ("a.xy", "cubic", 227),
        ("b.cif", "monoclinic", 7),
        ("c.cif", "monoclinic", None),
        ("d.xy", "trigonal", 154),
    ]


def test_scores_accuracy_coverage_and_min_confidence(tmp_path):
    """Accuracy, macro-F1, recall and confusion over the labelled patterns; the most confident
    fractions; at a minimum confidence, the coverage and both accuracies."""
    labels = Labels(
        tmp_path / "labels.csv",
        [
            Label("a.xy", "cubic", None),
            Label("b.xy", "cubic", None),
            Label("sub/c.cif", "hexagonal", None),
            Label("d.xy", "tetragonal", None),
        ],
    )
    predictions = [
        _prediction(str(tmp_path / "a.xy"), [("cubic", 0.9)]),
        _prediction(str(tmp_path / "b.xy"), [("hexagonal", 0.6)]),
        _prediction(str(tmp_path / "sub" / "c.cif#I"), [("hexagonal", 0.8)]),
        _prediction(str(tmp_path / "elsewhere" / "d.xy"), [("tetragonal", 0.3)]),  # base name
        _prediction(str(tmp_path / "e.xy"), [("cubic", 0.99)]),
    ]

    scores = score_predictions(predictions, labels, "crystal_system", CLASSES, 0.5)

    assert scores["predicted_without_label"] == [str(tmp_path / "e.xy")]
    assert scores["labelled_not_predicted"] == []
    part = scores["crystal_system"]
    assert part["accuracy"] == 0.75
    assert part["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert {name: row["recall"] for name, row in part["recall"].items()} == {
        "cubic": 0.5,
        "hexagonal": 1.0,
        "tetragonal": 1.0,
    }
    assert part["confusion"] == {"classes": CLASSES, "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]}
    # The most confident 50 % (a, c) are right; 80 % of 4 patterns keeps all 4.
    assert part["accuracy_at_coverage"] == {"50%": 1.0, "80%": 0.75, "100%": 0.75}
    # d (0.3) is uncertain: 3 of 4 answered, 2 of them right.
    assert part["coverage"] == 0.75
    assert part["accuracy_answered"] == pytest.approx(2 / 3)
    assert part["accuracy_all"] == 0.5


def test_space_group_model_scores_groups_and_the_systems_they_imply(tmp_path):
    labels = Labels(
        tmp_path / "labels.csv",
        [
            Label("a.xy", "cubic", 225),
            Label("b.xy", "orthorhombic", None),
            Label("c.xy", "cubic", 229),
        ],
    )
    predictions = [
        _prediction(str(tmp_path / "a.xy"), [("225", 0.5)]),
        _prediction(str(tmp_path / "b.xy"), [("62", 0.4)]),
        _prediction(str(tmp_path / "c.xy"), [("225", 0.3)]),
    ]
    groups = [str(n) for n in range(1, 231)]

    scores = score_predictions(predictions, labels, "space_group", groups)

    assert scores["crystal_system"]["accuracy"] == 1.0
    assert scores["crystal_system"]["confusion"]["classes"] == ["cubic", "orthorhombic"]
    assert scores["space_group"]["n"] == 2 and scores["space_group"]["accuracy"] == 0.5
    assert scores["space_group"]["confusion"] == {
        "classes": ["225", "229"],
        "matrix": [[1, 0], [1, 0]],
    }


def test_min_confidence_reports_uncertain_patterns(tmp_path, capsys):
    """Pure noise gets no answer (uncertain), halite's scan a sure one (cubic 0.84); at 0.999
    nothing is sure."""
    noise = _noise_scan(tmp_path / "noise.xy")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,crystal_system\nnacl_cu.xy,cubic\nnoise.xy,cubic\n")
    command = ["predict", str(DATA / "nacl_cu.xy"), str(noise), "--labels", str(labels)]

    assert main([*command, "--min-confidence", "0.8"]) == 0

    printed = capsys.readouterr()
    table = dict(line.split("\t", 1) for line in printed.out.splitlines() if "\tmeasured\t" in line)
    assert "uncertain" not in table[str(DATA / "nacl_cu.xy")]
    assert "\tnone: no peak stands out of the noise\tnot indexed (0 peaks)" in table[str(noise)]
    assert "uncertain: 1 of 2 patterns (top probability below 0.8)" in printed.err
    assert "coverage 0.50, accuracy on answered 1.00, accuracy over all 0.50" in printed.out
    out = tmp_path / "out.json"
    assert main([*command, "--min-confidence", "0.999", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row["uncertain"] for row in result["patterns"]] == [True, True]
    part = result["scores"]["crystal_system"]
    assert (part["coverage"], part["accuracy_answered"], part["accuracy_all"]) == (0.0, None, 0.0)
    capsys.readouterr()
    assert main([*command, "--min-confidence", "1"]) == 1
    assert (
        capsys.readouterr().err == "xrdsym predict: error: --min-confidence 1: must be in [0, 1)\n"
    )


def test_predict_says_when_no_peak_stands_out_of_the_noise(tmp_path, capsys):
    """A scan of pure noise gets no crystal system, flagged in the table, the JSON and a
    warning; halite's scan and a structure are answered."""
    noise = _noise_scan(tmp_path / "noise.xy")
    out = tmp_path / "out.json"
    command = ["predict", str(DATA / "nacl_cu.xy"), str(noise), str(DATA / "nacl.cif")]

    assert main(command) == 0

    printed = capsys.readouterr()
    table = dict(line.split("\t", 1) for line in printed.out.splitlines() if "\t" in line)
    assert "\tnone: no peak stands out of the noise\tnot indexed (0 peaks)" in table[str(noise)]
    assert "no peak" not in table[str(DATA / "nacl_cu.xy")]
    assert f"warning: {noise}: no peak stands out of the noise: not a crystalline" in printed.err
    assert printed.err.count("no peak stands out") == 1
    assert main([*command, "--json", str(out)]) == 0
    rows = {row["source"]: row for row in json.loads(out.read_text())["patterns"]}
    assert rows[str(noise)]["no_peaks"] is True and rows[str(noise)]["crystal_system"] is None
    assert rows[str(noise)]["reason"].startswith("no peak stands out of the noise")
    assert rows[str(DATA / "nacl_cu.xy")]["crystal_system"] == "cubic"
    assert rows[str(noise)]["peak_significance"] < MIN_PEAK_SIGNIFICANCE
    assert rows[str(DATA / "nacl_cu.xy")]["peak_significance"] > 10 * MIN_PEAK_SIGNIFICANCE
    structure = [row for row in rows.values() if row["kind"] != "measured"]
    assert [(row["no_peaks"], row["peak_significance"]) for row in structure] == [(False, None)]


def test_predict_skips_files_in_a_folder_that_are_not_patterns(tmp_path, capsys):
    """In a folder, the labels table is left out, and notes and files of other types are
    skipped in one line; named on the command line, a file without a pattern fails."""
    folder = tmp_path / "set"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DATA / "nacl_cu.xy", folder / "sub")
    (folder / "README.md").write_text("# scans\n")
    (folder / "notes.txt").write_text("measured on Monday\nby A. N. Author\n")
    labels = folder / "labels.csv"
    labels.write_text("file,crystal_system\nsub/nacl_cu.xy,cubic\n")
    out = tmp_path / "out.json"

    assert main(["predict", str(folder), "--labels", str(labels), "--json", str(out)]) == 0

    result = json.loads(out.read_text())
    assert [row["source"] for row in result["patterns"]] == [str(folder / "sub" / "nacl_cu.xy")]
    assert result["failed"] == [] and result["scores"]["n_scored"] == 1
    err = capsys.readouterr().err
    assert "skipped 2 files that are not patterns" in err and "failed" not in err
    assert main(["predict", str(folder / "notes.txt")]) == 1
    err = capsys.readouterr().err
    assert "failed: 1 of 1 files" in err and "notes.txt: no data points" in err


def test_predict_reads_the_measured_block_not_the_simulated_one(tmp_path, capsys):
    """A Rietveld CIF with PLATON's simulated block appended: the measured profile is
    classified, and the calculated block is reported as skipped."""
    cif = tmp_path / "nacl_platon.cif"
    cif.write_text((DATA / "nacl_rietveld.cif").read_text() + PLATON_BLOCK)
    out = tmp_path / "out.json"

    assert main(["predict", str(cif), "--json", str(out)]) == 0

    rows = json.loads(out.read_text())["patterns"]
    assert [(row["source"], row["kind"]) for row in rows] == [
        (f"{cif}#NaCl_powder_pattern", "measured")
    ]
    assert rows[0]["wavelength_angstrom"] == 1.54184
    assert (
        f"warning: skipped calculated block {cif}#NaCl_phase_1_simulated_ (simulated powder "
        "data, not measured)" in capsys.readouterr().err
    )


def test_the_shipped_model_answers_rock_salt_in_noise_and_not_noise_or_glass(rock_salt):
    """The shipped model indexes: rock salt's pattern under the same Poisson noise as a flat
    scan stays cubic with its cell, while the flat scan and an amorphous hump get no crystal
    system."""
    two_theta = np.arange(5, 90, 0.02)
    background = 100 + 900 * np.exp(-4 * np.log(2) * ((two_theta - 25) / 10) ** 2)
    rng = np.random.default_rng(3)
    peaks = simulate_peaks(rock_salt, 1.5406, (5, 90))
    profile = np.zeros_like(two_theta)
    for position, height in zip(peaks.two_theta, peaks.intensities, strict=True):
        profile += 30 * height * np.exp(-4 * np.log(2) * ((two_theta - position) / 0.1) ** 2)
    scans = {
        "noise": rng.poisson(np.full(two_theta.size, 100.0)),
        "glass": rng.poisson(background),
        "rock_salt": rng.poisson(100 + profile),
    }
    results = {
        name: xrdsym.predict((two_theta, counts), wavelength=1.5406)[0]
        for name, counts in scans.items()
    }

    for name in ("noise", "glass"):
        assert results[name].crystal_system is None
        assert {"no_peaks", "uncertain"} <= set(results[name].flags)
    rock_salt = results["rock_salt"]
    assert rock_salt.crystal_system == "cubic" and rock_salt.lattice_system == "cubic"
    assert rock_salt.cell["a"] == pytest.approx(5.64, abs=0.01)
    assert "no_peaks" not in rock_salt.flags and "unindexed" not in rock_salt.flags
