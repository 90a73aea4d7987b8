"""The reuse step of an ingest run: its new documents against the archive's band hashes, settled at commit."""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..catalogue.view import text_versions
from ..provenance import RunContext
from ..publish import PartInfo, committed_manifests, new_attempt
from ..read import open_dataset
from ..records import REUSE_BANDS, arrow_schema
from ..storage import Store
from ..timing import StageTimer
from .bands import BAND_BATCH, _band_parts, _BandWriter, _batches, _RowWriter, _scan_bands, _sketched
from .candidates import HashFilter
from .pairs import PairKeys
from .params import ReuseParams, ReuseStats
from .search import FRESH, OURS, _align_pairs, _load_texts, _Search, _Texts
from .sketch import band_scheme


@dataclass
class RunReuse:
    """What an ingest run's reuse step hands its commit: keys and counts, never rows."""

    run_id: str
    params: ReuseParams
    scheme: str
    document_parts: list[str]  # this run's (uncommitted) documents parts the texts were read from
    documents: list[str]  # doc_ids of this run's new documents, as the step saw them
    seen_runs: list[str]  # committed runs whose band hashes the step has compared with this run's
    parts: list[PartInfo] = field(default_factory=list)  # reuse, reuse_bands and events parts, uncommitted
    stats: dict = field(default_factory=dict)
    next_index: int = 0
    texts: dict[str, str] = field(default_factory=dict)  # of a reprocess run: doc_id -> its new text_sha256


@dataclass
class SettledReuse:
    """The step's parts and figures as the manifest lists them, once settled under the commit lock."""

    parts: list[PartInfo]
    figures: dict
    notes: list[str]
    caught_up: list[str] = field(default_factory=list)  # runs committed after the step looked, compared under the lock


def find_run_reuse(store: Store, run: RunContext, document_parts: list[str], params: ReuseParams = ReuseParams(), *,
                   first_index: int = 0, workdir: str | None = None, rederived: bool = False,
                   band_parts: list[PartInfo] | None = None, sketched: Iterable[dict] = (),
                   executor: Executor | None = None, workers: int = 2) -> RunReuse:
    """The reuse step of an ingest run, before its commit: the heavy part, outside the commit lock.

    rederived: the run is a reprocess run, its documents new text versions of committed documents:
    the committed band hashes of their older texts are not compared with (nor are those of any text a
    committed re-derivation replaced, in every run).

    Reads this run's new documents from its uncommitted documents parts,
    computes their band hashes (document_bands) and writes them as this run's
    reuse_bands parts; or, with band_parts, takes the reuse_bands parts the
    run's batches wrote (sketch_batch, in the batch workers: sketched are the
    figures each returned) and reads only their hashes. With executor (a
    process pool of about workers processes), the candidate pairs are aligned
    in its processes (parallel.aligned_pairs). It streams the reuse_bands parts of every committed run
    with the same band scheme, part by part, keeping the rows whose hash this
    run's documents have; pairs (among this run's documents, and between them
    and committed ones) whose rows share a hash, at least one of the two rows
    from an indexed window; aligns each pair exactly and writes the reuse rows
    and one event per pair of documents as parts of this run. Runs committed
    while it worked are caught up with before it returns (settle_run_reuse
    does the same, under the lock, for any committed after that).

    Only pairs with at least one document of this run are written: pairs of
    committed documents were found by the runs that committed them (or by a
    reuse run). Committed documents without band hashes of this scheme (runs
    before band hashes existed, or run with reuse off) are not seen until
    `archive reuse` computes theirs.

    Memory: bounded by settings, not by the run or the archive: a HashFilter
    of this run's band hashes (FILTER_BITS), one record batch of a part at a
    time, and the grouping, on local disk a partition at a time, of this
    run's rows and the committed rows the filter let through (see
    publish_reuse for the bound). Reading is what grows
    with the archive: every committed reuse_bands part of the scheme, once.
    bench/reuse_scale.py measures both (BENCHMARKS.md, "Text reuse at scale").
    One document's share is bounded by params.max_text_chars, whatever its
    length: its searched_text is sketched and aligned, never the rest; a long
    text is only read whole, from its part (about 2.5 times its size, for the
    moment it takes). bench/large_text.py measures that ("One long text").
    """
    scheme = band_scheme(params)
    stats = ReuseStats()
    attempt = new_attempt()
    rows_out = _RowWriter(store, run, attempt, first_index)
    manifests = [m for m in committed_manifests(store) if m["run_id"] != run.run_id]
    texts = _Texts(manifests, own=(run.run_id, document_parts))
    current = text_versions(store, manifests)
    own_texts: dict[str, str] = {}
    step = RunReuse(run.run_id, params, scheme.name, list(document_parts), [], [m["run_id"] for m in manifests])
    with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
        search = _Search(os.path.join(tmp, "run"), restrict="ours", max_bucket=params.max_bucket_texts)
        wanted = HashFilter()
        if band_parts is None:
            _sketch_own(store, run, document_parts, params, stats, step, search, wanted)
        else:
            _read_own(store, run, band_parts, sketched, stats, step, search, wanted)
        if rederived:
            own_texts.update(_own_texts(store, step))
        current = current.including(run.run_id, own_texts)
        step.texts = own_texts
        if wanted.added:
            with StageTimer(stats.timings, "lsh"):
                matched = _scan_bands(store, _band_parts(manifests, scheme.name), wanted,
                                      lambda batch, run_id: search.add_rows(batch, source=run_id), current)
                stats_extra = {"committed_band_rows_matched": matched}
                search.find_pairs(executor, workers)
            with StageTimer(stats.timings, "fetch"):
                _load_texts(search, store, texts, params)
            _align_pairs(search, run.run_id, params, stats, rows_out.add, executor=executor, workers=workers)
        else:
            stats_extra = {"committed_band_rows_matched": 0}
        search.close()
        step.parts.extend(rows_out.close())
        step.next_index = max(rows_out.index.values())
        step.stats = _step_stats(stats, rows_out, stats_extra)
        # Runs committed while this one searched: caught up with here, outside the
        # lock, so that the commit rarely has any left to do.
        for _ in range(3):
            if not _catch_up(store, run, step, tmp):
                break
    return step


def _sketch_own(store: Store, run: RunContext, document_parts: list[str], params: ReuseParams, stats: ReuseStats,
                step: RunReuse, search: _Search, wanted: HashFilter) -> None:
    """This run's band hashes, made here from its documents parts, written as its reuse_bands parts."""
    bands_out = _BandWriter(store, run.run_id, new_attempt())
    seen_docs: set[str] = set()

    def first_time(doc_id: str) -> bool:
        if doc_id in seen_docs:  # two batches of this run published it: the commit keeps one
            return False
        seen_docs.add(doc_id)
        step.documents.append(doc_id)
        stats.documents += 1
        return True

    for doc_id, sha, bands in _sketched(store, document_parts, params, stats, first_time):
        bands_out.add(doc_id, sha, bands)
        search.add_document(doc_id, sha, bands.hashes, bands.indexed, role=OURS, source=run.run_id)
        wanted.add(bands.hashes)
    step.parts.extend(bands_out.close())


def _read_own(store: Store, run: RunContext, band_parts: list[PartInfo], sketched: Iterable[dict],
              stats: ReuseStats, step: RunReuse, search: _Search, wanted: HashFilter) -> None:
    """This run's band hashes as its batches wrote them (sketch_batch), a record batch at a time."""
    for figures in sketched:
        stats.documents += figures.get("documents", 0)
        stats.too_short += figures.get("too_short", 0)
        stats.texts_cut += figures.get("texts_cut", 0)
        stats.windows_indexed += figures.get("windows_indexed", 0)
        stats.windows_queried += figures.get("windows_queried", 0)
        stats.timings["signatures"] += figures.get("seconds", 0.0)
    documents: dict[str, None] = {}

    def own_rows(batch: pa.RecordBatch, _run_id: str) -> None:
        wanted.add(batch.column("hash").to_numpy(zero_copy_only=False))
        documents.update(dict.fromkeys(pc.unique(batch.column("doc_id")).to_pylist()))
        search.add_rows(batch, role=OURS, source=run.run_id)

    _scan_bands(store, [(run.run_id, p.key) for p in band_parts], None, own_rows)
    step.documents.extend(documents)
    step.parts.extend(band_parts)


def _own_texts(store: Store, step: RunReuse) -> dict[str, str]:
    """doc_id -> text_sha256 of the documents whose band hashes the step holds (its reuse_bands parts)."""
    found: dict[str, str] = {}
    keys = [p.key for p in step.parts if p.dataset == "reuse_bands"]
    for batch in _batches(store, "reuse_bands", keys, ["doc_id", "text_sha256"], BAND_BATCH):
        found.update(zip(batch.column("doc_id").to_pylist(), batch.column("text_sha256").to_pylist()))
    return found


