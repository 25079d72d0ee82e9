import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from xrdsym.io import read_jsonl_gz, rejects_table
from xrdsym.sources import Reject, StructureRecord, iter_source
from xrdsym.sources.combine import record_symmetries, remove_duplicates
from xrdsym.stages import download
from xrdsym.stages.download import PARAMS, run
from xrdsym.symmetry import CRYSTAL_SYSTEMS, crystal_system_of_space_group

ROOT = Path(__file__).resolve().parents[1]


def test_sources_are_combined_deduplicated_and_counted(tmp_path, rock_salt):
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    rock_salt.to(filename=str(cifs / "a.cif"))
    rock_salt.to(filename=str(cifs / "b.cif"))  # the same material twice
    (cifs / "bad.cif").write_text("garbage")
    params = {key: yaml.safe_load((ROOT / "params.yaml").read_text())[key] for key in PARAMS}
    params.update(source=["cif_dir", "synthetic"], classes=["cubic"], n_per_class=2, n_jobs=1)
    params["download"]["cif_dir"] = str(cifs)

    run(params, tmp_path / "structures", tmp_path / "download.json")

    ids = [r["id"] for r in read_jsonl_gz(tmp_path / "structures" / "structures.jsonl.gz")]
    assert ids == ["a.cif", "syn-cubic-00000", "syn-cubic-00001"]
    rejects = pd.read_csv(tmp_path / "structures" / "rejects.csv")
    assert sorted(rejects["id"]) == ["b.cif", "bad.cif"]
    metrics = json.loads((tmp_path / "download.json").read_text())
    assert metrics["n_structures"] == 3 and metrics["n_rejected"] == 2
    assert metrics["n_duplicates"] == 1 and metrics["n_unreadable"] == 1
    assert metrics["n_same_material_id"] == 0
    cif_dir, synthetic = metrics["per_source"]["cif_dir"], metrics["per_source"]["synthetic"]
    assert (cif_dir["read"], cif_dir["kept"], synthetic["read"], synthetic["kept"]) == (2, 1, 2, 2)
    # Rock salt is cubic, and so is every synthetic crystal asked in a cubic group: cubic is
    # the highest symmetry, analysis cannot find more.
    assert cif_dir["read_per_class"]["cubic"] == 2 and cif_dir["kept_per_class"]["cubic"] == 1
    assert metrics["per_class"]["read"]["cubic"] == 4 and metrics["per_class"]["kept"]["cubic"] == 3
    assert sum(metrics["per_class"]["read"].values()) == 4


