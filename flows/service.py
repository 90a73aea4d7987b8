"""Ingest as a service: the batches on an existing Dask cluster, and the entry point of the `ingest` deployment."""

from __future__ import annotations

import copyreg
import os

from prefect import Flow, flow
from prefect.utilities.annotations import quote
from prefect_dask import DaskTaskRunner

from archive.extract.budget import EXTRACT_SECONDS, OCR_PAGE_SECONDS, TEXT_PER_BYTE
from archive.ingest import DEFAULT_MAX_FILE_BYTES
from archive.ingest.unpack import DEPTH, EXPANDED_BYTES, MEMBERS, RATIO
from archive.storage import resolve_dest

# Absolute, not relative: Prefect loads a deployment's entrypoint file as a
# script, and the batch worker processes must find archive_flows.ingest by its name.
from archive_flows.ingest import ingest


def _by_name(cls: type) -> type:
    """cls as the module archive_flows.service defines it. A deployment loads this file
    from its path, as a module of another name, while Dask's scheduler and
    workers unpickle classes by their module's name: archive_flows.service they import."""
    import archive_flows.service

    return getattr(archive_flows.service, cls.__name__)


class _PicklableQuote(quote):
    """quote() that comes back from pickling as it went in, as many times as it
    is pickled (the client, the scheduler and the worker each unpickle the task).
    Prefect's own comes back wrapped twice, quote((value,)) (tuple's
    __getnewargs__ meets its one-argument __new__), so on a Dask worker a batch
    would get a 1-tuple instead of its files."""

    __slots__ = ()

    def __reduce__(self):
        return (_by_name(_PicklableQuote), (self.unwrap(),))


class BatchDaskTaskRunner(DaskTaskRunner):
    """prefect-dask's task runner, with quoted parameters that survive the trip to the workers."""

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        parameters = {name: _PicklableQuote(value.unwrap()) if isinstance(value, quote) else value
                      for name, value in parameters.items()}
        return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def __reduce__(self):
        # The flow, and so its task runner, goes with each batch's context to the workers.
        return (copyreg._reconstructor, (_by_name(BatchDaskTaskRunner), object, None), self.__dict__)


def ingest_on(address: str | None) -> Flow:
    """The ingest flow with its batch tasks on the Dask cluster at address
    (tcp://HOST:8786), or as it is (local worker processes) when address is None.

    On a Dask worker no process pool is registered (archive_flows.workers.pool_for), so
    each batch runs in the worker's own process and writes its parts to the
    store itself; only its small summary comes back to the flow. SOURCE and
    DEST must be reachable from the workers under the same names: S3, or
    absolute paths on a shared file system.
    """
    if not address:
        return ingest
    return ingest.with_options(task_runner=BatchDaskTaskRunner(address=address))


def absolute_location(location: str) -> str:
    """s3://... as it is; a local path made absolute, so that a Dask worker in
    another working directory opens the same folder."""
    return location if "://" in location else os.path.abspath(location)


@flow(name="ingest", log_prints=False)
def ingest_deployment(
    source: str,
    dest: str | None = None,
    collection: str | None = None,
    metadata: str | None = None,
    dask_address: str | None = None,
    batch_files: int = 1000,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    workers: int | None = None,
    reuse: bool = True,
    extract_seconds: float = EXTRACT_SECONDS,
    ocr_page_seconds: float = OCR_PAGE_SECONDS,
    text_per_byte: float = TEXT_PER_BYTE,
    container_members: int = MEMBERS,
    container_depth: int = DEPTH,
    container_bytes: int = EXPANDED_BYTES,
    container_ratio: float = RATIO,
) -> dict:
    """Ingest every file under SOURCE into DEST as one committed run (the `ingest` deployment).

    Args:
        source: A folder on the worker's machine (absolute path), or s3://bucket/prefix.
        dest: The store: a folder or s3://bucket/prefix (default: the worker's $ARCHIVE_DEST, else ./archive-store).
        collection: Collection name recorded on every document.
        metadata: A metadata.csv (Dublin Core) to use instead of SOURCE/metadata.csv.
        dask_address: Scheduler of an existing Dask cluster (tcp://HOST:8786) to run the batches on;
            empty: worker processes on the Prefect worker's machine.
        batch_files: Files per batch task.
        max_file_bytes: Larger files are kept but quarantined as too-large.
        workers: Local worker processes for the batches (default: one per core); not used with dask_address.
        reuse: Find the passages the new documents share with each other and with the archive (text reuse),
            committed with the run; off, `archive reuse` catches up later.
        extract_seconds: Seconds extracting one file's text may take, OCR included; over it, too-costly.
        ocr_page_seconds: Seconds OCR (or rendering for OCR) may take a page; over it, too-costly.
        text_per_byte: Characters of text a file may give a byte of its size (at least 100,000); over it,
            too-costly.
        container_members: Members a file of the source may unpack to, containers within it included; over it,
            the container is quarantined container-too-large.
        container_depth: Containers within containers (a ZIP in a ZIP is 2); deeper, container-too-deep.
        container_bytes: Bytes the members of a file of the source may expand to; over it, container-too-large.
        container_ratio: A ZIP member's size over its compressed size; over it, container-too-large.
    """
    # The run itself is the ingest flow, as a subflow: the same artifacts and
    # manifest as from `archive ingest`, and it knows the deployment that started it.
    return ingest_on(dask_address)(
        source=absolute_location(source),
        dest=absolute_location(resolve_dest(dest)),
        collection=collection,
        max_file_bytes=max_file_bytes,
        batch_files=batch_files,
        metadata=os.path.abspath(metadata) if metadata else None,
        # On Dask the batches run on the cluster: a local process pool would only sit idle.
        workers=1 if dask_address else workers,
        reuse=reuse,
        extract_seconds=extract_seconds,
        ocr_page_seconds=ocr_page_seconds,
        text_per_byte=text_per_byte,
        container_members=container_members,
        container_depth=container_depth,
        container_bytes=container_bytes,
        container_ratio=container_ratio,
    )
