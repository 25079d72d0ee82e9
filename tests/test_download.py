import json
from pathlib import Path

import pandas as pd
import yaml

from xrdsym.io import read_jsonl_gz
from xrdsym.stages.download import PARAMS, run

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
