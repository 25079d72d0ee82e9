"""Params: read once by the CLI, validated, and handed to each stage as plain values.

Each stage declares the params keys it reads (``PARAMS`` in its module, the same list as its
``params:`` in dvc.yaml); :func:`stage_params` hands it those keys and nothing else, so a stage
cannot read a key DVC does not know it depends on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from xrdsym.augmentation import AugmentSettings
from xrdsym.diffraction import SIMULATORS
from xrdsym.errors import ParamsError
from xrdsym.preprocessing import InputSettings
from xrdsym.symmetry import CRYSTAL_SYSTEMS, TARGETS
from xrdsym.wavelengths import WAVELENGTHS

SOURCES = ("synthetic", "cif_table", "amcsd", "cif_dir", "matminer", "mp_api")
# Each model and what it reads: "image" (square RGB images from the images stage) or
# "pattern" (the normalised 1D pattern itself, one channel).
MODEL_INPUTS = {"mobilenetv2": "image", "cnn1d": "pattern", "resnet1d": "pattern"}
CLASS_WEIGHTS = ("none", "balanced")
# What the model trains on (train.data): the real structures' training split, the synthesize
# stage's crystals, or both; validation and test are real whatever this says.
TRAINING_DATA = ("real", "synthetic", "real_and_synthetic")
# What each split holds whole (patterns.group_by), a column of the patterns' index: structure
# types (space group and occupied Wyckoff letters, whatever the elements) or reduced formulas.
GROUP_BY = ("structure_type", "formula")
IMAGE_METHODS = ("raster",)
CIF_TABLE_KEYS = (
    "tables",
    "id_column",
    "cif_column",
    "space_group_column",
    "class_column",
    "keep_columns",
    "data_home",
)
SYNTHETIC_KEYS = (
    "elements",
    "max_species",
    "max_atoms",
    "volume_factor",
    "max_attempts",
    "attempt_timeout_s",
)
# keras.applications.MobileNetV2 rejects inputs smaller than 32x32 pixels.
MIN_IMAGE_SIZE = 32


def load_params(path: str | Path) -> dict[str, Any]:
    """Read params.yaml; a missing or malformed file is a ParamsError."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read params ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of params, got {type(params).__name__}")
    return params