@pytest.fixture
def cif_folder(tmp_path, rock_salt, rutile):
    """Rock salt twice (the second as its primitive cell), rutile, and a broken file."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    rock_salt.to(filename=str(folder / "NaCl.cif"))
    rock_salt.get_primitive_structure().to(filename=str(folder / "NaCl_primitive.cif"))
    rutile.to(filename=str(folder / "TiO2.cif"))
    (folder / "broken.cif").write_text("data_broken\nthis is not a CIF\n")
    return folder


def _mixed_sources(rock_salt: Structure, rutile: Structure) -> dict[str, list]:
    """Two Materials-Project-like sources: repeated material ids, duplicates under other ids
    and cells, polymorphs of one formula, the same record id in both sources, crystal systems
    stated by one source only, and an unreadable item."""
    caesium_chloride = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    sodium_chloride_cscl_type = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    stretched_rutile = rutile.copy()
    stretched_rutile.apply_strain([0.0, 0.0, 0.6])  # beyond StructureMatcher's ltol: another one
    potassium_chloride = rock_salt.copy()
    potassium_chloride.replace_species({"Na": "K"})

    def record(record_id, source, structure, material_id=None, system=None):
        meta = {"material_id": material_id} if material_id else {}
        return StructureRecord(
            record_id, source, structure, meta | ({"crystal_system": system} if system else {})
        )

    first = [
        record("mp-1", "first", rock_salt, "mp-1"),
        record("mp-2", "first", rutile, "mp-2"),
        Reject("mp-bad", "download", "no structure in the summary document"),
        record("mp-3", "first", caesium_chloride, "mp-3"),
        record("mp-4", "first", rock_salt.get_primitive_structure(), "mp-4"),  # mp-1 again
        record("shared-id", "first", sodium_chloride_cscl_type),
        record("mp-5", "first", stretched_rutile, "mp-5"),
        record("kcl", "first", potassium_chloride),
    ]
    second = [
        record("mp-1", "second", rock_salt, "mp-1", "cubic"),  # an id already read
        record("mp-6", "second", rutile * (1, 1, 2), "mp-6", "tetragonal"),  # rutile again
        record("shared-id", "second", caesium_chloride * 2, None, "cubic"),  # CsCl again
        record("mp-7", "second", sodium_chloride_cscl_type.copy(), "mp-7", "cubic"),
        record("mp-8", "second", potassium_chloride, "mp-8", "cubic"),  # kcl's very object
    ]
    return {"first": first, "second": second}


def _in_memory_reference(items: list, sources: list[str]) -> tuple[list[dict], pd.DataFrame, dict]:
    """The stage done the straightforward way, every structure in memory: the kept records,
    the rejects and the metrics."""
    records = [item for item in items if isinstance(item, StructureRecord)]
    rejects = [item for item in items if isinstance(item, Reject)]
    unreadable = len(rejects)
    first_source, unique, same_ids = {}, [], []
    for record in records:
        material_id = record.meta.get("material_id")
        if material_id in first_source:
            reason = (
                f"Materials Project id {material_id} already read from {first_source[material_id]}"
            )
            same_ids.append(Reject(record.id, "download:dedup", reason))
            continue
        if material_id is not None:
            first_source[material_id] = record.source
        unique.append(record)
    kept, duplicates = remove_duplicates(unique)
    kept_objects = {id(record) for record in kept}
    symmetries = record_symmetries(records)
    systems = [system for system, _ in symmetries]
    rows = [(r.source, s, id(r) in kept_objects) for r, s in zip(records, systems, strict=True)]
    all_systems = [*CRYSTAL_SYSTEMS, *sorted(set(systems) - set(CRYSTAL_SYSTEMS))]

    def counts(rows):
        read = Counter(system for _, system, _ in rows)
        kept = Counter(system for _, system, is_kept in rows if is_kept)
        return {
            "read": len(rows),
            "kept": sum(kept.values()),
            "read_per_class": {c: read[c] for c in all_systems},
            "kept_per_class": {c: kept[c] for c in all_systems},
        }

    totals = counts(rows)
    metrics = {
        "n_structures": len(kept),
        "n_rejected": unreadable + len(same_ids) + len(duplicates),
        "n_unreadable": unreadable,
        "n_same_material_id": len(same_ids),
        "n_duplicates": len(duplicates),
        "per_source": {name: counts([r for r in rows if r[0] == name]) for name in sources},
        "per_class": {"read": totals["read_per_class"], "kept": totals["kept_per_class"]},
        "stated_space_group": {},
    }
    for name in sources:
        pairs = [
            (r.meta["stated_space_group"], found)
            for r, (_, found) in zip(records, symmetries, strict=True)
            if r.source == name and r.meta.get("stated_space_group") is not None
        ]
        metrics["stated_space_group"][name] = {
            "stated": len(pairs),
            "agree": sum(a == b for a, b in pairs),
            "agree_crystal_system": sum(
                crystal_system_of_space_group(a) == crystal_system_of_space_group(b)
                for a, b in pairs
            ),
        }
    reject_rows = rejects_table(r.to_row() for r in rejects + same_ids + duplicates)
    return [r.to_json() for r in kept], reject_rows, metrics


def test_streamed_in_small_batches_and_buckets_as_all_in_memory(
    tmp_path, monkeypatch, rock_salt, rutile, cif_folder
):
    mixed = _mixed_sources(rock_salt, rutile)
    sources = ["first", "cif_dir", "second"]
    params = {key: yaml.safe_load((ROOT / "params.yaml").read_text())[key] for key in PARAMS}
    params.update(source=sources, n_jobs=1)
    params["download"]["cif_dir"] = str(cif_folder)

    def iter_some_source(name, **settings):
        return iter(mixed[name]) if name in mixed else iter_source(name, **settings)

    monkeypatch.setattr(download, "iter_source", iter_some_source)
    items = list(download._source_items(params, sources))
    expected_structures, expected_rejects, expected_metrics = _in_memory_reference(items, sources)
    # Batches and buckets of a few records, so that formulas span batches, and every bucket
    # holds whole formulas; spies record how many structures each step held at once.
    monkeypatch.setattr(download, "BATCH_RECORDS", 3)
    monkeypatch.setattr(download, "BUCKET_RECORDS", 2)
    held = {"record_symmetries": [], "remove_duplicates": []}
    for name in held:
        original = getattr(download, name)

        def spy(records, n_jobs, original=original, sizes=held[name]):
            sizes.append(len(records))
            return original(records, n_jobs)

        monkeypatch.setattr(download, name, spy)

    run(params, tmp_path / "out" / "structures", tmp_path / "download.json")

    out = tmp_path / "out" / "structures"
    with gzip.open(out / "structures.jsonl.gz", "rt") as handle:
        assert handle.read() == "".join(json.dumps(r) + "\n" for r in expected_structures)
    assert (out / "rejects.csv").read_text() == expected_rejects.to_csv(index=False)
    metrics_text = (tmp_path / "download.json").read_text()
    assert metrics_text == json.dumps(expected_metrics, indent=2) + "\n"
    structures = list(read_jsonl_gz(out / "structures.jsonl.gz"))
    # The input has all it should: each kind of removal, across sources and within one.
    assert [(r["id"], r["source"]) for r in structures] == [
        ("mp-1", "first"),
        ("mp-2", "first"),
        ("mp-3", "first"),
        ("shared-id", "first"),
        ("mp-5", "first"),
        ("kcl", "first"),
    ]
    assert expected_metrics["n_same_material_id"] == 1 and expected_metrics["n_duplicates"] == 8
    # Formulas NaCl (6 records, more than a bucket), TiO2 (4), CsCl and KCl (2 each).
    assert held["remove_duplicates"] == [6, 4, 2, 2]
    assert held["record_symmetries"] == [3, 3, 3, 3, 3]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["structures"]  # spool removed
