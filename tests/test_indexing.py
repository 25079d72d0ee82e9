"""Indexing known cells from measurement-like scans: each structure's exact peaks from
pymatgen, rendered by the project's augmentation with Cu Kα1 + Kα2, a zero shift and Poisson
noise (the measurement parts only), then peaks and the lattice search, as ``xrdsym index``."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdsym import indexing
from xrdsym.augmentation import AugmentSettings, augment_patterns
from xrdsym.diffraction import PeakTable, TwoThetaGrid, simulate_peaks
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.index_scans import index_scan
from xrdsym.indexing import (
    IndexSettings,
    choose,
    index_lines,
    metric_lattice_system,
    reduced_cell,
)
from xrdsym.wavelengths import WAVELENGTHS

CU_KA1 = WAVELENGTHS["CuKa1"]
ZERO_SHIFT_DEG = 0.05
# Cells within 0.1 % (the target), Niggli-reduced primitive cells compared.
CELL_TOL = 1e-3


def measured_like(
    structure: Structure,
    highest_deg: float = 100.0,
    zero_shift_deg: float = ZERO_SHIFT_DEG,
    seed: int = 0,
    impurity: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A laboratory-like scan of ``structure``: 2θ (degrees, 0.01 apart) and intensities, with
    Kα2 at half Kα1, instrument FWHM 0.08 degrees, crystallites of 200 nm, the zero shift,
    10,000 counts at the highest point, a 2 % background and, with ``impurity``, impurity
    peaks up to that fraction of the highest."""
    peaks = simulate_peaks(structure, CU_KA1, (5, highest_deg))
    reciprocal = structure.lattice.reciprocal_lattice_crystallographic.matrix
    table = PeakTable.from_peaks([peaks], [reciprocal])
    settings = AugmentSettings(
        instrument_fwhm_deg=(0.08, 0.08),
        crystallite_nm=(200, 200),
        zero_offset_deg=(zero_shift_deg, zero_shift_deg),
        ka2_ratio=(0.5, 0.5),
        noise_counts=(10_000, 10_000),
        background=(0.02, 0.02),
        impurity_peaks=None if impurity is None else (impurity, impurity),
    )
    grid = TwoThetaGrid(5, highest_deg, 0.01)
    pattern = augment_patterns(
        table, np.array([0]), grid, CU_KA1, settings, np.random.default_rng(seed)
    )[0]
    return grid.values, pattern.astype(float)


def structure(space_group: str, lattice: Lattice, species: list, coords: list) -> Structure:
    return Structure.from_spacegroup(space_group, lattice, species, coords)


