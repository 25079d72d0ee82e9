"""Shared fixtures: small real structures built with pymatgen, a small model directory."""

from __future__ import annotations

import json

import keras
import pytest
from pymatgen.core import Lattice, Structure

from xrdsym import __version__
from xrdsym.diffraction import TwoThetaGrid
from xrdsym.models import build_cnn1d
from xrdsym.prediction import META_FILE, MODEL_FILE, MODEL_FORMAT

# The small model directory's classes and 2θ grid (degrees).
CLASSES = ["cubic", "hexagonal", "tetragonal"]
GRID = TwoThetaGrid(0, 90, 0.1)


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
    build_cnn1d(GRID.size, len(CLASSES), dropout=0.0).save(directory / MODEL_FILE)
    meta = {
        "format": MODEL_FORMAT,
        "xrdsym_version": __version__,
        "model": "cnn1d",
        "input": "pattern",
        "classes": CLASSES,
        "preprocessing": {
            "pattern": {
                "wavelength": "CuKa",
                "two_theta_min": GRID.start,
                "two_theta_max": GRID.stop,
                "two_theta_step": GRID.step,
                "sigma_points": 2,
                "symprec": 0.1,
                "angle_tolerance": 5,
            },
            "image": None,
        },
        "temperature": 1.5,
    }
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory
