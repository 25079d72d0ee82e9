"""Synthetic crystals from PyXtal: random, symmetric, balanced over crystal systems, seeded.

Every structure gets its own random stream, derived from (seed, crystal system, index), so the
same seed gives the same structures whatever the number of worker processes.
"""

from __future__ import annotations

import ctypes
import functools
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pyxtal import pyxtal
from pyxtal.symmetry import Group

from xrdsym.parallel import parallel_map
from xrdsym.sources import Reject, StructureRecord
from xrdsym.symmetry import CRYSTAL_SYSTEMS, SPACE_GROUP_RANGES

if TYPE_CHECKING:
    from pymatgen.core import Structure

SOURCE_NAME = "synthetic"
# Most Wyckoff orbits one species may occupy: enough variety, while small cells keep
# generation fast and the generator's success rate high.
MAX_ORBITS_PER_SPECIES = 3


@dataclass(frozen=True)
class SyntheticSettings:
    """How random crystals are drawn.

    Attributes:
        elements: chemical symbols the species are drawn from.
        max_species: most distinct elements in one structure.
        max_atoms: most atoms in the conventional cell.
        volume_factor: PyXtal's volume scale over the sum of atomic volumes.
        max_attempts: draws (space group, composition, positions) before giving up on an item.
        attempt_timeout_s: seconds one PyXtal placement may take before it counts as failed.
    """

    elements: tuple[str, ...]
    max_species: int
    max_atoms: int
    volume_factor: float
    max_attempts: int
    attempt_timeout_s: float


class AttemptTimeout(BaseException):
    """A PyXtal placement ran past its time limit.

    A BaseException, so that PyXtal's own ``except Exception`` retry loops let it through.
    """


# Seconds between repeated timeouts once the limit has passed: a bare ``except:`` inside
# PyXtal can swallow one, so it is raised again until the block ends.
_TIMEOUT_REPEAT_S = 0.1


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise AttemptTimeout in the block after ``seconds`` of wall time, and again every
    ``_TIMEOUT_REPEAT_S`` until the block ends.

    Some PyXtal draws never finish placing their atoms; without a limit one of them stalls
    the whole stage. In the main thread a SIGALRM timer interrupts the draw; elsewhere (a Dask
    worker runs tasks in a thread) a timer thread raises the exception in the drawing thread.
    """
    if threading.current_thread() is threading.main_thread():

        def expire(signum, frame):
            raise AttemptTimeout

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds, _TIMEOUT_REPEAT_S)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    thread_id = ctypes.c_ulong(threading.get_ident())
    done = threading.Event()

    def expire() -> None:
        wait = seconds
        while not done.wait(wait):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, ctypes.py_object(AttemptTimeout))
            wait = _TIMEOUT_REPEAT_S

    timer = threading.Thread(target=expire, daemon=True)
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.join()
        # A timeout raised just as the block ended is still pending: clear it.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, None)


class PlacementFailed(Exception):
    """PyXtal gave no valid crystal for one draw; the message says why."""


def place_atoms(
    group: int,
    species: Sequence[str],
    counts: Sequence[int],
    timeout_s: float,
    random_state: int,
    **options: Any,
) -> Structure:
    """The crystal PyXtal builds in space group ``group`` with ``counts`` atoms of each of
    ``species`` in the conventional cell, within ``timeout_s`` seconds.

    ``options`` go to ``pyxtal.from_random`` (``factor``, ``lattice``, ``sites``, ...). Raises
    PlacementFailed, with the reason, for a draw that times out, fails or is not valid.
    """
    crystal = pyxtal()
    try:
        with _time_limit(timeout_s):
            crystal.from_random(
                3, group, list(species), list(counts), random_state=random_state, **options
            )
    except AttemptTimeout:
        raise PlacementFailed(f"placement took longer than {timeout_s:g} s") from None
    except Exception as exc:  # PyXtal signals failures with many exception types
        raise PlacementFailed(f"pyxtal: {exc.__class__.__name__}: {exc}") from exc
    if not crystal.valid:
        raise PlacementFailed("pyxtal could not place the atoms")
    return crystal.to_pymatgen()


def random_composition(
    group: Group, rng: np.random.Generator, settings: SyntheticSettings
) -> tuple[list[str], list[int]] | None:
    """Species and atom counts per conventional cell that fill whole Wyckoff orbits of ``group``.

    Returns None when the draw does not fit ``settings.max_atoms`` or the group's Wyckoff sets.
    """
    multiplicities = sorted({wp.multiplicity for wp in group.Wyckoff_positions})
    usable = [m for m in multiplicities if m <= settings.max_atoms]
    if not usable:
        return None
    # Small orbits are favoured so that many species fit into small cells.
    weights = 1.0 / np.asarray(usable, dtype=float)
    weights /= weights.sum()
    n_species = int(rng.integers(1, settings.max_species + 1))
    species = [str(s) for s in rng.choice(settings.elements, size=n_species, replace=False)]
    counts = [
        int(
            rng.choice(
                usable, size=int(rng.integers(1, MAX_ORBITS_PER_SPECIES + 1)), p=weights
            ).sum()
        )
        for _ in species
    ]
    if sum(counts) > settings.max_atoms or not group.check_compatible(counts)[0]:
        return None
    return species, counts


def generate_structure(
    crystal_system: str, rng: np.random.Generator, settings: SyntheticSettings
) -> tuple[Structure, int]:
    """A random structure built in a random space group of ``crystal_system``.

    Returns the structure and the space-group number it was built in. Raises RuntimeError when
    no draw succeeds within ``settings.max_attempts``.
    """
    numbers = SPACE_GROUP_RANGES[crystal_system]
    last_error = "no composition fits the Wyckoff positions within max_atoms"
    for _ in range(settings.max_attempts):
        number = int(rng.choice(numbers))
        group = Group(number)
        composition = random_composition(group, rng, settings)
        if composition is None:
            continue
        species, counts = composition
        try:
            structure = place_atoms(
                number,
                species,
                counts,
                settings.attempt_timeout_s,
                random_state=int(rng.integers(2**31)),
                factor=settings.volume_factor,
            )
        except PlacementFailed as exc:
            last_error = str(exc)
            continue
        return structure, number
    raise RuntimeError(f"{last_error} (after {settings.max_attempts} attempts)")


def _generate_item(
    item: tuple[str, int], seed: int, settings: SyntheticSettings
) -> StructureRecord | Reject:
    crystal_system, index = item
    item_id = f"syn-{crystal_system}-{index:05d}"
    rng = np.random.default_rng([seed, CRYSTAL_SYSTEMS.index(crystal_system), index])
    try:
        structure, number = generate_structure(crystal_system, rng, settings)
    except RuntimeError as exc:
        return Reject(item_id, "download", str(exc))
    return StructureRecord(
        id=item_id,
        source=SOURCE_NAME,
        structure=structure,
        meta={"requested_space_group": number, "requested_crystal_system": crystal_system},
    )


def iter_synthetic(
    classes: Sequence[str], n_per_class: int, seed: int, n_jobs: int, settings: SyntheticSettings
) -> Iterator[StructureRecord | Reject]:
    """``n_per_class`` structures for every crystal system in ``classes``, in a fixed order."""
    items = [(system, index) for system in classes for index in range(n_per_class)]
    worker = functools.partial(_generate_item, seed=seed, settings=settings)
    yield from parallel_map(worker, items, n_jobs, "generating crystals")
