"""Re-derivation: texts extracted again from the kept originals (no source needed) with the current extractors and
settings, after an OCR or extractor upgrade. A document whose text comes out the same is left as it is; one whose
text changed gets a new text version (a documents row of the reprocess run, the same doc_id: the current view keeps
the latest, archive/catalogue/view.py), and each current record of it whose description the new text changes gets a
"rederived" version, settled at commit like any other (settle.py). Events name the old and new tools and versions.

Run as batches of documents (reprocess_batch, a Prefect task each in flows/reprocess.py), then one commit under the
commit lock (commit_reprocess): a run of kind reprocess."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.compute as pc
import pyarrow.dataset as ds

from .. import provenance as ev
from ..commitlock import commit_lock
from ..describe import describe_text
from ..errors import NotFoundError, ObjectNotFoundError
from ..extract.budget import Budgets
from ..fixity import sha256_hex
from ..identify import identify
from ..ingest import stages
from ..ingest.commit import delete_unlisted, written_keys
from ..provenance import RunContext
from ..publish import (
    PartInfo,
    build_manifest,
    commit_manifest,
    committed_manifest,
    committed_manifests,
    manifest_key,
    new_attempt,
    part_key,
    write_part,
)
from ..records import utc_now
from ..reuse import RunReuse, settle_run_reuse
from ..storage import Store, object_key
from ..tables import follow_after_commit
from . import view
from .identity import as_json, describe, description_sha256, elements, from_json
from .keyindex import DocumentsOnceCommitted, write_indexes
from .settle import settle_records

# --format: the media types each names (a prefix ends with /).
FORMATS = {"text": ("text/plain",), "html": ("text/html", "application/xhtml+xml"), "pdf": ("application/pdf",),
           "image": ("image/",)}
SELECTED = ["doc_id", "text_sha256", "run_id", "collection", "source_path", "media_type", "extractor",
            "extractor_version", "page_image_sha256"]


def select_documents(store: Store, manifests: list[dict], *, formats=(), runs=(), doc_ids=()) -> list[dict]:
    """The current documents to re-derive (without their texts): of these formats, published by these runs, these
    doc_ids (each filter only if given). NotFoundError for a run or doc_id the archive does not have."""
    from ..read import dataset_of

    known = {m["run_id"] for m in manifests}
    unknown = sorted(set(runs) - known)
    if unknown:
        raise NotFoundError(f"no committed run {', '.join(unknown)} in {store.url}")
    where = []
    if formats:
        prefixes = [p for f in formats for p in FORMATS[f]]
        matches = [pc.starts_with(ds.field("media_type"), pattern=p) if p.endswith("/")
                   else ds.field("media_type") == p for p in prefixes]
        where.append(_any(matches))
    if runs:
        published = dataset_of(store, manifests, "documents", runs=list(runs), verify=False).to_table(
            columns=["doc_id"])["doc_id"]
        where.append(ds.field("doc_id").isin(pc.unique(published)))
    if doc_ids:
        where.append(view.among("doc_id", doc_ids))
    current = dataset_of(store, manifests, "documents")
    table = current.to_table(columns=SELECTED, filter=_every(where) if where else None)
    missing = sorted(set(doc_ids) - set(table["doc_id"].to_pylist()))
    if missing:
        raise NotFoundError(f"no current document {', '.join(missing)} (of the formats asked for) in {store.url}")
    return sorted(table.to_pylist(), key=lambda d: d["doc_id"])


def _any(exprs):
    out = exprs[0]
    for expr in exprs[1:]:
        out = out | expr
    return out


def _every(exprs):
    out = exprs[0]
    for expr in exprs[1:]:
        out = out & expr
    return out


@dataclass
class ReprocessSummary:
    """What a batch of re-derivations returns: counts, its parts, notes; never the texts."""

    index: int
    counts: dict[str, int] = field(default_factory=lambda: {"documents": 0, "changed": 0, "unchanged": 0,
                                                            "failed": 0})
    parts: list[PartInfo] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)  # the documents given a new text
    notes: list[str] = field(default_factory=list)


def reprocess_batch(store: Store, run: RunContext, index: int, documents: list[dict],
                    budgets: Budgets = Budgets()) -> ReprocessSummary:
    """Re-derive each document's text from its original; write the new text versions, their events and the record
    candidates as parts of the run (uncommitted)."""
    summary = ReprocessSummary(index)
    manifests = list(committed_manifests(store))
    records = _current_records(store, manifests, [d["doc_id"] for d in documents])
    rows, events, candidates = [], [], []
    attempt = new_attempt()
    documents_key = part_key("documents", run.run_id, index, attempt)
    for doc in documents:
        summary.counts["documents"] += 1
        doc_id = doc["doc_id"]
        try:
            data = store.get_bytes(object_key(doc_id))
        except ObjectNotFoundError:
            summary.counts["failed"] += 1
            summary.notes.append(f"document {doc_id}: its original is not in the store (purged?); its text stays")
            continue
        fmt = identify(data)
        extracted = stages.extract_text(data, fmt, budgets)
        if not isinstance(extracted, stages.Quarantine):
            extracted = stages.normalised(extracted)
        if isinstance(extracted, stages.Quarantine):
            summary.counts["failed"] += 1
            detail = f"text not re-derived ({extracted.reason}: {extracted.detail}); the current text stays"
            summary.notes.append(f"document {doc_id}: {detail}")
            events.append(run.event(ev.NORMALIZATION, ev.FAILURE, detail, sha256=doc_id, path=doc["source_path"]))
            continue
        extracted, text = extracted
        del data
        if sha256_hex(text.encode("utf-8")) == doc["text_sha256"]:
            summary.counts["unchanged"] += 1
            continue
        description = describe_text(text)
        publisher = records.get(doc["source_path"])
        stated = from_json(publisher["stated"]) if publisher else None
        values, _ = stages.dublin_core(description, extracted, stated)
        document = stages.document_record(sha256=doc_id, run_id=run.run_id, collection=doc["collection"],
                                          path=doc["source_path"], fmt=fmt, extracted=extracted, text=text,
                                          description=description, values=values,
                                          page_image_sha256=doc["page_image_sha256"])
        invalid = stages.invalid_document(document)
        if invalid:
            summary.counts["failed"] += 1
            summary.notes.append(f"document {doc_id}: the re-derived record is invalid ({invalid.detail}); the "
                                 "current text stays")
            continue
        tools = (f"{doc['extractor']} {doc['extractor_version']} -> {extracted.extractor} "
                 f"{extracted.extractor_version}")
        change = f"text re-derived from the kept original ({tools}): text_sha256 {doc['text_sha256']} -> " \
                 f"{document['text_sha256']}, {document['char_count']:,} characters"
        events.append(run.event(ev.NORMALIZATION, ev.SUCCESS, change, sha256=doc_id, path=doc["source_path"],
                                tool=f"{extracted.extractor} {extracted.extractor_version}"))
        events.append(run.event(ev.PUBLICATION, ev.SUCCESS, f"text version of document {doc_id} published in "
                                                            f"{documents_key}", sha256=doc_id, path=doc["source_path"]))
        rows.append(document)
        summary.counts["changed"] += 1
        summary.doc_ids.append(doc_id)
        derived = elements(stages.dublin_core(description, extracted, None)[0])
        candidates += [_candidate(run, record, derived, f"text re-derived ({tools})")
                       for record in records.values() if record["doc_id"] == doc_id]
    for dataset, written in (("documents", rows), ("events", events), ("records", candidates)):
        if written:
            key = documents_key if dataset == "documents" else part_key(dataset, run.run_id, index, attempt)
            summary.parts.append(write_part(store, dataset, key, written))
    store.flush()
    return summary


def _current_records(store: Store, manifests: list[dict], doc_ids: list[str]) -> dict[str, dict]:
    """path -> the current (not withdrawn) record of each path that points at one of doc_ids."""
    ids = view.record_rows(store, manifests, view.among("doc_id", doc_ids), ["record_id"])["record_id"].unique()
    latest = view.latest(view.record_rows(store, manifests, view.among("record_id", ids)))
    return {r["path"]: r for r in latest.to_pylist()
            if r["change"] != view.WITHDRAWN and r["doc_id"] in set(doc_ids)}


def _candidate(run: RunContext, record: dict, derived: dict, reason: str) -> dict:
    """A record candidate with the re-derived description; its statement is the record's current one at commit."""
    values = describe(derived, from_json(record["stated"]))
    return {**record, **values, "version": 0, "run_id": run.run_id, "change": "rederived", "changed_fields": [],
            "reason": reason, "stated": None, "sidecar": None, "derived": as_json(derived),
            "description_sha256": description_sha256(values), "recorded_at": utc_now()}


