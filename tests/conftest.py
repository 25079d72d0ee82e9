"""Shared fixtures: small real structures built with pymatgen, a small model directory, no
network, a small copy of matminer's Materials Project dataset."""

from __future__ import annotations

import errno
import hashlib
import json
import socket
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xrdsym import __version__
from xrdsym.diffraction import PeakTable, TwoThetaGrid, pattern_from_peaks, simulate_peaks
from xrdsym.models import build_cnn1d
from xrdsym.prediction import META_FILE, MODEL_FILE, MODEL_FORMAT
from xrdsym.stages.patterns import (
    INDEX_FILE,
    PATTERNS_FILE,
    PEAKS_FILE,
    SETTINGS_FILE,
    TWO_THETA_FILE,
)

# The small model directory's classes and 2θ grid (degrees).
CLASSES = ["cubic", "hexagonal", "tetragonal"]
GRID = TwoThetaGrid(0, 90, 0.1)


# The pattern settings of the small model directory (its model.json and its stores').
PATTERN_SETTINGS = {
    "wavelength": "CuKa",
    "two_theta_min": GRID.start,
    "two_theta_max": GRID.stop,
    "two_theta_step": GRID.step,
    "sigma_points": 2,
    "symprec": 0.1,
    "angle_tolerance": 5,
}


def simulated(structures, grid: TwoThetaGrid, sigma: float) -> tuple[PeakTable, np.ndarray]:
    """The peak table and the stored patterns the patterns stage makes of ``structures``."""
    peaks = [simulate_peaks(s, "CuKa", (grid.start, grid.stop)) for s in structures]
    lattices = [s.lattice.reciprocal_lattice_crystallographic.matrix for s in structures]
    patterns = np.stack([pattern_from_peaks(p, grid, sigma) for p in peaks])
    return PeakTable.from_peaks(peaks, lattices), patterns


def patterns_store(
    directory: Path,
    structures,
    systems,
    grid: TwoThetaGrid = GRID,
    sigma: float = 2,
    splits=None,
) -> Path:
    """A patterns stage's output of ``structures`` (crystal systems ``systems``), each in its
    split of ``splits`` (all test by default), simulated on ``grid`` with ``sigma`` points."""
    table, patterns = simulated(structures, grid, sigma)
    directory.mkdir()
    pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(structures))],
            "formula": [s.composition.reduced_formula for s in structures],
            "space_group": [s.get_space_group_info()[1] for s in structures],
            "crystal_system": systems,
            "split": splits or "test",
        }
    ).to_csv(directory / INDEX_FILE, index=False)
    np.save(directory / PATTERNS_FILE, patterns)
    np.save(directory / TWO_THETA_FILE, grid.values)
    np.savez(directory / PEAKS_FILE, **vars(table))
    settings = PATTERN_SETTINGS | {
        "two_theta_min": grid.start,
        "two_theta_max": grid.stop,
        "two_theta_step": grid.step,
        "sigma_points": sigma,
    }
    (directory / SETTINGS_FILE).write_text(json.dumps(settings))
    return directory


@pytest.fixture
def rock_salt() -> Structure:
    """NaCl, Fm-3m, a = 5.64 Å."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.fixture
def rutile() -> Structure:
    """TiO2 rutile, P4_2/mnm."""
    return Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )


@pytest.fixture
def model_dir(tmp_path):
    """A real (untrained) 1D model directory as the train stage writes it."""
    keras.utils.set_random_seed(0)
    directory = tmp_path / "model"
    directory.mkdir()
    build_cnn1d(GRID.size, {"classes": len(CLASSES)}, dropout=0.0).save(directory / MODEL_FILE)
    meta = {
        "format": MODEL_FORMAT,
        "xrdsym_version": __version__,
        "model": "cnn1d",
        "input": "pattern",
        "classes": CLASSES,
        "preprocessing": {"pattern": PATTERN_SETTINGS, "image": None},
        "temperature": 1.5,
    }
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


@pytest.fixture
def no_network(monkeypatch):
    """Every name lookup and connection fails, as on a machine without network."""

    def no_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")

    def no_route(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    monkeypatch.setattr(socket.socket, "connect", no_route)


@pytest.fixture
def write_mp_all(monkeypatch):
    """A function writing a small mp_all_20181018 (material id -> structure) into a data_home
    folder in the dataset's own format (matminer's store_dataframe_as_json, the dataset's
    columns); it returns the file's path."""
    from matminer.datasets import dataset_retrieval, get_dataset_columns
    from matminer.utils.io import store_dataframe_as_json

    from xrdsym.sources.matminer import DATASET, dataset_path

    def write(data_home, structures: dict[str, Structure]):
        known = {
            "mpid": list(structures),
            "formula": [s.composition.reduced_formula for s in structures.values()],
            "structure": list(structures.values()),
            "initial structure": list(structures.values()),
        }
        nan = [float("nan")] * len(structures)
        table = pd.DataFrame({c: known.get(c, nan) for c in get_dataset_columns(DATASET)})
        path = dataset_path(data_home)
        data_home.mkdir(parents=True, exist_ok=True)
        store_dataframe_as_json(table, str(path), pbar=False)
        # A file is checked against the sha256 in matminer's metadata (by matminer after its
        # download, by xrdsym before loading): the small file gets its own sha256 there, in a
        # copy of the metadata that only this test sees.
        metadata = dataset_retrieval._load_dataset_dict()
        metadata[DATASET]["hash"] = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setattr(dataset_retrieval, "_dataset_dict", metadata)
        return path

    return write
