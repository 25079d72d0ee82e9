"""Collect an evaluation set of real, known crystal structures from the installed packages.

    python scripts/collect_real_structures.py --out evaluation_sets/real

No network: the structures are the ones pymatgen, PyXtal, ASE and pyocse ship (experimental
structures from the COD, the CSD and the ICSD-derived JARVIS and Materials Project sets, and the
elements' reference crystal structures in ASE), written as CIFs with a manifest. The pipeline
never trains on them; `evaluate` scores the model on them (params: evaluate.extra_sets).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import warnings
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from xrdsym.io import atomic_path, write_table
from xrdsym.symmetry import analyse_symmetry

# Shipped files that are not an experimentally known bulk crystal: generated symmetry
# variants, distorted test cases, an interface slab, a hypothetical metal, and PyXtal's
# structures made by its own generator.
EXCLUDED = {
    "Si_SiO2_Interface.json": "an interface slab, not a bulk crystal",
    "He_BCC.json": "hypothetical (helium is not bcc at ambient pressure)",
    "0-G62.cif": "generated subgroup variant",
    "1-G59.cif": "generated subgroup variant",
    "2-G71.cif": "generated subgroup variant",
    "3-G139.cif": "generated subgroup variant",
    "4-G225.cif": "generated subgroup variant",
    "dist_6_0.cif": "distorted test structure",
    "dist_6_1.cif": "distorted test structure",
    "Fd3.cif": "test structure for a space-group setting",
    "Pm3.cif": "test structure for a space-group setting",
}

# ASE's reference states of the elements: gases, placeholder simple-cubic entries, and the
# fcc and bcc metals (forty one-atom cubic cells would swamp the cubic class) are left out.
SKIPPED_ELEMENT_STRUCTURES = ("atom", "diatom", "cubic", "sc", "fcc", "bcc")


def _package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def _candidates() -> list[tuple[str, str, Structure]]:
    """(source, original name, structure) for every shipped structure."""
    found = []
    pymatgen_dir = _package_dir("pymatgen") / "util" / "structures"
    for path in sorted(pymatgen_dir.glob("*.json")):
        found.append(("pymatgen", path.name, Structure.from_dict(json.loads(path.read_text()))))
    for package, folder in (
        ("pyxtal", "database/cifs"),
        ("ase", "test/testdata/minerals"),
        ("pyocse", "data"),
    ):
        for path in sorted((_package_dir(package) / folder).glob("*.cif")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # CIF parser notes on rounding, H positions
                try:
                    found.append((package, path.name, Structure.from_file(path)))
                except Exception as exc:  # a file pymatgen cannot read is listed, not fatal
                    print(f"skipped {package}/{path.name}: {exc.__class__.__name__}")
    from ase.build import bulk
    from ase.data import chemical_symbols, reference_states
    from pymatgen.io.ase import AseAtomsAdaptor

    for number, reference in enumerate(reference_states):
        if reference is None or reference["symmetry"] in SKIPPED_ELEMENT_STRUCTURES:
            continue
        symbol = chemical_symbols[number]
        try:
            atoms = bulk(symbol)
        except Exception:  # ASE has no bulk builder for some reference states
            continue
        found.append(
            ("ase", f"{symbol}_{reference['symmetry']}", AseAtomsAdaptor.get_structure(atoms))
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("evaluation_sets/real"))
    args = parser.parse_args()
    rows = []
    with atomic_path(args.out) as tmp:
        for source, name, structure in _candidates():
            if name in EXCLUDED:
                continue
            space_group, crystal_system, _ = analyse_symmetry(structure, 0.1, 5)
            file_name = f"{source}/{Path(name).stem}.cif"
            (tmp / source).mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # repeated site labels of P1 cells
                CifWriter(structure).write_file(tmp / file_name)
            rows.append(
                {
                    "file": file_name,
                    "source": source,
                    "original": name,
                    "formula": structure.composition.reduced_formula,
                    "sites": len(structure),
                    "space_group": space_group,
                    "crystal_system": crystal_system,
                }
            )
        manifest = pd.DataFrame(rows)
        write_table(tmp / "manifest.csv", manifest)
    counts = manifest["crystal_system"].value_counts().sort_index().to_dict()
    print(f"{len(manifest)} structures -> {args.out}: {counts}")


if __name__ == "__main__":
    main()
