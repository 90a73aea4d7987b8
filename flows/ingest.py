"""The ingest flow: discover -> one task per batch -> commit the manifest. The work lives in archive/."""

from __future__ import annotations

import os
import pickle
import time
import zlib
from dataclasses import replace

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from archive.catalogue.keyindex import CommittedDocuments
from archive.catalogue.withdraw import skip_withdrawn, withdrawn_paths
from archive.errors import ConfigurationError
from archive.extract.budget import EXTRACT_SECONDS, OCR_PAGE_SECONDS, TEXT_PER_BYTE, Budgets
from archive.fixity import NotRegularFileError, open_for_reading
from archive.ingest import (
    DEFAULT_MAX_FILE_BYTES,
    BatchSummary,
    CommitResult,
    Descriptions,
    IngestOptions,
    commit_run,
    load_descriptions,
    process_batch,
    store_sidecar,
    unmatched_rows,
)
from archive.ingest.unpack import DEPTH, EXPANDED_BYTES, MEMBERS, RATIO, SEPARATOR, ContainerLimits
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.reuse import ReuseParams, RunReuse, find_run_reuse, reuse_parameters
from archive.sources import FileRef, batches, open_source, overlap
from archive.storage import open_store, resolve_dest

from . import progress
from . import workers as worker_pool
from .artifacts import ProgressBar, publish_ingest_artifacts
from .context import is_transient, started_by


class Packed:
    """What the flow holds for a batch until its task runs (its files, its share of the sidecar): pickled and
    compressed, a few bytes a file or a sidecar row instead of a few hundred (every batch of a run is submitted at
    once, so that its total is known)."""

    def __init__(self, value):
        self.data = zlib.compress(pickle.dumps(value, pickle.HIGHEST_PROTOCOL), 1)

    def unpack(self):
        return pickle.loads(zlib.decompress(self.data))


@task(name="process-batch", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient,
      cache_policy=NO_CACHE)
def process_batch_task(dest: str, source: str, run: RunContext, index: int, packed: Packed, known,
                       options: IngestOptions, packed_descriptions: Packed) -> BatchSummary:
    """One batch: its parts are written to the store by the task itself; only a summary comes back."""
    refs: list[FileRef] = packed.unpack()
    descriptions: Descriptions = packed_descriptions.unpack()
    pool = worker_pool.pool_for(run.run_id)
    if pool is not None:
        return worker_pool.run_in_pool(pool, dest, source, run, index, refs, options, descriptions)
    return process_batch(open_store(dest), open_source(source), run, index, refs, known=known, options=options,
                         descriptions=descriptions, claims=worker_pool.claims_for(run.run_id))