def commit_reprocess(store: Store, run: RunContext, summaries: list[ReprocessSummary], parameters: dict,
                     reuse: RunReuse | None = None) -> dict:
    """Commit the re-derivations as a run of kind reprocess: the new text versions, the records' rederived
    versions numbered under the commit lock, and (reuse, from find_run_reuse(..., rederived=True)) the passages
    the new texts share with the archive. A retried commit whose manifest landed returns it."""
    summaries = sorted(summaries, key=lambda s: s.index)
    with commit_lock(store, run.run_id):
        done = committed_manifest(store, run.run_id)
        if done is None:
            manifests = list(committed_manifests(store))
            changed = {d for s in summaries for d in s.doc_ids}
            settled = settle_run_reuse(store, run, reuse, changed) if reuse else None
            records = settle_records(store, run, [p for s in summaries for p in s.parts if p.dataset == "records"],
                                     manifests, DocumentsOnceCommitted(changed), len(summaries),
                                     rederived=True)
            counts = {name: sum(s.counts[name] for s in summaries) for name in ("documents", "changed", "unchanged",
                                                                                 "failed")}
            counts["updated"] = records.counts["updated"]
            notes = [note for s in summaries for note in s.notes] + (settled.notes if settled else [])
            events = [*records.events, run.event(ev.PUBLICATION, ev.SUCCESS, "reprocess run committed: " + ", ".join(
                f"{v} {k}" for k, v in counts.items()))]
            run_part = write_part(store, "events", part_key("events", run.run_id, len(summaries), new_attempt()),
                                  events)
            done = build_manifest(
                run_id=run.run_id, kind="reprocess", collection=None, source=store.url, started_at=run.started_at,
                flow_run_id=run.flow_run_id, started_by=run.started_by, parameters=parameters, counts=counts,
                parts=[p for s in summaries for p in s.parts if p.dataset != "records"] + records.parts + [run_part]
                + (settled.parts if settled else []),
                notes=notes[:1000])
            if settled:
                done["reuse"] = settled.figures
            commit_manifest(store, done, locked=True)
            # What the batches and the reuse step wrote that the manifest does not list (replaced at commit).
            delete_unlisted(store, done, written_keys(summaries, reuse) | set(records.unlisted))
            write_indexes(store, done)
    follow_after_commit(store)
    return {"run_id": run.run_id, "manifest": manifest_key(run.run_id), "counts": done["counts"],
            "notes": done.get("notes", []), "reuse": done.get("reuse")}
