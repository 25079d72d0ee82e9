from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

import xrdsym.xrd_vectorised as xrd_vectorised
from xrdsym.diffraction import (
    TwoThetaGrid,
    peaks_on_grid,
    simulate_peaks,
    smooth_and_normalise,
)
from xrdsym.measured import parse_wavelength
from xrdsym.sources import StructureRecord
from xrdsym.sources.cif_dir import read_cif
from xrdsym.sources.synthetic import SyntheticSettings, iter_synthetic
from xrdsym.symmetry import CRYSTAL_SYSTEMS
from xrdsym.wavelengths import WAVELENGTHS
from xrdsym.xrd_vectorised import (
    damped_phase_sums,
    phase_sums,
    simulate_peaks_vectorised,
)

GRID = TwoThetaGrid(0, 90, 0.02)
SIGMA = 5
POSITION_TOL_DEGREES = 1e-4
PATTERN_TOL = 1e-3
SYNTHETIC = SyntheticSettings(
    elements=("Li", "O", "Na", "Mg", "Al", "Si", "S", "Cl", "Ti", "Fe", "Zn", "Sr", "Ba", "Pb"),
    max_species=3,
    max_atoms=40,
    volume_factor=1.1,
    max_attempts=20,
    attempt_timeout_s=10,
)
REAL = Path(__file__).parents[1] / "evaluation_sets" / "real"
# Real structures: disordered Li10GeP2S12, a hexagonal and an olivine oxide, body-centred
# tetragonal tin, and a garnet of 160 atoms.
REAL_CIFS = (
    "pymatgen/Li10GeP2S12.cif",
    "pymatgen/BaNiO3.cif",
    "pymatgen/LiFePO4.cif",
    "ase/Sn_bct.cif",
    "pyxtal/JVASP-59313.cif",
)
U_CIF = ("U11_cif", "U22_cif", "U33_cif", "U23_cif", "U13_cif", "U12_cif")


def cscl() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def wurtzite() -> Structure:
    """ZnO, P6_3mc: a hexagonal cell (four-index hkl in pymatgen)."""
    return Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )


def triclinic() -> Structure:
    lattice = Lattice.from_parameters(5.1, 6.3, 7.2, 81, 97, 103)
    coords = [[0.1, 0.2, 0.3], [0.4, 0.1, 0.7], [0.8, 0.6, 0.2], [0.5, 0.5, 0.9]]
    return Structure(lattice, ["Si", "O", "O", "Ca"], coords)


def fe_ni_alloy() -> Structure:
    """Fe0.5Ni0.5 on the sites of an fcc lattice: one disordered site per lattice point."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(3.56), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]
    )


def with_vacancies_and_ions() -> Structure:
    """Fe2+ and Fe3+ sharing sites with vacancies, Li half-occupied: occupancies below 1."""
    return Structure.from_spacegroup(
        "Fd-3m",
        Lattice.cubic(8.4),
        [{"Fe2+": 0.5, "Fe3+": 0.4}, {"Li+": 0.5}, "O2-"],
        [[0, 0, 0], [0.625, 0.625, 0.625], [0.26, 0.26, 0.26]],
    )


def large_cell(rock_salt: Structure) -> Structure:
    return rock_salt * [3, 2, 2]  # 96 atoms


def with_u_cif(structure: Structure) -> Structure:
    """A copy with anisotropic displacement parameters (Å²) on every site."""
    rng = np.random.default_rng(3)
    result = structure.copy()
    for index, name in enumerate(U_CIF):
        diagonal = index < 3
        values = (
            0.01 + 0.02 * rng.random(len(result))
            if diagonal
            else 0.003 * rng.standard_normal(len(result))
        )
        result.add_site_property(name, values.tolist())
    return result


@pytest.fixture(scope="module")
def synthetic_structures() -> list[Structure]:
    """Two PyXtal crystals per crystal system from the project's generator (about a second)."""
    items = iter_synthetic(CRYSTAL_SYSTEMS, 2, seed=11, n_jobs=1, settings=SYNTHETIC)
    return [item.structure for item in items if isinstance(item, StructureRecord)]


