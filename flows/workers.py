"""Worker processes for the CPU-bound part of a run: threads alone cannot use more than one core (the GIL).

Prefect still runs one task per batch (with its retries and states); the task's
thread hands the batch to a process of this pool and waits for the summary. The
pool lives for one flow run. Where no pool is registered (workers=1, or a task
running on a Dask worker), the batch runs in the task's own process. The
fixity audit hands its chunks of originals to such a pool the same way.
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


def _audit_chunk(dest, run, index, objects: dict):
    import pyarrow as pa

    from archive.audit import check_objects, record_checks
    from archive.store import open_store

    store = open_store(dest)
    return record_checks(store, run, index, check_objects(store, pa.table(objects)))


def _preload(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)


@contextmanager
def process_pool(run_id: str, workers: int, initializer=None, initargs: tuple = (),
                 preload: tuple[str, ...] = ()) -> Iterator[None]:
    """A pool of worker processes for run_id's tasks, for the duration of the block (none for workers <= 1).

    preload: modules every worker imports as soon as the pool starts, while this
    process goes on (the processes start on first use otherwise).
    """
    if workers <= 1:
        yield
        return
    # spawn, not fork (Prefect's threads in this process) nor forkserver (whose
    # server would keep the environment of its first use: AWS settings change).
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)
    if preload:
        for _ in range(workers):  # (a process is started for each call submitted while none is idle)
            pool.submit(_preload, preload)
    _POOLS[run_id] = pool
    try:
        yield
    finally:
        _POOLS.pop(run_id, None)
        pool.shutdown(wait=True, cancel_futures=True)


def batch_workers(run_id: str, workers: int, known: frozenset[str]):
    """The pool for run_id's ingest batches. The committed doc_ids go to each worker once, at start, not with every batch."""
    return process_pool(run_id, workers, _initialise, (known,))


def pool_for(run_id: str) -> ProcessPoolExecutor | None:
    return _POOLS.get(run_id)


def run_in_pool(pool: ProcessPoolExecutor, dest, source, run, index, refs, options, descriptions):
    return pool.submit(_run_batch, dest, source, run, index, refs, options, descriptions).result()


def audit_in_pool(pool: ProcessPoolExecutor, dest, run, index, objects):
    """One chunk of originals (a pyarrow table of object_key and size) re-hashed in a worker; its summary back."""
    return pool.submit(_audit_chunk, dest, run, index, objects.to_pydict()).result()
