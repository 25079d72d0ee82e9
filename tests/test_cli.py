import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _xrdsym(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xrdsym.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_invalid_params_stop_the_stage_with_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sigma"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = _xrdsym("patterns", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "xrdsym patterns: error: params.yaml: sigma=0 is invalid: must be > 0"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_missing_input_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = _xrdsym("patterns", "--structures", "nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nowhere/structures.jsonl.gz: file not found" in result.stderr


def test_help_lists_every_stage():
    result = _xrdsym("--help", cwd=ROOT)
    for stage in ["download", "patterns", "images", "train", "evaluate"]:
        assert stage in result.stdout


def test_predict_with_a_bad_labels_table_is_one_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,system\nnacl_cu.xy,cubic\n")
    sample = ROOT / "tests" / "data" / "nacl_cu.xy"
    result = _xrdsym("predict", str(sample), "--labels", str(labels), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"xrdsym predict: error: {labels}: labels need the columns file, crystal_system "
        "(optional: space_group); missing file, crystal_system, found path, system\n"
    )
    assert result.stdout == ""
