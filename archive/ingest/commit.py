"""A run's commit: settle duplicates across batches and concurrent runs, then write the manifest, under the lock."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import provenance as ev
from ..catalogue.keyindex import CommittedDocuments, DocumentsOnceCommitted, write_indexes
from ..catalogue.settle import settle_records
from ..commitlock import commit_lock
from ..errors import SourceError, StoreError
from ..provenance import RunContext
from ..publish import (
    DamagedManifest,
    PartInfo,
    build_manifest,
    commit_manifest,
    committed_manifest,
    committed_manifests,
    manifest_key,
    new_attempt,
    parquet_options,
    part_key,
    put_part_file,
    write_part,
    write_table_part,
)
from ..records import arrow_schema, json_form, to_table
from ..reuse import RunReuse, settle_run_reuse
from ..storage import Store
from ..tables import follow_after_commit
from .rows import make_duplicates
from .summary import BatchSummary, total_counts

# Rows of a documents part filtered at a time when reconcile rewrites a batch: a few MiB of texts.
REWRITE_BATCH_ROWS = 256


@dataclass(frozen=True)
class CommitResult:
    """What a committed run's manifest says: its key, counts, notes and text-reuse figures; and the runs whose
    manifests were damaged at the commit (left out of its duplicate check)."""

    manifest: str
    counts: dict[str, int]
    notes: list[str]
    reuse: dict | None = None
    damaged: tuple[DamagedManifest, ...] = ()


def commit_run(store: Store, run: RunContext, summaries: list[BatchSummary], *, parameters: dict,
               warnings: list[str], reuse: RunReuse | None = None) -> CommitResult:
    """Settle duplicates across batches and concurrent runs, then write the manifest: the run exists.

    Safe to call again after a lost answer: a run already committed is reported as it stands.

    A run whose manifest is damaged is left out (its documents are not known to the duplicate check, so this run
    may publish them again); a note of the manifest names it.
    """
    # Under the lock, the committed doc_ids looked up here cannot change before the
    # manifest lands: two concurrent runs never both publish a document.
    with commit_lock(store, run.run_id):
        done = committed_manifest(store, run.run_id)
        if done is not None:
            return CommitResult(manifest_key(run.run_id), done["counts"], done.get("notes", []), done.get("reuse"))
        check_reused_originals(store, summaries)
        # What the batches and the reuse step wrote: reconcile and settle may replace some of it with new parts.
        written = written_keys(summaries, reuse)
        damaged: list[DamagedManifest] = []
        manifests = list(committed_manifests(store, damaged=damaged))
        committed = CommittedDocuments(store, manifests)
        notes = [f"{d}; the documents that run published were not known to this run's commit, which may publish "
                 "them again" for d in damaged]
        # (the run's documents looked up together: those committed before are duplicates)
        notes += reconcile(store, run, summaries, committed.among(d for s in summaries for d in s.documents))
        published = {d for s in summaries for d in s.documents}
        # The reuse step's parts, filtered of what reconcile unpublished (and caught up
        # with any run committed since the step looked): no heavy work under the lock.
        settled = settle_run_reuse(store, run, reuse, published) if reuse else None
        # Each record's next version, numbered after every version committed before this run's.
        records = settle_records(store, run, [p for s in sorted(summaries, key=lambda s: s.index) for p in s.parts
                                              if p.dataset == "records"],
                                 manifests, DocumentsOnceCommitted(published, committed), len(summaries))
        counts = {**total_counts(summaries), "updated": records.counts["updated"]}
        run_part = publish_run_events(store, run, len(summaries), counts, warnings, records.events)
        store.flush()
        notes = warnings + notes + (settled.notes if settled else [])
        manifest = build_manifest(
            run_id=run.run_id, kind="ingest", collection=run.collection, source=run.source,
            started_at=run.started_at, flow_run_id=run.flow_run_id, started_by=run.started_by,
            parameters=parameters, counts=counts, notes=notes,
            parts=[p for s in summaries for p in s.parts if p.dataset != "records"] + records.parts + [run_part]
            + (settled.parts if settled else []),
        )
        if settled:
            manifest["reuse"] = settled.figures
        key = commit_manifest(store, manifest, locked=True)
    delete_unlisted(store, manifest, written | set(records.unlisted))
    write_indexes(store, manifest)
    follow_after_commit(store, manifests + [manifest])
    return CommitResult(key, manifest["counts"], notes, manifest.get("reuse"), tuple(damaged))


def written_keys(summaries: Iterable, reuse: RunReuse | None) -> set[str]:
    """The keys of the parts a run's batches (summaries: BatchSummary or ReprocessSummary) and its reuse step wrote,
    before its commit replaces any of them."""
    return {p.key for s in summaries for p in s.parts} | {p.key for p in (reuse.parts if reuse else ())}


def delete_unlisted(store: Store, manifest: dict, written: Iterable[str]) -> None:
    """Remove the parts of written (keys this run wrote) that its committed manifest does not list (replaced at
    commit: a batch rewritten by reconcile, reuse parts settled again, record candidates numbered), so that no
    committed run leaves an unlisted part in its own folder; what a crash or failure here leaves, `archive gc`
    removes and `archive verify` names."""
    listed = {part["key"] for part in manifest["parts"]}
    for key in sorted(set(written) - listed):
        try:
            store.delete(key)
        except (StoreError, OSError):  # (gc's work then)
            pass


def check_reused_originals(store: Store, summaries: list[BatchSummary]) -> None:
    """Fail the commit if an original this run relied on without uploading it is gone.

    A run does not upload an original the store already holds. When that copy
    belongs to no committed run (left by a crashed run), `archive gc` may remove
    it while this run goes on; call this under the commit lock, which gc also
    holds while deleting, so what it finds stays true until the manifest lands.
    """
    sizes = store.sizes(sorted({key for s in summaries for key in s.reused_originals}))
    for key, size in sizes.items():
        if size is None:
            raise StoreError(key, "this run found the original already stored and did not upload it, but it was "
                                  "removed before the commit (archive gc?); nothing was committed: run the ingest "
                                  "again")


def reconcile(store: Store, run: RunContext, summaries: list[BatchSummary], committed: set[str]) -> list[str]:
    """Make each doc_id a document once: a doc_id that two batches of this run
    published, or that another run committed while this one ran, stays only in
    the first place and becomes a duplicate elsewhere. Rewrites only the parts
    of affected batches (new keys; the old ones are never listed). Returns notes.

    Fails if a document a batch left to an earlier batch (archive/claims.py) is not among that batch's documents."""
    by_index = {s.index: s for s in summaries}
    published: dict[int, set[str]] = {}  # (made for the batches named only)
    for summary in summaries:
        for doc_id, index in summary.earlier_documents.items():
            if index not in published:
                published[index] = set(by_index[index].documents) if index in by_index else set()
            if doc_id not in published[index]:
                # Only if the source changed between attempts of a batch: the copy was not published anywhere.
                raise SourceError(f"batch {summary.index} found document {doc_id} published by batch {index}, "
                                  f"which no longer publishes it (did a file change during the run?); nothing was "
                                  f"committed: run the ingest again")
    owner: dict[str, int] = {}
    drop: dict[int, dict[str, str]] = {}
    for summary in sorted(summaries, key=lambda s: s.index):
        for doc_id in summary.documents:
            if doc_id in committed:
                drop.setdefault(summary.index, {})[doc_id] = "duplicate-of-committed"
            elif doc_id in owner:
                drop.setdefault(summary.index, {})[doc_id] = "duplicate-in-run"
            else:
                owner[doc_id] = summary.index
    for index, doc_ids in drop.items():
        _rewrite_batch(store, run, by_index[index], doc_ids)
        # One batch at a time, its Arrow buffers handed back before the next: rewriting
        # two at a time was faster but raised the run's peak memory.
        pa.default_memory_pool().release_unused()
    return [f"batch {index}: {len(doc_ids)} document(s) turned out to be duplicates at commit and were unpublished"
            for index, doc_ids in drop.items()]


