"""The AMCSD source on real entries of larixite's copy of the database (offline), and its
rejects and error for entries or a larixite it cannot read."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys

import pytest

from xrdsym.errors import XrdsymError
from xrdsym.sources import Reject, StructureRecord, amcsd
from xrdsym.sources.amcsd import iter_amcsd, read_entry, stated_space_group

needs_larixite = pytest.mark.skipif(
    importlib.util.find_spec("larixite") is None, reason="larixite is not installed"
)
META_KEYS = {
    "amcsd_id",
    "mineral",
    "stated_space_group",
    "stated_hm_symbol",
    "disordered",
    "n_blocks",
}


@needs_larixite
def test_a_limit_draws_that_many_entries_seeded_in_id_order(no_network):
    drawn = list(iter_amcsd(5, seed=0, n_jobs=1))
    again = [item.id for item in iter_amcsd(5, seed=0, n_jobs=1)]
    other = [item.id for item in iter_amcsd(5, seed=1, n_jobs=1)]

    ids = [item.id for item in drawn]
    assert len(ids) == 5 and ids == sorted(ids) and ids == again and ids != other
    assert all(re.fullmatch(r"amcsd:\d{7}", i) for i in ids)
    records = [item for item in drawn if isinstance(item, StructureRecord)]
    assert records and {r.source for r in records} == {"amcsd"}
    for record in records:
        assert set(record.meta) == META_KEYS
        assert record.id == f"amcsd:{record.meta['amcsd_id']}"
        assert 1 <= record.meta["stated_space_group"] <= 230


@needs_larixite
def test_known_entries_give_mineral_space_group_and_disorder(no_network):
    galena, andradite, v2ga5 = read_entry(3), read_entry(1252), read_entry(10625)

    assert galena.id == "amcsd:0000003"
    assert galena.structure.composition.reduced_formula == "PbS"
    assert galena.meta == {
        "amcsd_id": "0000003",
        "mineral": "Galena",
        "stated_space_group": 225,  # stated in the old notation 'F m 3 m'
        "stated_hm_symbol": "F m 3 m",
        "disordered": False,
        "n_blocks": 1,
    }
    assert andradite.meta["mineral"] == "Andradite"
    assert andradite.meta["stated_space_group"] == 230
    assert andradite.meta["disordered"] and not andradite.structure.is_ordered
    assert v2ga5.meta["mineral"] is None  # a synthetic compound: no mineral name
    assert v2ga5.meta["stated_space_group"] == 127


@needs_larixite
def test_an_unparsable_or_missing_entry_is_a_reject(monkeypatch, no_network):
    real_fetch = amcsd.fetch_entry

    def garbage_for_galena(amcsd_id: int) -> amcsd.AmcsdEntry:
        entry = real_fetch(amcsd_id)
        if amcsd_id == 3:
            return dataclasses.replace(entry, cif_text="data_x\n_cell_length_a banana\n")
        return entry

    monkeypatch.setattr(amcsd, "fetch_entry", garbage_for_galena)
    monkeypatch.setattr(amcsd, "amcsd_ids", lambda: [3, 1252])

    galena, andradite = iter_amcsd(None, seed=0, n_jobs=1)

    assert isinstance(galena, Reject)
    assert (galena.id, galena.stage) == ("amcsd:0000003", "download")
    assert galena.reason.startswith("unreadable AMCSD entry: ")
    assert isinstance(andradite, StructureRecord)
    missing = read_entry(1)  # AMCSD ids start at 3
    assert isinstance(missing, Reject)
    assert missing.reason == "unreadable AMCSD entry: LookupError: larixite has no entry 1"


@needs_larixite
def test_worker_processes_give_the_same_records(no_network):
    one = list(iter_amcsd(3, seed=2, n_jobs=1))
    two = list(iter_amcsd(3, seed=2, n_jobs=2))

    assert [(i.id, i.meta, i.structure) for i in one] == [(i.id, i.meta, i.structure) for i in two]


def test_stated_space_group_of_symmetry_operations():
    assert stated_space_group('["x,y,z", "-x,-y,-z"]') == 2
    assert stated_space_group('["x,y,z", "-x,1/2+y,-z"]') == 4  # P 1 21 1
    assert stated_space_group("not json") is None
    assert stated_space_group('["x,y,q"]') is None


def test_without_larixite_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "larixite", None)
    monkeypatch.setitem(sys.modules, "larixite.amcsd", None)

    with pytest.raises(XrdsymError) as error:
        next(iter_amcsd(5, seed=0, n_jobs=1))

    message = str(error.value)
    assert "\n" not in message and "pip install larixite" in message
