from pathlib import Path

import pytest
import yaml

from xrdsym.config import load_params, stage_params, validate
from xrdsym.errors import ParamsError
from xrdsym.stages import download, evaluate, images, index, patterns, synthesize, train

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "download": download,
    "patterns": patterns,
    "index": index,
    "synthesize": synthesize,
    "images": images,
    "train": train,
    "evaluate": evaluate,
}


@pytest.fixture
def params():
    return load_params(ROOT / "params.yaml")


def test_default_params_are_valid(params):
    validate(params)


def test_every_stage_reads_exactly_what_dvc_yaml_declares():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, module in STAGES.items():
        assert tuple(stages[name].get("params", [])) == module.PARAMS, name


def test_a_stage_sees_only_its_keys(params):
    selected = stage_params(params, images.PARAMS)
    assert set(selected) == {"model", "images"}
    with pytest.raises(KeyError):
        selected["sigma"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ["cubic", "rhombic"]}, "classes='rhombic'"),
        ({"sigma": 0}, "sigma=0"),
        ({"sigma": -1.5}, "sigma=-1.5"),
        ({"two_theta_min": 90, "two_theta_max": 10}, "two_theta_min=90"),
        ({"two_theta_min": 40, "two_theta_max": 40}, "two_theta_min=40"),
        ({"two_theta_step": 100}, "two_theta_step=100"),
        ({"images": {"method": "raster", "size": 16, "colormap": "viridis"}}, "images.size=16"),
        (
            {"images": {"method": "raster", "size": 32, "colormap": "viridis", "png": "yes"}},
            "images.png",
        ),
        ({"dask_scheduler": "somewhere"}, "dask_scheduler='somewhere'"),
        ({"evaluate": {"extra_sets": ["a/real", "b/real"]}}, "two folders have the same name"),
        ({"evaluate": {"extra_sets": "evaluation_sets/real"}}, "must be a list of folders"),
        ({"images": {"method": "raster", "size": 64, "colormap": "nope"}}, "images.colormap"),
        ({"wavelength": "XyKa"}, "wavelength='XyKa'"),
        ({"n_per_class": 0}, "n_per_class=0"),
        ({"model": "resnet"}, "model='resnet'"),
        ({"source": "materials_project"}, "source='materials_project'"),
        ({"source": ["cif_dir", "cif_dir"]}, "lists a source twice"),
        ({"source": []}, "source=[]"),
        ({"train": {"class_weight": "inverse"}}, "train.class_weight='inverse'"),
        ({"train": {"learning_rate_patience": 0}}, "train.learning_rate_patience=0"),
        ({"download": {"matminer": {"data_home": "m", "limit": 0}}}, "download.matminer.limit=0"),
        ({"download": {"matminer": {"data_home": "m"}}}, "missing key 'download.matminer.limit'"),
        ({"download": {"mp_api": {"per_system": {"cubical": 9}}}}, "per_system='cubical'"),
        ({"download": {"mp_api": {"per_system": {"cubic": 0}}}}, "per_system.cubic=0"),
        ({"download": {"amcsd": {"limit": 0}}}, "download.amcsd.limit=0"),
        ({"patterns": {"group_by": "prototype"}}, "patterns.group_by='prototype'"),
        ({"source": "synthetic", "n_per_class": None}, "source synthetic needs a number"),
    ],
)
def test_invalid_params_name_the_key_and_value(params, change, message):
    for key, value in change.items():
        params[key] = {**params[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ParamsError) as error:
        validate(params)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_key_is_named(params):
    del params["sigma"]
    with pytest.raises(ParamsError, match="missing key 'sigma'"):
        stage_params(params, patterns.PARAMS)


def test_missing_nested_key_is_named(params):
    del params["train"]["epochs"]
    with pytest.raises(ParamsError, match=r"missing key 'train\.epochs'"):
        validate(params)


def test_malformed_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("sigma: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_a_list_of_sources_is_valid(params):
    params["source"] = ["cif_dir", "synthetic"]
    validate(params)


def test_missing_synthetic_key_is_named(params):
    del params["download"]["synthetic"]["max_atoms"]
    with pytest.raises(ParamsError, match=r"missing key 'download\.synthetic\.max_atoms'"):
        validate(params)


def test_a_stage_may_declare_one_part_of_a_section(params):
    selected = stage_params(params, ("seed", "train.augment"))
    assert set(selected) == {"seed", "train"} and set(selected["train"]) == {"augment"}
    bad = {**params, "train": {**params["train"], "augment": {"enabled": "yes"}}}
    with pytest.raises(ParamsError, match=r"train\.augment"):
        stage_params(bad, ("train.augment",))
    with pytest.raises(ParamsError, match=r"missing key 'train\.nothing'"):
        stage_params(params, ("train.nothing",))
