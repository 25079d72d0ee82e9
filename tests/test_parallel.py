"""Parallel maps: worker processes and Dask give the single-process results, in order."""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

from xrdsym.diffraction import TwoThetaGrid, pattern_from_structure
from xrdsym.errors import XrdsymError
from xrdsym.parallel import dask_scheduler, parallel_map
from xrdsym.sources.synthetic import AttemptTimeout, SyntheticSettings, _time_limit, iter_synthetic

SETTINGS = SyntheticSettings(
    elements=("Na", "Cl", "Mg", "O", "Si"),
    max_species=2,
    max_atoms=12,
    volume_factor=1.1,
    max_attempts=20,
    attempt_timeout_s=10,
)


def _square(x: int) -> int:
    return x * x


def _synthetic(n_jobs: int) -> list:
    records = iter_synthetic(["cubic", "monoclinic"], 3, seed=7, n_jobs=n_jobs, settings=SETTINGS)
    return [record.structure for record in records]


def test_processes_keep_order():
    assert list(parallel_map(_square, list(range(23)), 2, "squares")) == [x * x for x in range(23)]


def _no_local_processes(*args, **kwargs):
    raise AssertionError("the work should have gone to Dask")


def test_dask_local_cluster_gives_the_single_process_results(monkeypatch):
    """Synthetic crystals and their patterns, made on a two-worker LocalCluster, equal the
    ones made in this process."""
    expected = _synthetic(n_jobs=1)
    grid = TwoThetaGrid(0, 90, 0.05)
    simulate = functools.partial(pattern_from_structure, wavelength="CuKa", grid=grid, sigma=3)
    expected_patterns = [simulate(structure) for structure in expected]
    monkeypatch.setattr("xrdsym.parallel.ProcessPoolExecutor", _no_local_processes)

    with dask_scheduler("local", n_jobs=2):
        structures = _synthetic(n_jobs=2)
        patterns = list(parallel_map(simulate, structures, 2, "patterns"))

    assert structures == expected
    np.testing.assert_array_equal(np.stack(patterns), np.stack(expected_patterns))


def test_scheduler_given_by_address():
    """An existing cluster, reached through its scheduler's address as params give it."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        with dask_scheduler(cluster.scheduler_address, n_jobs=1):
            squares = list(parallel_map(_square, list(range(50)), 1, "squares"))
    assert squares == [x * x for x in range(50)]


def test_unreachable_scheduler_is_one_error():
    with (
        pytest.raises(XrdsymError, match="cannot reach the Dask scheduler"),
        dask_scheduler("tcp://127.0.0.1:9", n_jobs=1, connect_timeout_s=1),
    ):
        pass


def test_time_limit_outside_the_main_thread():
    """Dask runs tasks in worker threads, where SIGALRM cannot be used."""
    outcome = []

    def stall():
        try:
            with _time_limit(0.2):
                while True:
                    time.sleep(0.01)
        except AttemptTimeout:
            outcome.append("stopped")

    thread = threading.Thread(target=stall)
    thread.start()
    thread.join(timeout=5)
    assert outcome == ["stopped"]


def test_time_limit_is_raised_again_when_swallowed():
    """PyXtal retries inside bare ``except:`` blocks; the timeout keeps coming until the
    block ends, so such a loop ends in a fraction of a second, not after 3 x 5 s."""

    def stubborn_retries():
        for _ in range(3):
            try:  # noqa: SIM105 - written as PyXtal writes it
                time.sleep(5)
            except:  # noqa: E722
                pass

    start = time.perf_counter()
    try:
        with _time_limit(0.2):
            stubborn_retries()
    except AttemptTimeout:
        pass
    assert time.perf_counter() - start < 2