def stage_params(params: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The subset of ``params`` a stage declared, validated; a missing key is a ParamsError.
    A dotted key (``train.augment``) selects one part of a section, as DVC's params do."""
    selected: dict[str, Any] = {}
    parts = []
    for key in keys:
        section, _, part = key.partition(".")
        if part and section in params and not isinstance(params[section], dict):
            raise _fail(section, params[section], "must be a mapping")
        if section not in params or (part and part not in params[section]):
            raise ParamsError(f"params.yaml: missing key '{key}'")
        if part:
            selected.setdefault(section, {})[part] = params[section][part]
            parts.append(key)
        else:
            selected[key] = params[key]
    validate({k: v for k, v in selected.items() if not any(p.startswith(k + ".") for p in parts)})
    for key in parts:
        _PART_CHECKS[key](selected[key.partition(".")[0]][key.partition(".")[2]])
    return selected


def _fail(key: str, value: Any, why: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key}={value!r} is invalid: {why}")


def _number(key: str, value: Any, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, value, "must be a number")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise _fail(key, value, f"must be {'>' if strict else '>='} {minimum}")
    return float(value)


def _integer(key: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, value, "must be an integer")
    if value < minimum:
        raise _fail(key, value, f"must be >= {minimum}")
    return value


def _choice(key: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise _fail(key, value, f"must be one of {', '.join(choices)}")
    return value


def _classes(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise _fail("classes", value, "must be a non-empty list of crystal systems")
    for name in value:
        _choice("classes", name, CRYSTAL_SYSTEMS)
    if len(set(value)) != len(value):
        raise _fail("classes", value, "lists a crystal system twice")


def _wavelength(value: Any) -> None:
    if isinstance(value, str):
        _choice("wavelength", value, WAVELENGTHS)
    else:
        _number("wavelength", value, minimum=0, strict=True)


def _two_theta(params: dict[str, Any]) -> None:
    low = _number("two_theta_min", params["two_theta_min"], minimum=0)
    high = _number("two_theta_max", params["two_theta_max"])
    if not low < high <= 180:
        raise ParamsError(
            f"params.yaml: two_theta_min={low!r}, two_theta_max={high!r} is invalid: "
            "need 0 <= two_theta_min < two_theta_max <= 180 degrees"
        )
    if "two_theta_step" in params:
        step = _number("two_theta_step", params["two_theta_step"], minimum=0, strict=True)
        if step > high - low:
            raise _fail("two_theta_step", step, f"larger than the 2θ range {high - low:g} degrees")


def _fraction(key: str, value: Any) -> float:
    value = _number(key, value, minimum=0, strict=True)
    if value >= 1:
        raise _fail(key, value, "must be a fraction in (0, 1)")
    return value


def _sources(value: Any) -> None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _fail("source", value, "must be a source name or a non-empty list of them")
    for name in names:
        _choice("source", name, SOURCES)
    if len(set(names)) != len(names):
        raise _fail("source", value, "lists a source twice")


def _subsection(section: dict[str, Any], key: str, names: Iterable[str]) -> dict[str, Any]:
    """``section[name]`` (params key ``key``), checked to be a mapping holding ``names``."""
    subsection = section[key.rsplit(".", 1)[-1]]
    if not isinstance(subsection, dict):
        raise _fail(key, subsection, "must be a mapping")
    missing = [name for name in names if name not in subsection]
    if missing:
        raise ParamsError(f"params.yaml: missing key '{key}.{missing[0]}'")
    return subsection


def _column(key: str, value: Any, optional: bool = False) -> None:
    if not (isinstance(value, str) and value) and not (optional and value is None):
        raise _fail(key, value, "must be a column name" + (" or null" if optional else ""))


def _cif_table(section: dict[str, Any]) -> None:
    key = "download.cif_table"
    tables = section["tables"]
    if not isinstance(tables, list) or not tables:
        raise _fail(f"{key}.tables", tables, "must be a non-empty list of tables")
    for table in tables:
        if isinstance(table, str) and table:
            continue
        if not (isinstance(table, dict) and set(table) == {"url", "sha256"}):
            raise _fail(f"{key}.tables", table, "must be a path or {url: ..., sha256: ...}")
        sha256 = table["sha256"]
        if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
            raise _fail(f"{key}.tables", table, "sha256 must be 64 hex digits")
        if not (isinstance(table["url"], str) and "://" in table["url"]):
            raise _fail(f"{key}.tables", table, "url must be a URL")
    _column(f"{key}.id_column", section["id_column"])
    _column(f"{key}.cif_column", section["cif_column"])
    _column(f"{key}.space_group_column", section["space_group_column"], optional=True)
    _column(f"{key}.class_column", section["class_column"], optional=True)
    columns = section["keep_columns"]
    if not isinstance(columns, list):
        raise _fail(f"{key}.keep_columns", columns, "must be a list of column names")
    for column in columns:
        _column(f"{key}.keep_columns", column)
    if not isinstance(section["data_home"], str) or not section["data_home"]:
        raise _fail(f"{key}.data_home", section["data_home"], "must be a folder path")


def _download(section: dict[str, Any]) -> None:
    if not isinstance(section["cif_dir"], str) or not section["cif_dir"]:
        raise _fail("download.cif_dir", section["cif_dir"], "must be a folder path")
    matminer = _subsection(section, "download.matminer", ("data_home", "limit"))
    if not isinstance(matminer["data_home"], str) or not matminer["data_home"]:
        raise _fail("download.matminer.data_home", matminer["data_home"], "must be a folder path")
    if matminer["limit"] is not None:
        _integer("download.matminer.limit", matminer["limit"], minimum=1)
    per_system = _subsection(section, "download.mp_api", ("per_system",))["per_system"]
    if not isinstance(per_system, dict) or not per_system:
        raise _fail("download.mp_api.per_system", per_system, "must map crystal systems to counts")
    for system, count in per_system.items():
        _choice("download.mp_api.per_system", system, CRYSTAL_SYSTEMS)
        _integer(f"download.mp_api.per_system.{system}", count, minimum=1)
    _cif_table(_subsection(section, "download.cif_table", CIF_TABLE_KEYS))
    limit = _subsection(section, "download.amcsd", ("limit",))["limit"]
    if limit is not None:
        _integer("download.amcsd.limit", limit, minimum=1)
    key = "download.synthetic"
    synthetic = _subsection(section, key, SYNTHETIC_KEYS)
    _integer(f"{key}.max_species", synthetic["max_species"], minimum=1)
    _integer(f"{key}.max_atoms", synthetic["max_atoms"], minimum=1)
    _integer(f"{key}.max_attempts", synthetic["max_attempts"], minimum=1)
    _number(f"{key}.volume_factor", synthetic["volume_factor"], minimum=0, strict=True)
    _number(f"{key}.attempt_timeout_s", synthetic["attempt_timeout_s"], minimum=0, strict=True)
    elements = synthetic["elements"]
    if not isinstance(elements, list) or len(elements) < synthetic["max_species"]:
        raise _fail(f"{key}.elements", elements, "needs at least max_species elements")


def _patterns(section: dict[str, Any]) -> None:
    _number("patterns.symprec", section["symprec"], minimum=0, strict=True)
    _number("patterns.angle_tolerance", section["angle_tolerance"], minimum=0, strict=True)
    test = _fraction("patterns.test_size", section["test_size"])
    val = _fraction("patterns.val_size", section["val_size"])
    if test + val >= 1:
        raise _fail("patterns.val_size", val, "test_size + val_size must leave a training split")
    _choice("patterns.simulator", section["simulator"], SIMULATORS)
    _choice("patterns.group_by", section["group_by"], GROUP_BY)
    _integer("patterns.chunk_size", section["chunk_size"], minimum=1)


def _synthesize(section: dict[str, Any]) -> None:
    _integer("synthesize.n_structures", section["n_structures"], minimum=0)
    _integer("synthesize.max_atoms", section["max_atoms"], minimum=1)
    _integer("synthesize.max_attempts", section["max_attempts"], minimum=1)
    _number("synthesize.attempt_timeout_s", section["attempt_timeout_s"], minimum=0, strict=True)


def _images(section: dict[str, Any]) -> None:
    _choice("images.method", section["method"], IMAGE_METHODS)
    _integer("images.size", section["size"], minimum=MIN_IMAGE_SIZE)
    if not isinstance(section["png"], bool):
        raise _fail("images.png", section["png"], "must be true or false")
    import matplotlib

    if section["colormap"] not in matplotlib.colormaps:
        raise _fail("images.colormap", section["colormap"], "not a matplotlib colormap")


def _train(section: dict[str, Any]) -> None:
    if section["weights"] not in (None, "imagenet"):
        raise _fail("train.weights", section["weights"], "must be null or imagenet")
    _integer("train.epochs", section["epochs"], minimum=1)
    _integer("train.batch_size", section["batch_size"], minimum=1)
    _number("train.learning_rate", section["learning_rate"], minimum=0, strict=True)
    _integer("train.patience", section["patience"], minimum=1)
    if section["learning_rate_patience"] is not None:
        _integer("train.learning_rate_patience", section["learning_rate_patience"], minimum=1)
    _number("train.alpha", section["alpha"], minimum=0, strict=True)
    momentum = _number("train.batchnorm_momentum", section["batchnorm_momentum"], minimum=0)
    if momentum >= 1:
        raise _fail("train.batchnorm_momentum", momentum, "must be in [0, 1)")
    _choice("train.class_weight", section["class_weight"], CLASS_WEIGHTS)
    dropout = _number("train.dropout", section["dropout"], minimum=0)
    if dropout >= 1:
        raise _fail("train.dropout", dropout, "must be in [0, 1)")
    if not isinstance(section["mixed_precision"], bool):
        raise _fail("train.mixed_precision", section["mixed_precision"], "must be true or false")
    _integer("train.resnet_blocks", section["resnet_blocks"], minimum=1)
    if not isinstance(section["space_group_head"], bool):
        raise _fail("train.space_group_head", section["space_group_head"], "must be true or false")
    _number("train.space_group_loss_weight", section["space_group_loss_weight"], minimum=0)
    _integer("train.ensemble", section["ensemble"], minimum=1)
    if not isinstance(section["combine"], bool):
        raise _fail("train.combine", section["combine"], "must be true or false")
    _choice("train.data", section["data"], TRAINING_DATA)
    _integer("train.augment.workers", section["augment"]["workers"], minimum=1)
    AugmentSettings.from_params(section["augment"])
    InputSettings.from_params(section["preprocess"])


def _dask_scheduler(value: Any) -> None:
    if value is not None and not (isinstance(value, str) and (value == "local" or "://" in value)):
        raise _fail(
            "dask_scheduler", value, "must be null, local or an address like tcp://host:8786"
        )


def _evaluate(section: dict[str, Any]) -> None:
    sets = section["extra_sets"]
    if not isinstance(sets, list) or not all(isinstance(f, str) and f for f in sets):
        raise _fail("evaluate.extra_sets", sets, "must be a list of folders")
    names = [Path(folder).name for folder in sets]
    if len(set(names)) != len(names):
        # Each set's metrics section and files are named after its folder.
        raise _fail("evaluate.extra_sets", sets, "two folders have the same name")
    conditions = section["robustness"]
    if not isinstance(conditions, dict) or not all(isinstance(n, str) and n for n in conditions):
        raise _fail(
            "evaluate.robustness", conditions, "must map condition names to augmentation keys"
        )
    # Imported here: xrdsym.evaluation loads scikit-learn, which no other stage's check needs.
    from xrdsym.evaluation import condition_settings

    for name, condition in conditions.items():
        # Any peak width: the stored patterns' own comes with the model, at evaluation.
        condition_settings(name, condition, instrument_fwhm_deg=1.0)


_KEY_CHECKS: dict[str, Callable[[Any], None]] = {
    "seed": lambda v: _integer("seed", v, minimum=0),
    "classes": _classes,
    "source": _sources,
    "n_per_class": lambda v: v is None or _integer("n_per_class", v, minimum=1),
    "n_jobs": lambda v: _integer("n_jobs", v, minimum=1),
    "dask_scheduler": _dask_scheduler,
    "wavelength": _wavelength,
    "sigma": lambda v: _number("sigma", v, minimum=0, strict=True),
    "model": lambda v: _choice("model", v, MODEL_INPUTS),
    "target": lambda v: _choice("target", v, TARGETS),
}
_SECTION_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "download": _download,
    "patterns": _patterns,
    "synthesize": _synthesize,
    "images": _images,
    "train": _train,
    "evaluate": _evaluate,
}


# Checks of the section parts a stage may declare alone (see stage_params).
_PART_CHECKS: dict[str, Callable[[Any], Any]] = {
    "train.augment": AugmentSettings.from_params,
}


def validate(params: dict[str, Any]) -> None:
    """Check every key present in ``params``; the first invalid one raises a ParamsError."""
    for key, check in _KEY_CHECKS.items():
        if key in params:
            check(params[key])
    sources = params.get("source", [])
    names = [sources] if isinstance(sources, str) else sources
    if "synthetic" in names and "n_per_class" in params and params["n_per_class"] is None:
        raise _fail("n_per_class", None, "source synthetic needs a number per class")
    if "two_theta_min" in params or "two_theta_max" in params:
        _two_theta(params)
    for key, check in _SECTION_CHECKS.items():
        if key in params:
            section = params[key]
            if not isinstance(section, dict):
                raise _fail(key, section, "must be a mapping")
            try:
                check(section)
            except KeyError as exc:
                raise ParamsError(f"params.yaml: missing key '{key}.{exc.args[0]}'") from exc
