"""The mp_api source against the Materials Project's API replaced at the HTTP level by
recorded answers (the responses library): mp-api's own client code runs, and so does the
retrying session. Last, matminer and mp_api combined by the download stage."""

import json
from pathlib import Path

import pandas as pd
import pytest
import responses
import yaml
from emmet.core.symmetry import SymmetryData
from mp_api.client.core.settings import MAPI_CLIENT_SETTINGS
from pymatgen.core import Lattice, Structure
from responses.matchers import query_param_matcher

from xrdsym.errors import XrdsymError
from xrdsym.io import read_jsonl_gz
from xrdsym.sources.mp_api import API_KEY_VARIABLE, FIELDS, iter_mp_api
from xrdsym.stages import download
from xrdsym.symmetry import CRYSTAL_SYSTEMS

ROOT = Path(__file__).resolve().parents[1]
API = "https://api.materialsproject.org/"
SUMMARY = API + "materials/summary/"
# A key of a real key's form: mp-api refuses keys that are not 32 characters before sending.
KEY = "0123456789abcdefghijklmnopqrstuv"
DATABASE_VERSION = "2025.09.25"


def query(crystal_system: str, limit: int, skip: int | None = None) -> dict[str, str]:
    """The query string of one page of summary documents of ``crystal_system``."""
    params = {
        "crystal_system": crystal_system,
        "deprecated": "False",
        "batch_id_not_eq": "gnome_r2scan_statics",
        "_sort_fields": "material_id",
        "_fields": ",".join(FIELDS),
        "_limit": str(limit),
    }
    return params if skip is None else params | {"_skip": str(skip)}


def page(structures: dict[str, Structure], total: int) -> dict:
    """One page of summary documents as the API sends it, of ``total`` matching documents; the
    symmetry block is made by emmet-core, as the Materials Project makes it."""
    docs = [
        {
            "material_id": material_id,
            "structure": structure.as_dict(),
            "symmetry": SymmetryData.from_structure(structure).model_dump(mode="json"),
        }
        for material_id, structure in structures.items()
    ]
    return {"data": docs, "errors": [], "meta": {"total_doc": total, "max_limit": 1000}}


@pytest.fixture
def api(monkeypatch):
    """The API's recorded answers, with MP_API_KEY set and the heartbeat (database and server
    versions, asked by MPRester on start) answered; each test adds the summary answers."""
    monkeypatch.setenv(API_KEY_VARIABLE, KEY)
    heartbeat = {
        "status": "OK",
        "db_version": DATABASE_VERSION,
        "version": MAPI_CLIENT_SETTINGS.MIN_EMMET_VERSION,
        "access_controlled_batch_ids": [],
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as answers:
        answers.get(API + "heartbeat", json=heartbeat)
        yield answers


def summary_calls(api) -> list:
    return [call for call in api.calls if call.request.url.startswith(SUMMARY)]


def per_class(**counts: int) -> dict[str, int]:
    """Counts of every crystal system, 0 unless given."""
    return {system: counts.get(system, 0) for system in CRYSTAL_SYSTEMS}


@pytest.fixture
def magnesium() -> Structure:
    """Mg, hcp, P6_3/mmc."""
    return Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]
    )


@pytest.fixture
def caesium_chloride() -> Structure:
    """CsCl, Pm-3m."""
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_pages_are_read_until_each_system_has_its_count(api, rock_salt, rutile):
    api.get(
        SUMMARY,
        json=page({"mp-1": rock_salt, "mp-2": rock_salt}, total=5),
        match=[query_param_matcher(query("Cubic", 2))],
    )
    api.get(
        SUMMARY,
        json=page({"mp-3": rock_salt, "mp-4": rock_salt}, total=5),
        match=[query_param_matcher(query("Cubic", 2, skip=2))],
    )
    api.get(
        SUMMARY,
        json=page({"mp-2657": rutile}, total=1),
        match=[query_param_matcher(query("Tetragonal", 1))],
    )

    records = list(iter_mp_api({"cubic": 3, "tetragonal": 1}, page_size=2))

    assert [record.id for record in records] == ["mp-1", "mp-2", "mp-3", "mp-2657"]
    assert {record.source for record in records} == {"mp_api"}
    assert records[-1].meta == {
        "material_id": "mp-2657",
        "database_version": DATABASE_VERSION,
        "crystal_system": "tetragonal",
        "space_group": 136,
    }
    assert records[-1].structure == rutile
    assert len(summary_calls(api)) == 3
    assert {call.request.headers["x-api-key"] for call in summary_calls(api)} == {KEY}
    assert KEY not in json.dumps([record.to_json() for record in records])


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_at_once_with_one_line_that_does_not_show_it(api, status):
    api.get(SUMMARY, status=status, json={"message": "Invalid authentication credentials"})

    with pytest.raises(XrdsymError) as error:
        list(iter_mp_api({"cubic": 1}, backoff_factor_s=0))

    message = str(error.value)
    assert f"refused the key in MP_API_KEY (HTTP {status})" in message
    assert KEY not in message and "\n" not in message
    assert len(summary_calls(api)) == 1