def _step_stats(stats: ReuseStats, rows_out: _RowWriter, extra: dict) -> dict:
    return {
        "documents": stats.documents, "too_short": stats.too_short, "texts_cut": stats.texts_cut,
        "windows_indexed": stats.windows_indexed,
        "windows_queried": stats.windows_queried, "candidate_pairs": stats.candidate_pairs,
        "pairs_derived": stats.pairs_derived,
        "pairs": rows_out.pairs, "passages": rows_out.passages, **extra,
        "seconds": {k: round(v, 3) for k, v in stats.timings.items()},
    }


def _catch_up(store: Store, run: RunContext, step: RunReuse, tmp: str) -> bool:
    """Compare this run's band hashes with those of runs committed since the step
    last looked; write the pairs found as further parts of the step. False when
    no run has committed since."""
    seen = set(step.seen_runs)
    manifests = [m for m in committed_manifests(store) if m["run_id"] != run.run_id]
    fresh = [m for m in manifests if m["run_id"] not in seen]
    if not fresh:
        return False
    fresh_parts = _band_parts(fresh, step.scheme)
    own_parts = [(run.run_id, p.key) for p in step.parts if p.dataset == "reuse_bands"]
    if fresh_parts and own_parts:
        _pairs_with_fresh(store, run, step, manifests, fresh_parts, own_parts, tmp)
    step.seen_runs.extend(m["run_id"] for m in fresh)  # only once their pairs are written
    return True


def _pairs_with_fresh(store: Store, run: RunContext, step: RunReuse, manifests: list[dict],
                      fresh_parts: list[tuple[str, str]], own_parts: list[tuple[str, str]],
                      tmp: str) -> None:
    stats = ReuseStats()
    wanted = HashFilter()
    for _, key in own_parts:
        for batch in _batches(store, "reuse_bands", [key], ["hash"], BAND_BATCH):
            wanted.add(batch.column("hash").to_numpy(zero_copy_only=False))
    directory = tempfile.mkdtemp(prefix="catch-up-", dir=tmp)
    search = _Search(directory, restrict="fresh", max_bucket=step.params.max_bucket_texts)
    matched = HashFilter()

    def fresh_rows(batch, run_id):
        matched.add(batch.column("hash").to_numpy(zero_copy_only=False))
        search.add_rows(batch, role=FRESH, source=run_id)

    _scan_bands(store, fresh_parts, wanted, fresh_rows,
                text_versions(store, manifests).including(run.run_id, step.texts))
    if matched.added:
        # Only this run's rows in the buckets the fresh rows fell in can make new pairs.
        _scan_bands(store, own_parts, matched,
                    lambda batch, run_id: search.add_rows(batch, role=OURS, source=run_id))
        search.find_pairs()
        texts = _Texts(manifests, own=(run.run_id, step.document_parts))
        _load_texts(search, store, texts, step.params)
        rows_out = _RowWriter(store, run, new_attempt(), step.next_index)
        # The pairs the step wrote (a document a fresh run committed too may have been paired as this run's).
        emitted = _pairs_in(store, [p for p in step.parts if p.dataset == "reuse"])
        _align_pairs(search, run.run_id, step.params, stats, rows_out.add, emitted)
        step.parts.extend(rows_out.close())
        step.next_index = max(rows_out.index.values())
        step.stats["candidate_pairs"] = step.stats.get("candidate_pairs", 0) + stats.candidate_pairs
        step.stats["pairs_derived"] = step.stats.get("pairs_derived", 0) + stats.pairs_derived
    search.close()


def settle_run_reuse(store: Store, run: RunContext, step: RunReuse, published: Iterable[str],
                     workdir: str | None = None) -> SettledReuse:
    """Under the commit lock, after reconcile: the step's parts as the manifest will list them.

    First the pairs with runs committed since the step last looked (usually
    none: then nothing is read but the manifests). Then the documents
    reconcile unpublished (another run committed the same bytes meanwhile):
    their band hashes go, and so does every row and event of a pair in which
    neither document is published by this run (the run that committed them
    has those). A pair of such a document with one this run does publish is
    kept, the other run having never seen this run's document, provided the
    committed text is the one aligned (same text_sha256); otherwise it is
    dropped and a note says so.
    """
    published = set(published)
    notes: list[str] = []
    # A copy: a commit retried after a failure here starts again from what the step left.
    step = replace(step, seen_runs=list(step.seen_runs), parts=list(step.parts), stats=dict(step.stats))
    seen_before = len(step.seen_runs)
    if any(p.dataset == "reuse_bands" for p in step.parts):
        fresh = [m for m in committed_manifests(store)
                 if m["run_id"] not in set(step.seen_runs) and m["run_id"] != run.run_id]
        if fresh:
            with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
                _catch_up(store, run, step, tmp)
    parts = list(step.parts)
    unpublished = set(step.documents) - published
    if unpublished:
        parts, note = _unpublish(store, run, step, parts, unpublished, published)
        notes.extend(note)
    pairs = _pairs_in(store, [p for p in parts if p.dataset == "reuse"])
    figures = {
        "documents": len(set(step.documents) & published),
        "texts_cut": step.stats.get("texts_cut", 0),
        "band_rows": sum(p.rows for p in parts if p.dataset == "reuse_bands"),
        "runs_compared": len(step.seen_runs),
        "candidate_pairs": step.stats.get("candidate_pairs", 0),
        "pairs_derived": step.stats.get("pairs_derived", 0),
        "pairs": len(pairs),
        "passages": sum(p.rows for p in parts if p.dataset == "reuse"),
    }
    return SettledReuse(parts, figures, notes, step.seen_runs[seen_before:])