def assert_agrees_with_pymatgen(structure: Structure, wavelength="CuKa", two_theta_range=(0, 90)):
    reference = simulate_peaks(structure, wavelength, two_theta_range)
    peaks = simulate_peaks_vectorised(structure, wavelength, two_theta_range)
    # Every pymatgen peak above 1 % of the strongest is found at the same 2θ.
    strong = reference.two_theta[reference.intensities > 1]
    assert len(peaks.two_theta)
    nearest = np.abs(strong[:, None] - peaks.two_theta[None, :]).min(axis=1)
    assert nearest.max(initial=0) <= POSITION_TOL_DEGREES
    # The same peaks altogether, with the same intensities (only summation order differs).
    assert len(peaks.two_theta) == len(reference.two_theta)
    assert np.allclose(peaks.two_theta, reference.two_theta, rtol=0, atol=1e-9)
    assert np.allclose(peaks.intensities, reference.intensities, rtol=1e-9, atol=1e-9)
    if two_theta_range == (GRID.start, GRID.stop):
        expected = smooth_and_normalise(peaks_on_grid(reference, GRID), SIGMA)
        pattern = smooth_and_normalise(peaks_on_grid(peaks, GRID), SIGMA)
        assert np.abs(pattern - expected).max() <= PATTERN_TOL
    return reference, peaks


@pytest.mark.parametrize(
    "make",
    [cscl, wurtzite, triclinic, fe_ni_alloy, with_vacancies_and_ions],
    ids=lambda f: f.__name__,
)
def test_simple_structures_agree_with_pymatgen(make):
    assert_agrees_with_pymatgen(make())


def test_rock_salt_rutile_and_a_large_cell_agree_with_pymatgen(rock_salt, rutile):
    for structure in (rock_salt, rutile, large_cell(rock_salt)):
        assert_agrees_with_pymatgen(structure)


def test_random_crystals_agree_with_pymatgen(synthetic_structures):
    assert len(synthetic_structures) >= 12
    for structure in synthetic_structures:
        assert_agrees_with_pymatgen(structure)


@pytest.mark.parametrize("name", REAL_CIFS)
def test_real_structures_agree_with_pymatgen(name):
    (record,) = read_cif(REAL / name, REAL)
    assert_agrees_with_pymatgen(record.structure)


def test_a_cell_of_more_than_100_atoms_agrees_with_pymatgen(synthetic_structures):
    structure = max(synthetic_structures, key=len)
    structure = structure * [int(np.ceil(100 / len(structure))), 1, 1]
    assert len(structure) >= 100
    assert_agrees_with_pymatgen(structure)


@pytest.mark.parametrize(
    ("wavelength", "two_theta_range"),
    [("MoKa", (0, 90)), (1.0, (0, 90)), ("CuKa", (25, 60)), ("CrKa", (0, 180)), (0.5, (5, 30))],
)
def test_other_wavelengths_and_ranges_agree_with_pymatgen(wavelength, two_theta_range):
    # MoKa and 0.5 Å take pymatgen's sphere-search rule for radii of 1/Å and more.
    for structure in (triclinic(), wurtzite(), fe_ni_alloy()):
        assert_agrees_with_pymatgen(structure, wavelength, two_theta_range)


def test_reflections_at_the_sphere_edge_count_as_in_pymatgen():
    # For radii of 1/Å and more (Mo K-alpha up to 90°) pymatgen's sphere search takes points
    # with |g|² < r² + 1e-8: here 500, 430 and 340 lie 5e-10 r outside the sphere, at 90.00000006°.
    radius = 2 * np.sin(np.radians(45)) / WAVELENGTHS["MoKa"]
    structure = Structure(Lattice.cubic(5 / (radius * (1 + 5e-10))), ["Po"], [[0, 0, 0]])
    reference, peaks = assert_agrees_with_pymatgen(structure, "MoKa", (0, 90))
    assert reference.two_theta[-1] > 90
    assert np.array_equal(peaks.hkl, reference.hkl)


def test_hkl_is_the_reflection_pymatgen_reports_first(rock_salt):
    # Simple cubic under Mo K-alpha: peaks of two families, as 300 and 221 (h² + k² + l² = 9).
    simple_cubic = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    for structure, wavelength in [
        (rock_salt, "CuKa"),
        (cscl(), "CuKa"),
        (wurtzite(), "CuKa"),
        (triclinic(), "CuKa"),
        (fe_ni_alloy(), "CuKa"),
        (simple_cubic, "MoKa"),
    ]:
        reference = simulate_peaks(structure, wavelength, (0, 90))
        peaks = simulate_peaks_vectorised(structure, wavelength, (0, 90))
        assert np.array_equal(peaks.hkl, reference.hkl)
        # and it is a reflection of its peak: Bragg's law gives the peak's 2θ back
        d = 1 / np.linalg.norm(
            peaks.hkl @ structure.lattice.reciprocal_lattice_crystallographic.matrix, axis=1
        )
        two_theta = np.degrees(2 * np.arcsin(parse_wavelength(wavelength) / (2 * d)))
        assert np.allclose(two_theta, peaks.two_theta, atol=1e-9)


