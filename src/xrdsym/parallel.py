"""Ordered parallel map over worker processes, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

# Items per task sent to a worker: large enough to amortise pickling, small enough that the
# progress bar moves and the cores stay evenly loaded.
CHUNK_SIZE = 4


def parallel_map(
    function: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int,
    description: str,
    *,
    show_progress: bool = True,
) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in input order, using ``n_jobs`` processes.

    ``function`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Results do not depend on ``n_jobs``: every item carries everything it needs, its seed too.
    """
    progress = tqdm(
        total=len(items),
        desc=description,
        unit="item",
        mininterval=1.0,
        disable=not show_progress,
    )
    with progress:
        if n_jobs == 1:
            for item in items:
                yield function(item)
                progress.update()
            return
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            for result in pool.map(function, items, chunksize=CHUNK_SIZE):
                yield result
                progress.update()
