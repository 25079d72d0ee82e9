import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from xrdsym.config import stage_params
from xrdsym.errors import ParamsError, XrdsymError
from xrdsym.io import read_jsonl_gz
from xrdsym.sources import Reject, StructureRecord
from xrdsym.sources.cif_table import (
    CifTableSettings,
    TableRef,
    crystal_system_of,
    fetch_table,
    iter_cif_table,
    subset_rows,
)
from xrdsym.stages.download import PARAMS, run

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "cif_table" / "mp_20_sample.csv"
CLASSES = ["cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal", "triclinic"]


def _settings(*tables: str, **changes) -> CifTableSettings:
    values = {
        "tables": tuple(TableRef.of(t) for t in tables),
        "id_column": "material_id",
        "cif_column": "cif",
        "keep_columns": ("pretty_formula",),
        "space_group_column": "spacegroup.number",
        "class_column": None,
        **changes,
    }
    return CifTableSettings(**values)


def test_rows_become_records_and_a_broken_cif_a_reject():
    items = list(iter_cif_table(_settings(str(SAMPLE)), CLASSES, None, 0, 1))
    records = [item for item in items if isinstance(item, StructureRecord)]
    rejects = [item for item in items if isinstance(item, Reject)]
    assert [r.id for r in records] == [
        "mp-865981",
        "mp-754553",
        "mp-1217125",
        "mp-1222676",
        "mp-copy-of-mp-754553",
    ]
    assert [(r.id, r.stage) for r in rejects] == [("mp-broken", "download")]
    assert str(SAMPLE) in rejects[0].reason and "unreadable CIF" in rejects[0].reason
    first = records[0]
    assert first.source == "cif_table" and first.structure.composition.reduced_formula == "TmMgHg2"
    assert first.meta["stated_space_group"] == 225 and first.meta["pretty_formula"] == "TmMgHg2"
    assert first.meta["material_id"] == "mp-865981" and first.meta["disordered"] is False


def test_csv_gz_and_parquet_read_like_csv(tmp_path):
    table = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    with gzip.open(tmp_path / "sample.csv.gz", "wt") as handle:
        table.to_csv(handle, index=False)
    table.to_parquet(tmp_path / "sample.parquet")
    expected = [r.id for r in iter_cif_table(_settings(str(SAMPLE)), CLASSES, None, 0, 1)]
    for name in ["sample.csv.gz", "sample.parquet"]:
        items = iter_cif_table(_settings(str(tmp_path / name)), CLASSES, None, 0, 1)
        assert [r.id for r in items] == expected


def test_subset_per_class_is_seeded_and_bounded():
    systems = ["cubic"] * 10 + ["triclinic"] * 3 + [None] * 2
    chosen = subset_rows(systems, ["cubic", "triclinic"], 4, seed=1)
    assert list(chosen) == sorted(chosen)
    assert sum(systems[i] == "cubic" for i in chosen) == 4
    assert sum(systems[i] == "triclinic" for i in chosen) == 3
    assert list(chosen) == list(subset_rows(systems, ["cubic", "triclinic"], 4, seed=1))
    assert list(subset_rows(systems, ["cubic"], None, seed=1)) == list(range(15))
    assert crystal_system_of("225") == "cubic" and crystal_system_of("Hexagonal") == "hexagonal"
    assert crystal_system_of("unknown") is None


def test_class_column_subset_over_two_tables():
    settings = _settings(str(SAMPLE), str(SAMPLE), class_column="spacegroup.number")
    items = list(iter_cif_table(settings, ["orthorhombic"], 1, 0, 1))
    # One orthorhombic row (of four in the two tables: Zn3N2 and its copy, twice).
    assert len(items) == 1 and "Zn3N2" in items[0].structure.composition.reduced_formula


def test_missing_column_or_empty_table_is_one_line(tmp_path):
    with pytest.raises(XrdsymError, match="no column 'structure_cif'") as caught:
        list(
            iter_cif_table(_settings(str(SAMPLE), cif_column="structure_cif"), CLASSES, None, 0, 1)
        )
    assert "\n" not in str(caught.value) and str(SAMPLE) in str(caught.value)
    (tmp_path / "empty.csv").write_text("material_id,cif\n")
    with pytest.raises(XrdsymError, match="no rows"):
        list(iter_cif_table(_settings(str(tmp_path / "empty.csv")), CLASSES, None, 0, 1))
    with pytest.raises(XrdsymError, match="no such file"):
        list(iter_cif_table(_settings(str(tmp_path / "absent.csv")), CLASSES, None, 0, 1))


