"""`archive reuse`: the complete recompute over every committed document, and reading the current answer."""

from __future__ import annotations

import tempfile
from concurrent.futures import Executor
from dataclasses import asdict

import pyarrow.compute as pc

from ..catalogue.view import text_versions
from ..provenance import RunContext
from ..publish import build_manifest, commit_manifest, committed_manifests, new_attempt
from ..read import dataset_of, open_dataset
from ..storage import Store
from ..timing import StageTimer
from .bands import DERIVING, _band_parts, _BandWriter, _RowWriter, _scan_bands, _sketched, banded_runs
from .clusters import publish_clusters
from .params import ReuseParams, ReuseStats
from .search import MAX_PARTITION_ROWS, _align_pairs, _load_texts, _Search, _Texts
from .sketch import band_scheme


def publish_reuse(store: Store, run: RunContext, params: ReuseParams = ReuseParams(), *,
                  workdir: str | None = None, max_partition_rows: int = MAX_PARTITION_ROWS,
                  executor: Executor | None = None, workers: int = 2) -> dict:
    """Find the passages all committed documents share, in their current texts (a re-derived document's latest),
    and commit them as the reuse dataset of one run.

    Band hashes come from the committed reuse_bands parts of this band scheme;
    the documents of ingest runs that have none (committed before band hashes
    existed, or with reuse off) are read and sketched, and their band hashes
    published as this run's reuse_bands parts, each run's in parts of their own
    (parameters.bands_for_runs: run id -> part keys), so that later ingest runs
    compare with them too and know whose texts they are. The band
    rows are grouped by hash on local disk (candidate_pairs on each
    partition), the candidate pairs aligned (through OCR noise: ReuseParams.max_gap),
    and the passages grouped in clusters of reprints (reuse_clusters: publish_clusters).
    With executor (a process pool, or a Dask cluster's: `archive reuse --dask`), of
    about workers workers, the candidate pairs are aligned there, in chunks that carry
    their texts (parallel.aligned_pairs): the workers need no access to the store.

    Each reuse run is a complete answer over the documents of the ingest runs
    committed when it started (parameters.documents_of_runs); the current
    answer is the latest reuse run plus the ingest runs it did not cover,
    which is what open_dataset(dest, "reuse") reads.

    Memory: flat in the number of documents. Band rows go to 256 files in a
    temporary directory (workdir, else $TMPDIR) and are grouped one file at a
    time, a file of more than max_partition_rows rows (13 bytes each) being
    split again first; doc_ids, text sha256s, candidate pairs and the texts of
    candidate pairs are in a temporary SQLite database with a small, fixed
    page cache; Parquet is read one record batch (and one row group) at a
    time. At once it holds one partition (at most max_partition_rows rows,
    and the arrays that group them), one documents row group, and the two
    texts of one pair. bench/reuse_scale.py measures it against datasketch's
    in-memory MinHashLSH (BENCHMARKS.md, "Text reuse at scale"). Temporary
    disk: 13 bytes per band row plus the texts of candidate pairs.
    """
    scheme = band_scheme(params)
    manifests = list(committed_manifests(store))
    ingests = [m for m in manifests if m["kind"] == "ingest"]
    deriving = [m for m in manifests if m["kind"] in DERIVING]
    current = text_versions(store, manifests)
    banded = banded_runs(manifests, scheme.name)
    unbanded = [m for m in deriving if m["run_id"] not in banded]
    stats = ReuseStats()
    attempt = new_attempt()
    bands_out = _BandWriter(store, run.run_id, attempt)
    rows_out = _RowWriter(store, run, attempt)
    sketched = 0
    bands_for_runs: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
        search = _Search(tmp, max_rows=max_partition_rows, max_bucket=params.max_bucket_texts)
        with StageTimer(stats.timings, "lsh"):
            _scan_bands(store, _band_parts(manifests, scheme.name), None,
                        lambda batch, run_id: search.add_rows(batch, source=run_id), current)
        for manifest in unbanded:
            written = len(bands_out.parts)
            keys = [p["key"] for p in manifest["parts"] if p["dataset"] == "documents"]
            for doc_id, sha, bands in _sketched(store, keys, params, stats, current=current):
                bands_out.add(doc_id, sha, bands)
                search.add_document(doc_id, sha, bands.hashes, bands.indexed, source=manifest["run_id"])
                sketched += 1
            # Each run's band hashes in parts of their own, so that readers know whose texts they are.
            bands_for_runs[manifest["run_id"]] = [p.key for p in bands_out.close()[written:]]
        with StageTimer(stats.timings, "lsh"):
            search.find_pairs(executor, workers)
        with StageTimer(stats.timings, "fetch"):
            _load_texts(search, store, _Texts(manifests), params)
        _align_pairs(search, run.run_id, params, stats, rows_out.add, executor=executor, workers=workers)
        search.close()
    parts = bands_out.close() + rows_out.close()
    cluster_parts, clusters = publish_clusters(store, run, [p.key for p in parts if p.dataset == "reuse"])
    parts += cluster_parts
    documents = sum(p["rows"] for m in ingests for p in m["parts"] if p["dataset"] == "documents")
    counts = {"documents": documents, "pairs": rows_out.pairs, "passages": rows_out.passages,
              "candidate_pairs": stats.candidate_pairs, "pairs_derived": stats.pairs_derived,
              "documents_sketched": sketched, "texts_cut": stats.texts_cut,
              "band_rows": search.band_rows, "clusters": clusters}
    parameters = {**asdict(params), "bands": scheme.name, "documents_of_runs": [m["run_id"] for m in deriving],
                  "bands_for_runs": bands_for_runs}
    manifest = build_manifest(
        run_id=run.run_id, kind="reuse", collection=None, source=store.url, started_at=run.started_at,
        flow_run_id=run.flow_run_id, started_by=run.started_by, parameters=parameters, counts=counts, parts=parts)
    return {"run_id": run.run_id, "manifest": commit_manifest(store, manifest), "counts": counts,
            "seconds": {k: round(v, 3) for k, v in stats.timings.items()}}


def latest_reuse_run(store: Store) -> str | None:
    """The latest run of kind reuse (by run id: the one that started last), if any."""
    runs = [m["run_id"] for m in committed_manifests(store) if m["kind"] == "reuse"]
    return max(runs) if runs else None


def shared_with(store: Store, doc_id: str, manifests: list[dict] | None = None) -> list[dict]:
    """The documents doc_id shares passages with, per the current reuse answer
    (open_dataset(store, "reuse"): the latest reuse run and the ingest runs after it;
    of manifests, if given); run_id names the run that found each pair."""
    reuse = open_dataset(store, "reuse") if manifests is None else dataset_of(store, manifests, "reuse")
    table = reuse.to_table(
        filter=(pc.field("doc_id_a") == doc_id) | (pc.field("doc_id_b") == doc_id))
    found: dict[str, dict] = {}
    for row in table.to_pylist():
        other = row["doc_id_b"] if row["doc_id_a"] == doc_id else row["doc_id_a"]
        entry = found.setdefault(other, {"doc_id": other, "similarity": row["similarity"], "passages": 0, "words": 0,
                                         "run_id": row["run_id"]})
        entry["passages"] += 1
        entry["words"] += row["passage_words"]
    return sorted(found.values(), key=lambda e: (-e["similarity"], e["doc_id"]))
