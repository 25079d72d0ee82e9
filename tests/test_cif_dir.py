"""The cif_dir source on a folder with good, broken, disordered and duplicate CIFs."""

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from xrdsym.errors import XrdsymError
from xrdsym.sources import Reject, StructureRecord, iter_source
from xrdsym.sources.cif_dir import iter_cif_dir
from xrdsym.sources.combine import remove_duplicates


@pytest.fixture
def cif_folder(tmp_path: Path, rock_salt, rutile) -> Path:
    folder = tmp_path / "cifs"
    (folder / "oxides").mkdir(parents=True)
    rock_salt.to(filename=str(folder / "NaCl.cif"))
    rutile.to(filename=str(folder / "oxides" / "TiO2.CIF"))
    # The same rock salt again, as its primitive cell under another name.
    rock_salt.get_primitive_structure().to(filename=str(folder / "oxides" / "NaCl_copy.cif"))
    # A disordered alloy: Cu and Au share one fcc site half and half.
    alloy = Structure(Lattice.cubic(3.85), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    alloy.to(filename=str(folder / "CuAu_disordered.cif"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5.0\nthis is not a CIF\n")
    (folder / "notes.txt").write_text("not a CIF, ignored")
    return folder


def test_reads_every_cif_recursively_and_rejects_the_broken_one(cif_folder):
    items = list(iter_cif_dir(cif_folder, n_jobs=1))
    records = {item.id: item for item in items if isinstance(item, StructureRecord)}
    rejects = [item for item in items if isinstance(item, Reject)]
    assert sorted(records) == [
        "CuAu_disordered.cif",
        "NaCl.cif",
        "oxides/NaCl_copy.cif",
        "oxides/TiO2.CIF",
    ]
    assert [r.id for r in rejects] == ["broken.cif"]
    assert rejects[0].stage == "download" and "unreadable CIF" in rejects[0].reason
    alloy = records["CuAu_disordered.cif"]
    assert alloy.meta["disordered"] and not alloy.structure.is_ordered
    assert records["NaCl.cif"].source == "cif_dir"


def test_duplicates_are_removed_and_name_the_one_kept(cif_folder):
    records = [i for i in iter_cif_dir(cif_folder, n_jobs=1) if isinstance(i, StructureRecord)]
    kept, duplicates = remove_duplicates(records)
    assert [r.id for r in kept] == ["CuAu_disordered.cif", "NaCl.cif", "oxides/TiO2.CIF"]
    assert [(d.id, d.stage, d.reason) for d in duplicates] == [
        ("oxides/NaCl_copy.cif", "download:dedup", "duplicate of NaCl.cif")
    ]


def test_iter_source_dispatches_on_the_name(cif_folder):
    items = list(
        iter_source(
            "cif_dir",
            classes=[],
            n_per_class=0,
            seed=0,
            n_jobs=1,
            settings={"cif_dir": str(cif_folder)},
        )
    )
    assert len(items) == 5


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(XrdsymError, match=r"download\.cif_dir='.*nowhere': not a folder"):
        list(iter_cif_dir(tmp_path / "nowhere", n_jobs=1))
