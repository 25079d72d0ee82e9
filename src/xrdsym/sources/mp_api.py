"""Structures from the Materials Project's API through mp-api: the paper's supplement.

The paper added Materials Project structures of the crystal systems that matminer's 2018 copy
has few of (cubic, hexagonal, trigonal, tetragonal). For each crystal system in ``per_system``,
that many summary documents (material id, structure, symmetry) of the current database release
are read, sorted by material id so that the same release gives the same structures, without
deprecated materials or GNoME's predicted ones, in pages of ``page_size``.

The key comes from the environment variable MP_API_KEY only, so that it never sits in
params.yaml, in a log or in an output. Every request is retried with exponential backoff when
the answer means "try later" (429, 5xx) or the connection fails; a missing or refused key, no
network, or an API still failing after the retries ends as one XrdsymError line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from emmet.core.symmetry import CrystalSystem
from mp_api.client import MPRester
from mp_api.client.core import MPRestError
from mp_api.client.core.settings import MAPI_CLIENT_SETTINGS
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from xrdsym.errors import XrdsymError
from xrdsym.sources import Reject, StructureRecord

SOURCE_NAME = "mp_api"
API_KEY_VARIABLE = "MP_API_KEY"
API_KEY_PAGE = "https://next-gen.materialsproject.org/api"
FIELDS = ("material_id", "structure", "symmetry")
# The API's largest page (the max_limit in its answers): fewest requests.
PAGE_SIZE = 1000
# Retries of one request; urllib3 waits backoff_factor * 2**(n - 1) seconds before retry n > 1
# (2, 4, 8, 16 s here, or the server's Retry-After), enough to ride out a rate limit or a
# server restart without stalling the stage for long when the API is really down.
MAX_RETRIES = 5
BACKOFF_FACTOR_S = 1.0
# Answers that mean "try later" (rate limit, server errors); mp-api's own session retries only
# 429, 502 and 504.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
# Answers that mean the key is missing, malformed or revoked: retrying cannot help.
KEY_REFUSED_STATUS = (401, 403)


def _stop_on_refused_key(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: a refused key ends the stage at the first request."""
    if response.status_code in KEY_REFUSED_STATUS:
        raise XrdsymError(
            f"source mp_api: the Materials Project refused the key in {API_KEY_VARIABLE} "
            f"(HTTP {response.status_code}); check it at {API_KEY_PAGE}"
        )


def retrying_session(api_key: str, max_retries: int, backoff_factor_s: float) -> requests.Session:
    """A requests session that sends ``api_key`` and retries transient failures with backoff."""
    retry = Retry(
        total=max_retries, backoff_factor=backoff_factor_s, status_forcelist=TRANSIENT_STATUS
    )
    session = requests.Session()
    session.headers["x-api-key"] = api_key
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.hooks["response"].append(_stop_on_refused_key)
    return session


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (mp-api re-raises
    requests' errors as MPRestError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


@contextmanager
def _one_line_errors(max_retries: int) -> Iterator[None]:
    """Turn mp-api's and requests' errors into one XrdsymError line each."""
    try:
        yield
    except (MPRestError, requests.RequestException) as exc:
        causes = list(_causes(exc))
        if any(isinstance(e, requests.ConnectionError | requests.Timeout) for e in causes):
            message = (
                f"cannot reach the Materials Project API at {MAPI_CLIENT_SETTINGS.ENDPOINT} "
                "(no network?)"
            )
        elif any(isinstance(e, requests.exceptions.RetryError) for e in causes):
            message = f"the Materials Project API still failed after {max_retries} retries"
        else:
            message = " ".join(str(exc).split())
        raise XrdsymError(f"source mp_api: {message}") from exc


def record_from_doc(doc: Any, database_version: str) -> StructureRecord | Reject:
    """The record of one summary document (fields :data:`FIELDS`) of ``database_version``."""
    material_id = str(doc.material_id)
    if doc.structure is None:
        return Reject(material_id, "download", "no structure in the summary document")
    return StructureRecord(
        id=material_id,
        source=SOURCE_NAME,
        structure=doc.structure,
        meta={
            "material_id": material_id,
            "database_version": database_version,
            "crystal_system": doc.symmetry.crystal_system.value.lower(),
            "space_group": doc.symmetry.number,
        },
    )


def iter_mp_api(
    per_system: Mapping[str, int],
    *,
    page_size: int = PAGE_SIZE,
    max_retries: int = MAX_RETRIES,
    backoff_factor_s: float = BACKOFF_FACTOR_S,
) -> Iterator[StructureRecord | Reject]:
    """``per_system[system]`` Materials Project structures of each crystal system, in the
    mapping's order, sorted by material id within a system."""
    api_key = os.environ.get(API_KEY_VARIABLE)
    if not api_key:
        raise XrdsymError(
            f"source mp_api: set the environment variable {API_KEY_VARIABLE} to your Materials "
            f"Project API key (from {API_KEY_PAGE})"
        )
    session = retrying_session(api_key, max_retries, backoff_factor_s)
    with _one_line_errors(max_retries), MPRester(api_key=api_key, session=session) as rester:
        for system, count in per_system.items():
            chunk_size = min(page_size, count)
            docs = rester.materials.summary.search(
                crystal_system=CrystalSystem(system),
                deprecated=False,
                include_gnome=False,
                fields=list(FIELDS),
                chunk_size=chunk_size,
                num_chunks=math.ceil(count / chunk_size),
                _sort_fields="material_id",
            )
            for doc in docs[:count]:
                yield record_from_doc(doc, rester.db_version)