KNOWN = {
    "NaCl": (
        structure("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "cubic",
        "F",
        100,
    ),
    "Si": (structure("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]), "cubic", "F", 120),
    "CsCl": (
        structure("Pm-3m", Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "cubic",
        "P",
        100,
    ),
    "W": (structure("Im-3m", Lattice.cubic(3.165), ["W"], [[0, 0, 0]]), "cubic", "I", 140),
    "rutile": (
        structure(
            "P4_2/mnm",
            Lattice.tetragonal(4.594, 2.959),
            ["Ti", "O"],
            [[0, 0, 0], [0.305, 0.305, 0]],
        ),
        "tetragonal",
        "P",
        100,
    ),
    "anatase": (
        structure(
            "I4_1/amd",
            Lattice.tetragonal(3.785, 9.514),
            ["Ti", "O"],
            [[0, 0.75, 0.125], [0, 0.75, 0.3333]],
        ),
        "tetragonal",
        "I",
        100,
    ),
    "ZnO": (
        structure(
            "P6_3mc",
            Lattice.hexagonal(3.25, 5.207),
            ["Zn", "O"],
            [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
        ),
        "hexagonal",
        "P",
        100,
    ),
    "corundum": (
        structure(
            "R-3c", Lattice.hexagonal(4.759, 12.99), ["Al", "O"], [[0, 0, 0.352], [0.306, 0, 0.25]]
        ),
        "rhombohedral",
        "R",
        100,
    ),
    # Trigonal, P lattice: a hexagonal lattice, as powder positions say.
    "quartz": (
        structure(
            "P3_221",
            Lattice.hexagonal(4.913, 5.405),
            ["Si", "O"],
            [[0.4697, 0, 0], [0.4135, 0.2669, 0.1191]],
        ),
        "hexagonal",
        "P",
        100,
    ),
    "BaSO4": (
        structure(
            "Pnma",
            Lattice.orthorhombic(8.884, 5.456, 7.157),
            ["Ba", "S", "O", "O", "O"],
            [
                [0.1845, 0.25, 0.1585],
                [0.0622, 0.25, 0.6915],
                [-0.0866, 0.25, 0.6061],
                [0.1834, 0.25, 0.5447],
                [0.0817, 0.0297, 0.8151],
            ],
        ),
        "orthorhombic",
        "P",
        100,
    ),
    # α-uranium-like C-centred orthorhombic (Cmcm).
    "Cmcm": (
        structure("Cmcm", Lattice.orthorhombic(2.854, 5.869, 4.955), ["U"], [[0, 0.1025, 0.25]]),
        "orthorhombic",
        "C",
        100,
    ),
    "baddeleyite": (
        structure(
            "P2_1/c",
            Lattice.monoclinic(5.150, 5.212, 5.317, 99.23),
            ["Zr", "O", "O"],
            [[0.2754, 0.0395, 0.2083], [0.0700, 0.3317, 0.3447], [0.4496, 0.7569, 0.4792]],
        ),
        "monoclinic",
        "P",
        100,
    ),
    "triclinic": (
        structure(
            "P-1",
            Lattice.from_parameters(4.1, 5.3, 6.2, 84, 97, 103),
            ["Cu", "O"],
            [[0.12, 0.23, 0.31], [0.64, 0.28, 0.83]],
        ),
        "triclinic",
        "P",
        100,
    ),
}


@pytest.mark.parametrize("name", list(KNOWN))
def test_known_cell_found(name):
    crystal, system, centring, highest = KNOWN[name]
    two_theta, counts = measured_like(crystal, highest)
    peaks, result = index_scan(two_theta, counts, CU_KA1)
    assert peaks.kalpha2
    best = result.best
    assert best is not None, result.reason
    assert (best.lattice_system, best.centring) == (system, centring)
    found = reduced_cell(best.cell, best.centring)
    primitive = crystal.get_primitive_structure().lattice
    expected = reduced_cell(
        {k: getattr(primitive, k) for k in ("a", "b", "c", "alpha", "beta", "gamma")}, "P"
    )
    np.testing.assert_allclose(found[:3], expected[:3], rtol=CELL_TOL)
    assert best.zero_shift_deg == pytest.approx(ZERO_SHIFT_DEG, abs=0.01)


def test_nacl_conventional_cell_and_kalpha2_gives_one_reflection_each():
    crystal = KNOWN["NaCl"][0]
    two_theta, counts = measured_like(crystal)
    peaks, result = index_scan(two_theta, counts, CU_KA1)
    # Every reflection once (111, 200, ... 511/333 below 100 degrees), no Kα2 line besides.
    exact = simulate_peaks(crystal, CU_KA1, (5, 100)).two_theta + ZERO_SHIFT_DEG
    assert len(peaks) == len(exact)
    np.testing.assert_allclose(peaks.two_theta, exact, atol=0.01)
    assert result.best.lines_indexed == result.best.lines_used
    assert result.best.cell["a"] == pytest.approx(5.64, rel=CELL_TOL)


def test_zero_shift_of_a_tenth_of_a_degree_is_found():
    two_theta, counts = measured_like(KNOWN["rutile"][0], zero_shift_deg=0.1)
    _, result = index_scan(two_theta, counts, CU_KA1)
    assert result.best.lattice_system == "tetragonal"
    assert result.best.zero_shift_deg == pytest.approx(0.1, abs=0.01)


def test_two_impurity_lines_are_left_unindexed():
    crystal = KNOWN["rutile"][0]
    two_theta, counts = measured_like(crystal)
    peaks, clean = index_scan(two_theta, counts, CU_KA1)
    # Two extra lines between rutile's (110), (101) and (200), (111), where it has none.
    extra = np.array([30.7, 37.9])
    lines = np.sort(np.concatenate([peaks.two_theta, extra]))
    result = index_lines(lines, peaks.wavelength)
    best = result.best
    assert best.lattice_system == "tetragonal"
    unindexed = lines[: best.lines_used][~np.isfinite(best.two_theta_calc)]
    np.testing.assert_allclose(unindexed, extra)
    assert best.lines_indexed == best.lines_used - 2
    assert best.cell["a"] == pytest.approx(clean.best.cell["a"], rel=1e-4)


def test_pure_noise_is_not_indexed():
    rng = np.random.default_rng(3)
    two_theta = np.arange(5, 90, 0.01)
    _peaks, result = index_scan(two_theta, rng.poisson(300, two_theta.size).astype(float), CU_KA1)
    assert result.best is None
    assert result.lattice_system is None
    assert result.reason


def test_fewer_than_five_lines_are_not_indexed_with_the_reason():
    result = index_lines(np.array([27.4, 31.7, 45.4, 53.8]), CU_KA1)
    assert result.best is None
    assert "fewer than the 5" in result.reason
    assert result.to_dict()["lattice_system"] is None


def test_time_budget_spent_is_flagged():
    two_theta, counts = measured_like(KNOWN["baddeleyite"][0])
    settings = IndexSettings(time_budget_s=1e-6)
    _, result = index_scan(two_theta, counts, CU_KA1, index_settings=settings)
    assert result.budget_spent
    assert result.to_dict()["budget_spent"] is True


def test_more_symmetric_solution_wins_only_when_as_good():
    two_theta, counts = measured_like(KNOWN["rutile"][0])
    settings = IndexSettings(settled_figure_of_merit=0)  # search every lattice system
    _, result = index_scan(two_theta, counts, CU_KA1, index_settings=settings)
    assert set(result.candidates) >= {"tetragonal", "orthorhombic", "monoclinic"}
    best, _ = choose(result.candidates, settings)
    assert best.lattice_system == "tetragonal"
    # Without the tetragonal solution the orthorhombic description of the same cell wins.
    lower = {k: v for k, v in result.candidates.items() if k != "tetragonal"}
    assert choose(lower, settings)[0].lattice_system == "orthorhombic"


def test_oracle_on_known_metrics():
    assert metric_lattice_system(Lattice.tetragonal(4.0, 4.002).matrix)[0] == "cubic"
    assert metric_lattice_system(Lattice.tetragonal(4.0, 4.1).matrix)[0] == "tetragonal"
    assert metric_lattice_system(Lattice.hexagonal(4.913, 5.405).matrix)[0] == "hexagonal"
    assert metric_lattice_system(Lattice.rhombohedral(5.1, 55.3).matrix)[0] == "rhombohedral"
    assert metric_lattice_system(Lattice.monoclinic(5, 6, 7, 90.02).matrix)[0] == "orthorhombic"


def test_reduced_cells_compare_centred_and_primitive_descriptions():
    conventional = {"a": 5.64, "b": 5.64, "c": 5.64, "alpha": 90, "beta": 90, "gamma": 90}
    body = {"a": 3.988, "b": 3.988, "c": 5.64, "alpha": 90, "beta": 90, "gamma": 90}
    np.testing.assert_allclose(reduced_cell(conventional, "F"), reduced_cell(body, "I"), rtol=2e-4)


def test_bad_input_and_settings():
    with pytest.raises(XrdsymError, match="wavelength"):
        index_lines(np.array([20.0, 30, 40, 50, 60]), 0)
    with pytest.raises(XrdsymError, match="finite"):
        index_lines(np.array([20.0, np.nan, 40, 50, 60]), CU_KA1)
    with pytest.raises(ParamsError, match=r"index\.tolerance_deg"):
        IndexSettings.from_params(
            {f: getattr(IndexSettings(), f) for f in IndexSettings.__dataclass_fields__}
            | {"tolerance_deg": "wide"}
        )
    with pytest.raises(ParamsError, match=r"unknown key 'index\.colour'"):
        IndexSettings.from_params({"colour": 1})


def test_centred_counts_only_where_the_primitive_count_passes():
    # The shortcut of the search: a centring removes reflections, so a trial the P count
    # rejects is rejected centred too, and counting only the P survivors changes nothing.
    rng = np.random.default_rng(3)
    lengths = rng.uniform(3, 12, (400, 3))
    g6s = np.zeros((400, 6))
    g6s[:, :3] = 1 / lengths**2
    g6s[:, 4] = rng.uniform(-0.3, 0.3, 400) * g6s[:, 0]
    two_theta = np.sort(rng.uniform(10, 60, 12))
    low = indexing.q_of_two_theta(two_theta - 0.06, CU_KA1)
    high = indexing.q_of_two_theta(two_theta + 0.06, CU_KA1)
    primitive = indexing._count_indexed(g6s, low, high, 0, 6)[0] >= 0
    assert 0 < primitive.sum() < len(g6s)
    for centring in ("I", "F", "C", "A", "B"):
        code = indexing.CENTRING_CODES[centring]
        expected = indexing._count_indexed(g6s, low, high, code, 6)
        found = indexing._counts(g6s, low, high, centring, 6, primitive)
        np.testing.assert_array_equal(found[0], expected[0])
        np.testing.assert_array_equal(found[1], expected[1])


def test_distinct_rows_and_trial_solutions_match_the_plain_numpy_ones():
    rng = np.random.default_rng(4)
    for rows in (0, 1, 50, 300):
        coefficients = rng.integers(-4, 40, (rows, 4)).astype(float)
        expected = len(np.unique(coefficients, axis=0)) if rows else 0
        assert indexing._distinct_rows(coefficients) == expected
    q_base = np.array([0.02, 0.031, 0.045, 0.052, 0.07, 0.081])
    assignments = indexing._assignments("monoclinic")
    regular = assignments[np.abs(np.linalg.det(assignments)) > 1e-9]
    first = np.linalg.solve(regular, np.broadcast_to(q_base[:4, None], (len(regular), 4, 1)))
    found = indexing._solve_trials("monoclinic", q_base)
    np.testing.assert_allclose(found[: len(regular)], first[..., 0], rtol=1e-9, atol=1e-15)