def _pairs_in(store: Store, reuse_parts: list[PartInfo]) -> PairKeys:
    pairs = PairKeys()
    for batch in _batches(store, "reuse", [p.key for p in reuse_parts], ["doc_id_a", "doc_id_b"], BAND_BATCH):
        pairs.update(batch.column("doc_id_a").to_pylist(), batch.column("doc_id_b").to_pylist())
    return pairs


def _read_rows(store: Store, part: PartInfo) -> list[dict]:
    return pq.read_table(io.BytesIO(store.get_bytes(part.key)), schema=arrow_schema(part.dataset)).to_pylist()


def _unpublish(store: Store, run: RunContext, step: RunReuse, parts: list[PartInfo], unpublished: set[str],
               published: set[str]) -> tuple[list[PartInfo], list[str]]:
    notes = []
    attempt = new_attempt()
    reuse_parts = [p for p in parts if p.dataset == "reuse"]
    rows = [r for p in reuse_parts for r in _read_rows(store, p)]
    kept = [r for r in rows if r["doc_id_a"] in published or r["doc_id_b"] in published]
    partners = {d for r in kept for d in (r["doc_id_a"], r["doc_id_b"]) if d in unpublished}
    if partners:
        ours = _text_shas(_batches(store, "documents", step.document_parts, ["doc_id", "text_sha256"], BAND_BATCH),
                          partners)
        # (Under the commit lock: read as the commit's duplicate check reads, without the part check.)
        theirs = _text_shas(open_dataset(store, "documents", verify=False).to_batches(
            columns=["doc_id", "text_sha256"], filter=pc.field("doc_id").isin(sorted(partners))), partners)
        differ = {d for d in partners if ours.get(d) != theirs.get(d)}
        if differ:
            before = len(kept)
            kept = [r for r in kept if r["doc_id_a"] not in differ and r["doc_id_b"] not in differ]
            notes.append(f"reuse: {before - len(kept)} passage(s) dropped: {len(differ)} document(s) another run "
                         "committed meanwhile have a text other than the one this run aligned")
    new_parts = [p for p in parts if p.dataset not in ("reuse", "events")]
    if len(kept) != len(rows):
        writer = _RowWriter(store, run, attempt, step.next_index)
        by_pair: dict[tuple[str, str], list[dict]] = {}
        for row in kept:
            by_pair.setdefault((row["doc_id_a"], row["doc_id_b"]), []).append(row)
        for pair_rows in by_pair.values():
            writer.add(pair_rows)
        new_parts.extend(writer.close())
        notes.append(f"reuse: {len(rows) - len(kept)} passage(s) of {len(unpublished)} document(s) another run "
                     "committed meanwhile left to that run")
    else:
        new_parts.extend(p for p in parts if p.dataset in ("reuse", "events"))
    bands = [p for p in new_parts if p.dataset == "reuse_bands"]
    kept_parts = []
    writer = _BandWriter(store, run.run_id, attempt, first_index=len(bands))
    gone = pa.array(sorted(unpublished), pa.string())
    for part in bands:
        table = pq.read_table(io.BytesIO(store.get_bytes(part.key)), schema=REUSE_BANDS)
        mask = pc.invert(pc.is_in(table.column("doc_id"), value_set=gone))
        if pc.all(mask).as_py():
            kept_parts.append(part)
        else:
            writer.add_table(table.filter(mask))
    return [p for p in new_parts if p.dataset != "reuse_bands"] + kept_parts + writer.close(), notes


def _text_shas(batches: Iterable[pa.RecordBatch], doc_ids: set[str]) -> dict[str, str]:
    found = {}
    for batch in batches:
        for doc_id, sha in zip(batch.column("doc_id").to_pylist(), batch.column("text_sha256").to_pylist()):
            if doc_id in doc_ids:
                found[doc_id] = sha
    return found
