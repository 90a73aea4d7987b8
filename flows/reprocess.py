"""The reprocess flow: texts re-derived from the kept originals in batches, then one commit. The work lives in
archive/catalogue/reprocess.py."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from archive.catalogue.reprocess import ReprocessSummary, commit_reprocess, reprocess_batch, select_documents
from archive.extract.budget import EXTRACT_SECONDS, OCR_PAGE_SECONDS, TEXT_PER_BYTE, Budgets
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.reuse import ReuseParams, RunReuse, find_run_reuse, reuse_parameters
from archive.storage import open_store, resolve_dest

from . import progress
from .context import is_transient, started_by


@task(name="reprocess-batch", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient,
      cache_policy=NO_CACHE)
def reprocess_batch_task(dest: str, run: RunContext, index: int, documents: list[dict],
                         budgets: Budgets) -> ReprocessSummary:
    """One batch of documents: their texts re-derived, the new versions written as parts (uncommitted)."""
    return reprocess_batch(open_store(dest), run, index, documents, budgets)


@task(name="commit-reprocess", retries=1, retry_delay_seconds=2, retry_condition_fn=is_transient,
      cache_policy=NO_CACHE)
def commit_reprocess_task(dest: str, run: RunContext, summaries: list[ReprocessSummary], parameters: dict,
                          reuse: RunReuse | None = None) -> dict:
    return commit_reprocess(open_store(dest), run, summaries, parameters, reuse)


@task(name="reuse", retries=1, retry_delay_seconds=2, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def reuse_task(dest: str, run: RunContext, summaries: list[ReprocessSummary], params: ReuseParams) -> RunReuse:
    """Text reuse of the new text versions against each other and the archive's current texts."""
    document_parts = [p.key for s in sorted(summaries, key=lambda s: s.index) for p in s.parts
                      if p.dataset == "documents"]
    return find_run_reuse(open_store(dest), run, document_parts, params, first_index=len(summaries) + 1,
                          rederived=True)


@flow(name="reprocess", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False)
def reprocess(dest: str | None = None, formats: list[str] | None = None, runs: list[str] | None = None,
              doc_ids: list[str] | None = None, batch_documents: int = 200,
              extract_seconds: float = EXTRACT_SECONDS, ocr_page_seconds: float = OCR_PAGE_SECONDS,
              text_per_byte: float = TEXT_PER_BYTE, reuse: bool = True) -> dict:
    """Re-extract the texts of the current documents (of these formats, runs, doc_ids: all if none given) from
    their kept originals with the current extractors; commit a run of kind reprocess. reuse: find the passages
    the new text versions share with the archive, committed with the run (off: `archive reuse` does it later)."""
    started = time.monotonic()
    dest = resolve_dest(dest)
    store = open_store(dest)
    store.check_writable()
    run = RunContext(new_run_id(), None, store.url, **started_by())
    documents = select_documents(store, list(committed_manifests(store)), formats=formats or (), runs=runs or (),
                                 doc_ids=doc_ids or ())
    budgets = Budgets(seconds=extract_seconds, ocr_page_seconds=ocr_page_seconds, text_per_byte=text_per_byte)
    futures = [reprocess_batch_task.submit(dest, run, index, quote(documents[first:first + batch_documents]),
                                           budgets)
               for index, first in enumerate(range(0, len(documents), batch_documents))]
    summaries, done = [], 0
    for future in as_completed(futures):
        summaries.append(future.result())
        done += summaries[-1].counts["documents"]
        progress.report(done, len(documents), time.monotonic() - started)
    reuse_params = ReuseParams()
    parameters = {"dest": store.url, "formats": formats, "runs": runs, "doc_ids": doc_ids,
                  "batch_documents": batch_documents, "extract_seconds": extract_seconds,
                  "ocr_page_seconds": ocr_page_seconds, "text_per_byte": text_per_byte,
                  "reuse": reuse_parameters(reuse_params) if reuse else None}
    changed = any(s.doc_ids for s in summaries)
    found = reuse_task(dest, run, summaries, reuse_params) if reuse and changed else None
    result = commit_reprocess_task(dest, run, summaries, parameters, found)
    return {**result, "dest": store.url, "seconds": round(time.monotonic() - started, 3)}
