"""A run's batches share their documents' claims: a copy of an earlier batch's document is a duplicate in the
later batch's own parts, and the commit rewrites nothing; out of order, the commit settles it the same way."""

import io
import shutil
import uuid

import pyarrow.parquet as pq
import pytest

from archive.claims import DocumentClaims
from archive.errors import SourceError
from archive.ingest import Descriptions, IngestOptions, process_batch, reconcile
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import LocalStore
from archive_flows import workers as worker_pool


@pytest.fixture
def source(tmp_path, seeds_dir):
    """Two batches, in path order: [a, b] and [c, d]; c is a copy of a."""
    seeds = sorted(seeds_dir.iterdir())
    folder = tmp_path / "source"
    folder.mkdir()
    for name, seed in (("a.txt", seeds[0]), ("b.txt", seeds[1]), ("c.txt", seeds[0]), ("d.txt", seeds[2])):
        shutil.copy(seed, folder / name)
    return open_source(folder)


def batches(source):
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    return refs[:2], refs[2:]


def start(tmp_path, source):
    """A directory store, a run, its claims and its two batches."""
    return (LocalStore(tmp_path / "dest"), RunContext(new_run_id(), "claims", source.url), DocumentClaims(),
            batches(source))


def part_rows(store, summary, dataset):
    (part,) = [p for p in summary.parts if p.dataset == dataset]
    return pq.read_table(io.BytesIO(store.get_bytes(part.key))).to_pylist()


def test_the_lowest_batch_owns_a_document_whichever_claims_first_and_a_retry_changes_nothing():
    claims = DocumentClaims()
    assert claims.claim(3, {"x": "late.txt"}) == {}
    assert claims.claim(1, {"x": "early.txt", "y": "y.txt"}) == {}  # 1 < 3: batch 1 owns x now
    assert claims.claim(3, {"x": "late.txt"}) == {"x": (1, "early.txt")}
    assert claims.claim(2, {"x": "mid.txt", "y": "y2.txt"}) == {"x": (1, "early.txt"), "y": (1, "y.txt")}
    assert claims.claim(1, {"x": "early.txt"}) == {}  # a retried batch 1 still owns x


def test_a_copy_of_an_earlier_batchs_document_is_a_duplicate_in_the_later_batchs_parts(tmp_path, source):
    store, run, claims, (first, second) = start(tmp_path, source)
    s0 = process_batch(store, source, run, 0, first, claims=claims)
    s1 = process_batch(store, source, run, 1, second, claims=claims)

    a = next(r for r in part_rows(store, s0, "files") if r["path"] == "a.txt")["sha256"]
    assert s0.earlier_documents == {} and a in s0.documents
    assert s1.earlier_documents == {a: 0}
    assert s1.documents == [next(r for r in part_rows(store, s1, "files") if r["path"] == "d.txt")["sha256"]]
    assert s1.counts == {"document": 1, "duplicate": 1}
    assert [d["source_path"] for d in part_rows(store, s1, "documents")] == ["d.txt"]
    c = next(r for r in part_rows(store, s1, "files") if r["path"] == "c.txt")
    assert (c["outcome"], c["reason"], c["detail"], c["doc_id"]) == ("duplicate", "duplicate-in-run",
                                                                     "same bytes as a.txt in this run", a)
    events = [e for e in part_rows(store, s1, "events") if e["object_sha256"] == a]
    assert "publication" not in {e["event_type"] for e in events}
    assert [e["detail"] for e in events if e["event_type"] == "deduplication"] == ["same bytes as a.txt in this run"]
    assert any(e["event_type"] == "ingestion" for e in events), "its original was still recorded as kept"

    parts_before = [p.key for s in (s0, s1) for p in s.parts]
    assert reconcile(store, run, [s0, s1], set()) == []  # nothing left to settle at commit
    assert [p.key for s in (s0, s1) for p in s.parts] == parts_before


def test_out_of_order_both_publish_and_the_commit_unpublishes_the_later_copy(tmp_path, source):
    store, run, claims, (first, second) = start(tmp_path, source)
    s1 = process_batch(store, source, run, 1, second, claims=claims)  # the later batch ends first
    s0 = process_batch(store, source, run, 0, first, claims=claims)
    assert s0.earlier_documents == s1.earlier_documents == {}
    assert s1.counts == {"document": 2}

    notes = reconcile(store, run, [s0, s1], set())
    assert notes == ["batch 1: 1 document(s) turned out to be duplicates at commit and were unpublished"]
    assert [d["source_path"] for d in part_rows(store, s1, "documents")] == ["d.txt"]
    c = next(r for r in part_rows(store, s1, "files") if r["path"] == "c.txt")
    assert (c["outcome"], c["reason"]) == ("duplicate", "duplicate-in-run")


def test_the_commit_fails_if_the_batch_a_copy_was_left_to_no_longer_publishes_it(tmp_path, source):
    """A first attempt of batch 0 claimed a document its retry no longer has (the file changed meanwhile)."""
    store, run, claims, (first, second) = start(tmp_path, source)
    s0 = process_batch(store, source, run, 0, first, claims=claims)
    (source.root / "a.txt").write_bytes(b"a.txt as it reads now: " + uuid.uuid4().hex.encode())
    s1 = process_batch(store, source, run, 1, second, claims=claims)  # c.txt: left to batch 0's a.txt
    retry = process_batch(store, source, run, 0, first, claims=claims)
    assert s1.earlier_documents and not set(s1.earlier_documents) & set(retry.documents)

    with pytest.raises(SourceError,
                       match="batch 1 found document .* published by batch 0, which no longer publishes it"):
        reconcile(store, run, [retry, s1], set())
    assert s0.earlier_documents == {}


def test_a_batch_whose_claims_are_gone_publishes_its_documents_and_leaves_the_copies_to_the_commit(tmp_path, source):
    class Gone(DocumentClaims):
        def claim(self, index, documents):
            raise EOFError  # what a proxy raises when the manager process has died

    store, run, _, (first, second) = start(tmp_path, source)
    s0 = process_batch(store, source, run, 0, first, claims=Gone())
    s1 = process_batch(store, source, run, 1, second, claims=Gone())
    assert s1.counts == {"document": 2} and s1.earlier_documents == {}
    assert reconcile(store, run, [s0, s1], set()) == [
        "batch 1: 1 document(s) turned out to be duplicates at commit and were unpublished"]


def test_worker_processes_share_the_runs_claims(tmp_path, source):
    run = RunContext(new_run_id(), "claims", source.url)
    dest = str(tmp_path / "dest")
    first, second = batches(source)
    with worker_pool.batch_workers(run.run_id, 2, frozenset()):
        pool = worker_pool.pool_for(run.run_id)
        assert worker_pool.claims_for(run.run_id) is None  # the batches run in the pool, not here
        s0 = worker_pool.run_in_pool(pool, dest, source.url, run, 0, first, IngestOptions(), Descriptions())
        s1 = worker_pool.run_in_pool(pool, dest, source.url, run, 1, second, IngestOptions(), Descriptions())
    assert len(s1.earlier_documents) == 1 and set(s1.earlier_documents.values()) == {0}
    assert set(s1.earlier_documents) <= set(s0.documents)


def test_batches_run_in_this_process_share_claims_for_the_run_only(tmp_path):
    with worker_pool.batch_workers("run-a", 1, frozenset()):
        claims = worker_pool.claims_for("run-a")
        assert isinstance(claims, DocumentClaims)
        assert worker_pool.claims_for("run-b") is None
    assert worker_pool.claims_for("run-a") is None
