"""Shared fixtures: small real structures built with pymatgen."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure


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