def test_no_reflection_in_range_is_a_value_error_as_in_pymatgen(rock_salt):
    # NaCl's first reciprocal-lattice point, 100, lies at 15.7° under Cu K-alpha; a cell of 1 Å
    # has none below 90°.
    for structure, two_theta_range in [
        (rock_salt, (0, 10)),
        (Structure(Lattice.cubic(1), ["Na"], [[0, 0, 0]]), (0, 90)),
    ]:
        with pytest.raises(ValueError):
            simulate_peaks(structure, "CuKa", two_theta_range)
        with pytest.raises(ValueError, match="no diffraction peaks"):
            simulate_peaks_vectorised(structure, "CuKa", two_theta_range)


def test_only_absent_reflections_in_range_as_in_pymatgen(rock_salt):
    # 100 is absent in NaCl (F = 0 up to rounding); alone in the range, pymatgen scales its
    # rounding noise to 100, and so does the vectorised simulator.
    assert_agrees_with_pymatgen(rock_salt, "CuKa", (0, 20))


def test_debye_waller_factors_as_in_pymatgen():
    factors = {"Zn": 0.5, "O": 0.8}
    for structure in (wurtzite(), triclinic()):
        reference = XRDCalculator(debye_waller_factors=factors).get_pattern(structure)
        peaks = simulate_peaks_vectorised(structure, "CuKa", (0, 90), debye_waller_factors=factors)
        assert np.allclose(peaks.two_theta, reference.x, atol=1e-9)
        assert np.allclose(peaks.intensities, reference.y, rtol=1e-9, atol=1e-9)
        plain = simulate_peaks_vectorised(structure, "CuKa", (0, 90))
        assert not np.allclose(plain.intensities, peaks.intensities)


def test_anisotropic_displacements_as_in_pymatgen(monkeypatch):
    structure = with_u_cif(triclinic())
    reference = XRDCalculator().get_pattern(structure)
    # A tiny block size makes the damped phases go block by block: the same result.
    monkeypatch.setattr(xrd_vectorised, "PHASE_CHUNK_ENTRIES", 7)
    peaks = simulate_peaks_vectorised(structure, "CuKa", (0, 90))
    assert np.allclose(peaks.two_theta, reference.x, atol=1e-9)
    assert np.allclose(peaks.intensities, reference.y, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="debye_waller_factors"):
        simulate_peaks_vectorised(structure, "CuKa", (0, 90), debye_waller_factors={"Si": 0.5})


def test_phase_sums_equal_one_exponential_per_reflection_and_site(monkeypatch):
    rng = np.random.default_rng(0)
    frac_coords = rng.random((7, 3))
    occupancies = rng.random((7, 2))
    hkl = np.stack([rng.integers(0, 6, 200), rng.integers(-5, 6, 200), rng.integers(-5, 6, 200)])
    direct = np.exp(2j * np.pi * (hkl.T @ frac_coords.T)) @ occupancies
    assert np.allclose(phase_sums(hkl, frac_coords, occupancies), direct, rtol=0, atol=1e-12)
    no_damping = np.zeros((7, 3, 3))
    assert np.allclose(
        damped_phase_sums(hkl, frac_coords, occupancies, no_damping), direct, atol=1e-12
    )
    # in blocks of a few h at a time, the same
    monkeypatch.setattr(xrd_vectorised, "PHASE_CHUNK_ENTRIES", 50)
    assert np.allclose(phase_sums(hkl, frac_coords, occupancies), direct, rtol=0, atol=1e-12)


def test_a_structure_without_sites_is_a_value_error():
    with pytest.raises(ValueError, match="no sites"):
        simulate_peaks_vectorised(Structure(Lattice.cubic(4), [], []), "CuKa", (0, 90))


def test_element_without_scattering_parameters_is_a_value_error():
    structure = Structure(Lattice.cubic(4), ["Es"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="Es"):
        simulate_peaks(structure, "CuKa", (0, 90))
    with pytest.raises(ValueError, match="no atomic scattering parameters for Es"):
        simulate_peaks_vectorised(structure, "CuKa", (0, 90))
