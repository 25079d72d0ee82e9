"""Structures from matminer's copy of the Materials Project: the paper's main source.

matminer's dataset ``mp_all_20181018`` holds the 83,989 Materials Project materials of
18 October 2018, one row per material id (mpid) with its relaxed structure. matminer downloads
the file once into ``data_home``, checks its sha256 against its own metadata, and keeps it
there, so later runs (with another ``limit``, say) read it without the network. The material id
is the record's id and also goes into ``meta["material_id"]``, by which
:func:`xrdsym.sources.combine.remove_same_material_ids` drops the materials that another
Materials Project source gives again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import requests
from matminer.datasets import get_dataset_attribute, load_dataset
from pymatgen.core import Structure

from xrdsym.errors import XrdsymError
from xrdsym.sources import Reject, StructureRecord

if TYPE_CHECKING:
    import pandas as pd

SOURCE_NAME = "matminer"
DATASET = "mp_all_20181018"


def dataset_path(data_home: Path) -> Path:
    """Where matminer keeps (and looks for) the dataset's file under ``data_home``."""
    return data_home / f"{DATASET}.{get_dataset_attribute(DATASET, 'file_type')}"


def check_dataset_file(path: Path) -> None:
    """Raise XrdsymError if the file at ``path`` is not the one matminer's metadata names.

    matminer checks the sha256 only right after its own download; a file left by an interrupted
    download or put there by hand would otherwise fail later, deep in JSON decoding.
    """
    expected = get_dataset_attribute(DATASET, "hash")
    with path.open("rb") as stream:
        found = hashlib.file_digest(stream, "sha256").hexdigest()
    if found != expected:
        raise XrdsymError(
            f"source matminer: {path} has sha256 {found}, not matminer's {expected}: "
            "an incomplete or different file; delete it to download it again"
        )


def load_mp_all(data_home: Path) -> pd.DataFrame:
    """matminer's ``mp_all_20181018`` as its DataFrame (columns ``mpid``, ``structure``, ...),
    downloaded into ``data_home`` on first use; offline without the file, one XrdsymError line
    says where to get it and where to put it."""
    path = dataset_path(data_home)
    if path.exists():
        check_dataset_file(path)
    try:
        return load_dataset(DATASET, data_home=str(data_home))
    except requests.RequestException as exc:
        sha256, url = get_dataset_attribute(DATASET, "hash"), get_dataset_attribute(DATASET, "url")
        raise XrdsymError(
            f"source matminer: cannot download {path.name} (sha256 {sha256}) from {url} "
            f"({exc.__class__.__name__}); fetch it elsewhere, put it in {data_home}/ and run again"
        ) from exc
    except UserWarning as exc:  # matminer's signal that its downloads kept failing the sha256
        raise XrdsymError(f"source matminer: {exc}") from exc


def iter_matminer(
    data_home: Path, limit: int | None, seed: int
) -> Iterator[StructureRecord | Reject]:
    """The dataset's structures in its order; ``limit`` (None: all) keeps that many, drawn at
    random with ``seed``."""
    table = load_mp_all(data_home)
    positions = np.arange(len(table))
    if limit is not None and limit < len(table):
        positions = np.sort(np.random.default_rng(seed).choice(positions, limit, replace=False))
    rows = table.iloc[positions]
    for material_id, structure in zip(rows["mpid"], rows["structure"], strict=True):
        if not isinstance(structure, Structure):
            yield Reject(str(material_id), "download", "no structure in matminer's row")
            continue
        yield StructureRecord(
            id=str(material_id),
            source=SOURCE_NAME,
            structure=structure,
            meta={"material_id": str(material_id), "dataset": DATASET},
        )