def test_url_table_is_downloaded_once_and_checked(tmp_path):
    sha256 = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    table = TableRef.of({"url": SAMPLE.as_uri(), "sha256": sha256})
    path = fetch_table(table, tmp_path / "data")
    assert (
        path == tmp_path / "data" / "mp_20_sample.csv" and path.read_bytes() == SAMPLE.read_bytes()
    )
    # Reused afterwards: the URL is not needed again.
    offline = TableRef(url="http://127.0.0.1:9/mp_20_sample.csv", sha256=sha256)
    assert fetch_table(offline, tmp_path / "data") == path
    # A file that does not match its sha256 is deleted and reported.
    path.write_text("material_id,cif\nchanged,\n")
    with pytest.raises(XrdsymError, match="deleted"):
        fetch_table(table, tmp_path / "data")
    assert not path.exists()
    wrong = TableRef(url=SAMPLE.as_uri(), sha256="0" * 64)
    with pytest.raises(XrdsymError, match="download deleted"):
        fetch_table(wrong, tmp_path / "data")
    assert not path.exists()
    # Offline with nothing downloaded: one line saying what to put where.
    with pytest.raises(XrdsymError, match=f"put it at {tmp_path / 'data' / 'mp_20_sample.csv'}"):
        fetch_table(offline, tmp_path / "data")


def _download_params(**cif_table) -> dict:
    params = {key: yaml.safe_load((ROOT / "params.yaml").read_text())[key] for key in PARAMS}
    params.update(source="cif_table", n_jobs=1, n_per_class=None)
    table = {
        "tables": [str(SAMPLE)],
        "id_column": "material_id",
        "space_group_column": "spacegroup.number",
        "class_column": None,
        "keep_columns": ["pretty_formula"],
    }
    params["download"]["cif_table"].update({**table, **cif_table})
    return params


def test_download_stage_on_a_table(tmp_path):
    params = _download_params()
    run(stage_params(params, PARAMS), tmp_path / "structures", tmp_path / "download.json")
    kept = [r["id"] for r in read_jsonl_gz(tmp_path / "structures" / "structures.jsonl.gz")]
    assert kept == ["mp-865981", "mp-754553", "mp-1217125", "mp-1222676"]
    rejects = pd.read_csv(tmp_path / "structures" / "rejects.csv")
    assert dict(zip(rejects["id"], rejects["stage"], strict=True)) == {
        "mp-broken": "download",
        "mp-copy-of-mp-754553": "download:dedup",
    }
    metrics = json.loads((tmp_path / "download.json").read_text())
    assert metrics["n_unreadable"] == 1 and metrics["n_duplicates"] == 1
    # MP-20's stated space groups against spglib's: every one of the five read agrees.
    assert metrics["stated_space_group"]["cif_table"] == {
        "stated": 5,
        "agree": 5,
        "agree_crystal_system": 5,
    }


def test_cif_table_params_are_checked(tmp_path):
    for change, key in [
        ({"tables": []}, "download.cif_table.tables"),
        ({"tables": [{"url": "http://x/t.csv", "sha256": "abc"}]}, "download.cif_table.tables"),
        ({"id_column": ""}, "download.cif_table.id_column"),
        ({"keep_columns": "year"}, "download.cif_table.keep_columns"),
    ]:
        with pytest.raises(ParamsError, match=key):
            stage_params(_download_params(**change), PARAMS)
    params = _download_params()
    params["source"] = "synthetic"
    with pytest.raises(ParamsError, match="n_per_class"):
        stage_params(params, PARAMS)


def test_embedded_set_is_in_the_repository():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for table in params["download"]["cif_table"]["tables"]:
        assert (ROOT / table).is_file(), f"{table} missing from the repository"


def test_empty_cells_are_missing_values_not_one_material(tmp_path):
    table = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False).iloc[:2]
    table["id"] = ["oqmd-1", "oqmd-2"]
    table["material_id"] = ""
    table.to_csv(tmp_path / "t.csv", index=False)
    settings = _settings(str(tmp_path / "t.csv"), id_column="id", keep_columns=("material_id",))
    records = list(iter_cif_table(settings, CLASSES, None, 0, 1))
    assert [r.meta["material_id"] for r in records] == [None, None]
