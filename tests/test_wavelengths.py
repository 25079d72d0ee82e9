from pymatgen.analysis.diffraction.xrd import WAVELENGTHS as PYMATGEN_WAVELENGTHS

from xrdsym.wavelengths import WAVELENGTHS


def test_table_is_pymatgens():
    assert WAVELENGTHS == PYMATGEN_WAVELENGTHS