def _rewrite_batch(store: Store, run: RunContext, summary: BatchSummary, doc_ids: dict[str, str]) -> None:
    attempt = new_attempt()
    old = {p.dataset: p for p in summary.parts}
    documents_key = part_key("documents", run.run_id, summary.index, attempt)

    def table(dataset: str) -> pa.Table | None:
        return pq.read_table(io.BytesIO(store.get_bytes(old[dataset].key))) if dataset in old else None

    # Documents (their texts are most of a batch's bytes) are filtered a record batch at a time, events (six or
    # so a file) as an Arrow table, neither made Python rows; the files rows change, so they are rows.
    dropped = pa.array(sorted(doc_ids), pa.string())
    parts = [p for p in summary.parts if p.dataset not in ("documents", "files", "events")]
    if "documents" in old:
        written = _filtered_part(store, "documents", old["documents"].key, documents_key, "doc_id", dropped)
        parts.extend([written] if written else [])
    events = table("events")
    if events is not None:
        publication = pc.equal(events["event_type"], ev.PUBLICATION)
        if "documents" in old:
            moved = pc.replace_substring(events["detail"], old["documents"].key, documents_key)
            events = events.set_column(events.schema.get_field_index("detail"), "detail",
                                       pc.if_else(publication, moved, events["detail"]))
        unpublished = pc.fill_null(pc.and_(publication, pc.is_in(events["object_sha256"], value_set=dropped)),
                                   False)
        events = events.filter(pc.invert(unpublished))
    files_table = table("files")
    files = [] if files_table is None else [json_form(r) for r in files_table.to_pylist()]
    deduplicated = make_duplicates(run, summary, files, {
        doc_id: (reason, "same bytes as a document another run committed while this one ran"
                 if reason == "duplicate-of-committed"
                 else "same bytes as a document another batch of this run published")
        for doc_id, reason in doc_ids.items()}, "; unpublished at commit")
    if deduplicated:
        added = to_table("events", deduplicated)
        events = added if events is None else pa.concat_tables([events.cast(added.schema), added])
    if events is not None and events.num_rows:
        parts.append(write_table_part(store, "events", part_key("events", run.run_id, summary.index, attempt), events))
    if files:
        parts.append(write_part(store, "files", part_key("files", run.run_id, summary.index, attempt), files))
    summary.parts = parts


