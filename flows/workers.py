"""Worker processes for the CPU-bound part of a batch: threads alone cannot use more than one core (the GIL).

Prefect still runs one task per batch (with its retries and states); the task's
thread hands the batch to a process of this pool and waits for the summary. The
pool lives for one flow run. Where no pool is registered (workers=1, or a task
running on a Dask worker), the batch runs in the task's own process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Iterator

_POOLS: dict[str, ProcessPoolExecutor] = {}
_known: frozenset[str] = frozenset()  # set once in each worker process by _initialise


def _initialise(known: frozenset[str]) -> None:
    global _known
    _known = known


def _run_batch(dest, source, run, index, refs, options, descriptions):
    from archive.ingest import process_batch
    from archive.source import open_source
    from archive.store import open_store

    return process_batch(open_store(dest), open_source(source), run, index, refs, known=_known, options=options,
                         descriptions=descriptions)


@contextmanager
def batch_workers(run_id: str, workers: int, known: frozenset[str]) -> Iterator[None]:
    """A pool of worker processes for run_id's batches, for the duration of the block.

    The committed doc_ids go to each worker once, at start, not with every batch.
    """
    if workers <= 1:
        yield
        return
    # spawn, not fork (Prefect's threads in this process) nor forkserver (whose
    # server would keep the environment of its first use: AWS settings change).
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialise, initargs=(known,))
    _POOLS[run_id] = pool
    try:
        yield
    finally:
        _POOLS.pop(run_id, None)
        pool.shutdown(wait=True, cancel_futures=True)


def pool_for(run_id: str) -> ProcessPoolExecutor | None:
    return _POOLS.get(run_id)


def run_in_pool(pool: ProcessPoolExecutor, dest, source, run, index, refs, options, descriptions):
    return pool.submit(_run_batch, dest, source, run, index, refs, options, descriptions).result()