@task(name="reuse", retries=1, retry_delay_seconds=2, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def reuse_task(dest: str, run: RunContext, summaries: list[BatchSummary], params: ReuseParams,
               workers: int = 1) -> RunReuse:
    """Text reuse of this run's new documents against each other and the archive's band hashes:
    the heavy part, before the commit lock; its parts are written, uncommitted, and only keys come back.
    The band hashes are the batches' (made in the workers); the pairs are aligned in the run's worker pool."""
    ordered = sorted(summaries, key=lambda s: s.index)
    document_parts = [p.key for s in ordered for p in s.parts if p.dataset == "documents"]
    return find_run_reuse(open_store(dest), run, document_parts, params, first_index=len(summaries) + 1,
                          band_parts=[p for s in ordered for p in s.reuse_bands],
                          sketched=[s.reuse_stats for s in ordered], executor=worker_pool.pool_for(run.run_id),
                          workers=workers)


@task(name="commit", retries=1, retry_delay_seconds=2, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def commit_task(dest: str, run: RunContext, summaries: list[BatchSummary], parameters: dict, warnings: list[str],
                reuse: RunReuse | None = None) -> CommitResult:
    """Settle duplicates across batches and concurrent runs, then write the manifest: the run exists."""
    return commit_run(open_store(dest), run, summaries, parameters=parameters, warnings=warnings, reuse=reuse)


@flow(name="ingest", task_runner=ThreadPoolTaskRunner(max_workers=max(2, os.cpu_count() or 1)), log_prints=False)
def ingest(
    source: str,
    dest: str | None = None,
    collection: str | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    batch_files: int = 1000,
    batch_bytes: int = 64 << 20,
    metadata: str | None = None,
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
    """Ingest every file under SOURCE (a folder or s3://bucket/prefix) into DEST.

    metadata: a metadata.csv to use instead of the one at the top of SOURCE.
    extract_seconds, ocr_page_seconds, text_per_byte: what extracting one file may cost (seconds a file, seconds a
        page of OCR, characters of text a byte of the file, at least 100,000); over it, quarantined too-costly.
    container_members, container_depth, container_bytes, container_ratio: what unpacking a ZIP, TAR, mbox or
        message may cost (members and expanded bytes under one file of the source, containers within containers,
        a member's compression ratio); over it, the container is quarantined container-too-large (-too-deep).
    workers: processes for the batches (default: one per core; 1 runs them in this process).
    reuse: find the passages the new documents share with each other and with committed documents (text reuse),
        committed with the run; off, the run publishes no band hashes and `archive reuse` catches up later.
    """
    started = time.monotonic()
    budgets = Budgets(seconds=extract_seconds, ocr_page_seconds=ocr_page_seconds, text_per_byte=text_per_byte)
    unpacking = ContainerLimits(members=container_members, depth=container_depth, expanded_bytes=container_bytes,
                                ratio=container_ratio)
    dest = resolve_dest(dest)
    apart = overlap(source, dest)
    if apart:  # (before anything is written to DEST)
        raise ConfigurationError(apart)
    store = open_store(dest)
    store.check_writable()
    src = open_source(source)
    reuse_params = ReuseParams()
    options = IngestOptions(max_file_bytes=max_file_bytes, batch_files=batch_files, batch_bytes=batch_bytes,
                            budgets=budgets, containers=unpacking,
                            reuse=reuse_params if reuse else None)  # (band hashes made in the batches)
    run = RunContext(new_run_id(), collection, src.url, **started_by())
    manifests = list(committed_manifests(store))
    known = CommittedDocuments(store, manifests)  # (looked up by hash prefix: archive/catalogue/keyindex.py)
    withdrawn = withdrawn_paths(store, manifests)  # skipped, never read again
    options = replace(options, withdrawn_members={p: why for p, why in withdrawn.items() if SEPARATOR in p})
    warnings = []
    if metadata:
        try:
            with open_for_reading(metadata) as stream:  # (a regular file only: no pipe, no device)
                explicit = stream.read()
        except NotRegularFileError as exc:
            raise ConfigurationError(f"--metadata {metadata}: {exc.strerror}") from None
        descriptions = load_descriptions(src, explicit=explicit, explicit_name=metadata)
        warnings.append(f"sidecar metadata {metadata} (outside the source) kept at {store_sidecar(store, explicit)}")
    else:
        descriptions = load_descriptions(src, [ref for ref in [src.root_file("metadata.csv")] if ref])
    if descriptions.error:
        warnings.append(f"sidecar not used: {descriptions.error}")

    workers = workers or os.cpu_count() or 1
    futures, total = [], 0
    summaries, done = [], 0
    bar = ProgressBar(run.run_id)
    with worker_pool.batch_workers(run.run_id, workers, known):
        for index, refs in enumerate(batches(skip_withdrawn(src.iter_files(), withdrawn), batch_files, batch_bytes)):
            total += len(refs)
            # quote(): the payloads are plain data, no futures inside; spare Prefect walking them.
            share = Packed(descriptions.for_batch(ref.path for ref in refs))
            futures.append(process_batch_task.submit(dest, source, run, index, quote(Packed(refs)), quote(known),
                                                     options, quote(share)))
        warnings.extend(unmatched_rows(descriptions, ()))  # (each batch's share of the sidecar counts as seen)
        for future in as_completed(futures):
            summary = future.result()  # a failed batch fails the run here: nothing is committed
            summaries.append(summary)
            done += sum(summary.counts.values()) - summary.members  # (the source's files, not their members)
            progress.report(done, total, time.monotonic() - started)
            bar.update(done, total)
        reuse_started = time.monotonic()  # (in the batches' pool: its workers align the candidate pairs)
        found = reuse_task(dest, run, summaries, reuse_params, workers) if reuse else None
        reuse_seconds = time.monotonic() - reuse_started

    parameters = {"source": source, "dest": store.url, "collection": collection, "max_file_bytes": max_file_bytes,
                  **budgets.parameters(),
                  **unpacking.parameters(), "batch_files": batch_files, "batch_bytes": batch_bytes,
                  "metadata": metadata, "workers": workers, "reuse": reuse_parameters(reuse_params) if reuse else None}
    committed = commit_task(dest, run, summaries, parameters, warnings, found)
    timings: dict[str, float] = {}
    for s in summaries:
        for stage, seconds in s.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    if reuse:
        timings["reuse"] = reuse_seconds  # in the flow, after the batches (wall seconds, not summed over workers)
    result = {
        "run_id": run.run_id,
        "status": "committed",
        "dest": store.url,
        "manifest": committed.manifest,
        "counts": committed.counts,
        "problems": [vars(p) for s in sorted(summaries, key=lambda s: s.index) for p in s.problems],
        "notes": committed.notes,
        "damaged_runs": [{"run_id": d.run_id, "key": d.key, "damage": d.damage} for d in committed.damaged],
        "reuse": committed.reuse,
        "batches": len(summaries),
        "bytes": sum(s.bytes_read for s in summaries),
        "seconds": round(time.monotonic() - started, 3),
        "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    publish_ingest_artifacts(result)
    return result