def _filtered_part(store: Store, dataset: str, key: str, new_key: str, column: str,
                   dropped: pa.Array) -> PartInfo | None:
    """The part at key without its rows whose column is among dropped, written at new_key a record batch at a
    time through a temporary file (None if no row is left)."""
    schema = arrow_schema(dataset)
    rows = 0
    spool = tempfile.NamedTemporaryFile(prefix="archive-part-", suffix=".parquet", delete=False)
    try:
        with spool, store.arrow_filesystem().open_input_file(store.arrow_path(key)) as source:
            with pq.ParquetWriter(spool, schema, **parquet_options(schema)) as writer:
                for batch in pq.ParquetFile(source).iter_batches(batch_size=REWRITE_BATCH_ROWS):
                    kept = batch.filter(pc.invert(pc.is_in(batch[column], value_set=dropped)))
                    if kept.num_rows:
                        writer.write_batch(kept.cast(schema))
                        rows += kept.num_rows
        return put_part_file(store, dataset, new_key, spool.name, rows) if rows else None
    finally:
        os.unlink(spool.name)


def publish_run_events(store: Store, run: RunContext, index: int, counts: dict[str, int],
                       warnings: Iterable[str] = (), settled: Iterable[dict] = ()) -> PartInfo:
    """The run's own events, written as the last events part: who or what started
    it, and what it published (they concern the run, not one object), and the
    events made at commit (settled: the records' new versions)."""
    who = run.started_by
    starter = (f"deployment {who['deployment']}" if who.get("deployment")
               else f"user {who.get('user')} on host {who.get('host')}")
    events = [
        run.event(ev.INGESTION, ev.SUCCESS, f"run {run.run_id} of {run.source} started by {starter} at "
                                            f"{run.started_at}" + (f" for collection {run.collection}"
                                                                   if run.collection else "")),
        *(run.event(ev.VALIDATION, ev.WARNING, warning) for warning in warnings),
        *settled,
        run.event(ev.PUBLICATION, ev.SUCCESS, "run committed: " + ", ".join(f"{v} {k}" for k, v in counts.items())),
    ]
    return write_part(store, "events", part_key("events", run.run_id, index, new_attempt()), events)
