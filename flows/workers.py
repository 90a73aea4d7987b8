"""Worker processes for the CPU-bound part of a run: threads alone cannot use more than one core (the GIL).

Prefect still runs one task per batch (with its retries and states); the task's
thread hands the batch to a process of this pool and waits for the summary. The
pool lives for one flow run. Where no pool is registered (workers=1, or a task
running on a Dask worker), the batch runs in the task's own process. The
fixity audit hands its chunks of originals to such a pool the same way.

An ingest's batches share the run's DocumentClaims (archive.claims): held by a
manager process that the worker processes call, or in this process for batches
run here. A task on a Dask worker has none: its run's commit settles duplicates.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.managers import BaseManager
from typing import Container, Iterator

from archive.claims import DocumentClaims

_POOLS: dict[str, ProcessPoolExecutor] = {}
_CLAIMS: dict[str, DocumentClaims] = {}  # for batches run in this process
_known: Container[str] = frozenset()  # set once in each worker process by _initialise
_claims = None  # the run's DocumentClaims (a proxy to the manager's), set once in each worker process


class _ClaimsManager(BaseManager):
    """A process holding a run's DocumentClaims for its worker processes."""


_ClaimsManager.register("DocumentClaims", DocumentClaims)


def _initialise(known: Container[str], claims=None) -> None:
    global _known, _claims
    _known, _claims = known, claims


def _run_batch(dest, source, run, index, refs, options, descriptions):
    from archive.ingest import process_batch
    from archive.sources import open_source
    from archive.storage import open_store

    return process_batch(open_store(dest), open_source(source), run, index, refs, known=_known, options=options,
                         descriptions=descriptions, claims=_claims)


def _audit_chunk(dest, run, index, objects: dict):
    import pyarrow as pa

    from archive.audit import check_objects, record_checks
    from archive.storage import open_store

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


@contextmanager
def batch_workers(run_id: str, workers: int, known: Container[str]) -> Iterator[None]:
    """The pool for run_id's ingest batches, and the claims they share. known (the committed documents: a
    CommittedDocuments, which each worker opens itself) goes to each worker once, at start, not with every batch."""
    if workers <= 1:
        _CLAIMS[run_id] = DocumentClaims()
        try:
            yield
        finally:
            _CLAIMS.pop(run_id, None)
        return
    manager = _ClaimsManager(ctx=multiprocessing.get_context("spawn"))  # (spawn: as the pool, see process_pool)
    manager.start()
    try:
        claims = manager.DocumentClaims()  # (a proxy: each worker process gets its own, calling the manager)
        with process_pool(run_id, workers, _initialise, (known, claims)):
            yield
    finally:
        manager.shutdown()


def claims_for(run_id: str) -> DocumentClaims | None:
    """The claims of run_id's batches that run in this process (workers=1), if any."""
    return _CLAIMS.get(run_id)


def pool_for(run_id: str) -> ProcessPoolExecutor | None:
    return _POOLS.get(run_id)


def run_in_pool(pool: ProcessPoolExecutor, dest, source, run, index, refs, options, descriptions):
    return pool.submit(_run_batch, dest, source, run, index, refs, options, descriptions).result()


def audit_in_pool(pool: ProcessPoolExecutor, dest, run, index, objects):
    """One chunk of originals (a pyarrow table of object_key and size) re-hashed in a worker; its summary back."""
    return pool.submit(_audit_chunk, dest, run, index, objects.to_pydict()).result()


@contextmanager
def reuse_executor(dask_address: str | None, workers: int | None) -> Iterator[tuple[object, int]]:
    """(executor, workers) for `archive reuse`'s alignment: the Dask cluster at dask_address (its workers), else a
    pool of local processes (workers, default one per core; (None, 1) for one: aligned in this process)."""
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            yield client.get_executor(), max(1, len(client.scheduler_info()["workers"]))
        return
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        yield None, 1
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool, workers
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