def test_a_transient_error_is_retried(api, rock_salt):
    api.get(SUMMARY, status=503, json={"detail": "Service Unavailable"})
    api.get(SUMMARY, json=page({"mp-22862": rock_salt}, total=1))

    records = list(iter_mp_api({"cubic": 1}, backoff_factor_s=0))

    assert [record.id for record in records] == ["mp-22862"]
    assert [call.response.status_code for call in summary_calls(api)] == [503, 200]


def test_an_api_failing_after_every_retry_stops_with_one_line(api):
    api.get(SUMMARY, status=503, json={"detail": "Service Unavailable"})

    with pytest.raises(XrdsymError, match="still failed after 2 retries") as error:
        list(iter_mp_api({"cubic": 1}, max_retries=2, backoff_factor_s=0))

    assert "\n" not in str(error.value)
    assert len(summary_calls(api)) == 3


def test_without_a_key_one_line_says_to_set_it_and_nothing_is_sent(api, monkeypatch):
    monkeypatch.delenv(API_KEY_VARIABLE)

    with pytest.raises(XrdsymError, match="set the environment variable MP_API_KEY"):
        list(iter_mp_api({"cubic": 1}))

    assert len(api.calls) == 0


def test_offline_one_line_says_the_api_cannot_be_reached(monkeypatch, no_network):
    monkeypatch.setenv(API_KEY_VARIABLE, KEY)

    with pytest.raises(XrdsymError, match="cannot reach the Materials Project API") as error:
        list(iter_mp_api({"cubic": 1}, backoff_factor_s=0))

    assert "\n" not in str(error.value)


def test_matminer_and_mp_api_keep_each_material_once_and_count_per_class(
    api, tmp_path, write_mp_all, rock_salt, rutile, caesium_chloride, magnesium
):
    # matminer (2018) and the API (now) both have rock salt as mp-22862; CsCl comes under two
    # ids, so only its structure shows it is the same material.
    write_mp_all(
        tmp_path / "matminer",
        {"mp-22862": rock_salt, "mp-2657": rutile, "mp-573697": caesium_chloride},
    )
    api.get(
        SUMMARY,
        json=page({"mp-22862": rock_salt, "mp-22865": caesium_chloride}, total=40),
        match=[query_param_matcher(query("Cubic", 2))],
    )
    api.get(
        SUMMARY,
        json=page({"mp-153": magnesium}, total=30),
        match=[query_param_matcher(query("Hexagonal", 1))],
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {key: params[key] for key in download.PARAMS} | {
        "source": ["matminer", "mp_api"],
        "n_jobs": 1,
    }
    params["download"]["matminer"] = {"data_home": str(tmp_path / "matminer"), "limit": None}
    params["download"]["mp_api"] = {"per_system": {"cubic": 2, "hexagonal": 1}}

    download.run(params, tmp_path / "structures", tmp_path / "download.json")

    kept = read_jsonl_gz(tmp_path / "structures" / "structures.jsonl.gz")
    assert [(r["id"], r["source"]) for r in kept] == [
        ("mp-22862", "matminer"),
        ("mp-2657", "matminer"),
        ("mp-573697", "matminer"),
        ("mp-153", "mp_api"),
    ]
    rejects = pd.read_csv(tmp_path / "structures" / "rejects.csv")
    assert rejects.values.tolist() == [
        ["mp-22862", "download:dedup", "Materials Project id mp-22862 already read from matminer"],
        ["mp-22865", "download:dedup", "duplicate of mp-573697"],
    ]
    metrics = json.loads((tmp_path / "download.json").read_text())
    assert metrics["n_same_material_id"] == 1 and metrics["n_duplicates"] == 1
    assert metrics["per_source"] == {
        "matminer": {
            "read": 3,
            "kept": 3,
            "read_per_class": per_class(cubic=2, tetragonal=1),
            "kept_per_class": per_class(cubic=2, tetragonal=1),
        },
        "mp_api": {
            "read": 3,
            "kept": 1,
            "read_per_class": per_class(cubic=2, hexagonal=1),
            "kept_per_class": per_class(hexagonal=1),
        },
    }
    assert metrics["per_class"] == {
        "read": per_class(cubic=4, hexagonal=1, tetragonal=1),
        "kept": per_class(cubic=2, hexagonal=1, tetragonal=1),
    }
