"""Text reuse over every committed document, published as a run of its own (kind reuse)."""

from __future__ import annotations

from dataclasses import asdict

import pyarrow.compute as pc

from . import provenance as ev
from .provenance import RunContext
from .publish import build_manifest, commit_manifest, new_attempt, part_key, write_part
from .read import open_dataset
from .reuse import ReuseParams, ReuseStats, find_reuse
from .store import Store

ROWS_PER_PART = 50_000


def publish_reuse(store: Store, run: RunContext, params: ReuseParams = ReuseParams()) -> dict:
    """Find the passages committed documents share and commit them as the reuse dataset of one run.

    Each reuse run is a complete answer over the documents committed when it
    started; the latest reuse run is the current one (analysts filter on its run_id).
    """
    documents = open_dataset(store, "documents")

    def stream():
        for batch in documents.to_batches(columns=["doc_id", "text"]):
            yield from zip(batch.column("doc_id").to_pylist(), batch.column("text").to_pylist())

    def get_texts(doc_ids):
        table = documents.to_table(columns=["doc_id", "text"], filter=pc.field("doc_id").isin(doc_ids))
        return zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist())

    stats = ReuseStats()
    attempt = new_attempt()
    parts, rows, events, pairs, passages = [], [], [], {}, 0

    def flush(final: bool = False):
        nonlocal rows, events
        if rows and (final or len(rows) >= ROWS_PER_PART):
            parts.append(write_part(store, "reuse", part_key("reuse", run.run_id, len(parts), attempt), rows))
            rows = []
        if events and (final or len(events) >= ROWS_PER_PART):
            parts.append(write_part(store, "events", part_key("events", run.run_id, len(parts), attempt), events))
            events = []

    for row in find_reuse(stream(), run_id=run.run_id, params=params, get_texts=get_texts, stats=stats):
        rows.append(row)
        passages += 1
        pair = (row["doc_id_a"], row["doc_id_b"])
        if pair not in pairs:
            pairs[pair] = row["similarity"]
            events.append(run.event(ev.METADATA_EXTRACTION, ev.SUCCESS,
                                    f"shares text with document {row['doc_id_b']} (pair similarity {row['similarity']:.3f})",
                                    sha256=row["doc_id_a"], tool="datasketch MinHash LSH + exact alignment"))
        flush()
    flush(final=True)
    counts = {"documents": stats.documents, "pairs": len(pairs), "passages": passages, "candidate_pairs": stats.candidate_pairs}
    manifest = build_manifest(
        run_id=run.run_id, kind="reuse", collection=None, source=store.url, started_at=run.started_at,
        flow_run_id=run.flow_run_id, started_by=run.started_by, parameters=asdict(params),
        counts=counts, parts=parts)
    return {"run_id": run.run_id, "manifest": commit_manifest(store, manifest), "counts": counts}


def latest_reuse_run(store: Store) -> str | None:
    from .publish import committed_manifests

    runs = [m["run_id"] for m in committed_manifests(store) if m["kind"] == "reuse"]
    return runs[-1] if runs else None


def shared_with(store: Store, doc_id: str) -> list[dict]:
    """The documents doc_id shares passages with, per the latest reuse run."""
    run = latest_reuse_run(store)
    if run is None:
        return []
    table = open_dataset(store, "reuse", runs=[run]).to_table(
        filter=(pc.field("doc_id_a") == doc_id) | (pc.field("doc_id_b") == doc_id))
    found: dict[str, dict] = {}
    for row in table.to_pylist():
        other = row["doc_id_b"] if row["doc_id_a"] == doc_id else row["doc_id_a"]
        entry = found.setdefault(other, {"doc_id": other, "similarity": row["similarity"], "passages": 0, "words": 0, "run_id": run})
        entry["passages"] += 1
        entry["words"] += row["passage_words"]
    return sorted(found.values(), key=lambda e: -e["similarity"])
