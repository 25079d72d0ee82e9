"""Ordered parallel map over worker processes or a Dask cluster, with a progress bar.

By default :func:`parallel_map` uses worker processes on this machine. Inside a
:func:`dask_scheduler` block it sends the work to Dask instead (``dask.distributed``): a
``LocalCluster`` started for the block, or an existing scheduler given by its address, so that
the same stage runs on many machines. Results are the same either way, in the same order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

from xrdsym.errors import XrdsymError

T = TypeVar("T")
R = TypeVar("R")

# Items per task sent to a worker: large enough to amortise pickling, small enough that the
# progress bar moves and the cores stay evenly loaded.
CHUNK_SIZE = 4
# Dask tasks in flight per worker: keeps every worker busy without holding the whole input on
# the scheduler at once (a million structures would not fit there).
TASKS_PER_WORKER = 8
# Seconds to wait for a Dask scheduler given by address before giving up.
CONNECT_TIMEOUT_S = 30

_client: Any = None  # the dask.distributed Client of the innermost dask_scheduler block


@contextmanager
def dask_scheduler(
    address: str | None, n_jobs: int, connect_timeout_s: float = CONNECT_TIMEOUT_S
) -> Iterator[None]:
    """Run every :func:`parallel_map` inside the block on Dask.

    Args:
        address: None to stay with local worker processes; "local" to start a
            ``LocalCluster`` of ``n_jobs`` single-threaded worker processes for the block;
            otherwise the address of a running scheduler ("tcp://10.0.0.5:8786").
        n_jobs: worker processes of a local cluster.
        connect_timeout_s: how long to wait for a scheduler given by address.
    """
    global _client
    outer = _client
    if address is None:
        _client = None  # local processes inside the block, even within a Dask block
        try:
            yield
        finally:
            _client = outer
        return
    from dask.distributed import Client, LocalCluster

    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(
                n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
        else:
            client = Client(address, timeout=connect_timeout_s)
    except (OSError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise XrdsymError(
            f"dask_scheduler: cannot reach the Dask scheduler at {address} ({exc}); start "
            "one with `dask scheduler` and workers with `dask worker ADDRESS`, or set "
            "dask_scheduler: local"
        ) from exc
    _client = client
    try:
        yield
    finally:
        _client = outer
        client.close()
        if cluster is not None:
            cluster.close()


def _one_thread_each() -> None:
    """Worker processes share the cores: one BLAS/OpenMP thread each, or n_jobs workers times
    their threads would oversubscribe the machine (numpy's matrix products are threaded)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _apply(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [function(item) for item in chunk]


def _dask_map(client: Any, function: Callable[[T], R], items: Sequence[T]) -> Iterator[list[R]]:
    """Results of chunks of ``items``, in order, with a bounded number of tasks in flight."""
    in_flight: deque = deque()
    limit = TASKS_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
    for start in range(0, len(items), CHUNK_SIZE):
        chunk = list(items[start : start + CHUNK_SIZE])
        in_flight.append(client.submit(_apply, function, chunk, pure=False))
        if len(in_flight) >= limit:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


def parallel_map(
    function: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int,
    description: str,
    *,
    show_progress: bool = True,
) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in input order, using ``n_jobs`` processes,
    or the Dask cluster of the enclosing :func:`dask_scheduler` block.

    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Results do not depend on ``n_jobs`` or Dask: every item carries everything it needs, its
    seed too.
    """
    # The backend is fixed when the map is asked for, not when its first result is read.
    return _map(_client, function, items, n_jobs, description, show_progress)


def _map(
    client: Any,
    function: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int,
    description: str,
    show_progress: bool,
) -> Iterator[R]:
    progress = tqdm(
        total=len(items),
        desc=description,
        unit="item",
        mininterval=1.0,
        disable=not show_progress,
    )
    with progress:
        if client is not None:
            for results in _dask_map(client, function, items):
                yield from results
                progress.update(len(results))
            return
        if n_jobs == 1:
            for item in items:
                yield function(item)
                progress.update()
            return
        with ProcessPoolExecutor(max_workers=n_jobs, initializer=_one_thread_each) as pool:
            for result in pool.map(function, items, chunksize=CHUNK_SIZE):
                yield result
                progress.update()
