"""The doc-id index: an ingest's duplicate check looks committed documents up by hash prefix, run by run, without
reading the documents parts, and makes an index again wherever one is missing or damaged."""

from __future__ import annotations

import hashlib
import pickle
import shutil

import pytest

from archive.catalogue.identity import record_id
from archive.catalogue.keyindex import (
    RECORD_IDS,
    CommittedDocuments,
    KeyIndex,
    _digests,
    encode,
    index_key,
    runs_with_records,
)
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.sources import open_source
from archive.storage import LocalStore


def _ids(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


@pytest.mark.parametrize("count", [0, 1, 8, 9, 100, 5000])
def test_an_index_finds_its_doc_ids_and_no_others(count):
    ids = _ids(count)
    index = KeyIndex(encode(ids + ids[:3]), count)  # (each doc_id once, however often given)
    others = _ids(200, salt="other")
    found = index.contains(_digests(ids + others))
    assert found[:count].all() and not found[count:].any()
    assert all(index.holds(bytes.fromhex(d)) for d in ids) and not any(index.holds(bytes.fromhex(d)) for d in others)
    assert index.count == count and len(index.fanout) == (1 << index.bits) + 1
    assert count <= 8 or count / (1 << index.bits) <= 8  # (a bucket holds a few digests)


def test_one_lookup_matches_whole_keys_only():
    index = KeyIndex(encode(["00" * 16 + "11" * 16, "22" * 16 + "33" * 16]))
    assert index.holds(bytes.fromhex("00" * 16 + "11" * 16))
    assert not index.holds(bytes.fromhex("11" * 16 + "22" * 16))  # (the bytes are there, across two keys)


def test_a_damaged_index_is_refused():
    data = encode(_ids(100))
    with pytest.raises(ValueError, match="not an index of doc_ids"):
        KeyIndex(b"XXXXXXXX" + data[8:])
    with pytest.raises(ValueError, match="bytes where its header says"):
        KeyIndex(data[:-32])
    with pytest.raises(ValueError, match="where the run's documents parts hold 99 rows"):
        KeyIndex(data, 99)


def _ingest(store, source_dir) -> str:
    source = open_source(str(source_dir))
    run = RunContext(new_run_id(), "test", source.url)
    known = CommittedDocuments(store, committed_manifests(store))
    summary = process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda r: r.path), known=known)
    commit_run(store, run, [summary], parameters={}, warnings=[])
    return run.run_id


def _doc_ids(store) -> set[str]:
    return set(open_dataset(store, "documents").to_table(columns=["doc_id"]).column("doc_id").to_pylist())


def test_committed_documents_are_found_through_the_index_and_it_is_made_again_when_missing_or_damaged(
        store, seeds_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_CACHE_DIR", str(tmp_path / "cache"))
    first = _ingest(store, seeds_dir)
    published = _doc_ids(store)
    assert len(published) == 5 and store.exists(index_key(first))
    strangers = set(_ids(50, salt="stranger"))
    assert CommittedDocuments(store, committed_manifests(store)).among(published | strangers) == published

    # A run that crashed between its manifest and its index: the lookup makes it from the parts, and keeps it.
    store.delete(index_key(first))
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)  # (and an S3 store's copy: another machine's lookup)
    committed = CommittedDocuments(store, committed_manifests(store))
    assert all(d in committed for d in published) and not any(d in committed for d in strangers)
    assert store.exists(index_key(first))
    if not isinstance(store, LocalStore):
        assert list((tmp_path / "cache" / "index" / "doc_ids").glob("*.idx")), "an S3 store's index is cached locally"

    # A second run of the same files: every one a duplicate of a committed document, nothing published again.
    again = tmp_path / "again"
    shutil.copytree(seeds_dir, again)
    (again / "new.txt").write_text("A letter from the harbour master about the new pier and its lamps.\n")
    second = _ingest(store, again)
    files = {r["path"]: r for r in open_dataset(store, "files", runs=[second]).to_table().to_pylist()}
    assert sum(r["reason"] == "duplicate-of-committed" for r in files.values()) == 5
    assert files["new.txt"]["outcome"] == "document"
    assert len(_doc_ids(store)) == 6 and store.exists(index_key(second))

    # The records' next versions are read from the runs that hold those records, found by their record-id index.
    manifests = list(committed_manifests(store))
    assert store.exists(index_key(first, RECORD_IDS)) and store.exists(index_key(second, RECORD_IDS))
    assert {m["run_id"] for m in runs_with_records(store, manifests, [record_id("new.txt")])} == {second}
    assert {m["run_id"] for m in runs_with_records(store, manifests, [record_id(f.name) for f in
                                                                      seeds_dir.iterdir()])} == {first}
    assert runs_with_records(store, manifests, [record_id("never-seen.txt")]) == []
    # (the same bytes at the same paths make no new version: the second run holds only the new file's record)
    records = open_dataset(store, "records", runs=[second]).to_table().to_pylist()
    assert [(r["path"], r["version"], r["change"]) for r in records] == [("new.txt", 1, "new")]

    # Pickled (as a batch worker gets it): the store's URL and the runs, each index opened again where it is used.
    copy = pickle.loads(pickle.dumps(CommittedDocuments(store, committed_manifests(store))))
    assert copy.among(_doc_ids(store) | strangers) == _doc_ids(store)


def test_a_local_lookup_reads_the_index_not_the_documents_parts_and_repairs_a_damaged_one(seeds_dir, tmp_path):
    store = LocalStore(tmp_path / "store")
    run_id = _ingest(store, seeds_dir)
    published = _doc_ids(store)
    manifests = list(committed_manifests(store))
    parts = [p["key"] for m in manifests for p in m["parts"] if p["dataset"] == "documents"]
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for number, key in enumerate(parts):  # (the parts out of reach: only the index can answer)
        shutil.move(store.arrow_path(key), hidden / f"{number}.parquet")
    assert CommittedDocuments(store, manifests).among(published | set(_ids(9))) == published
    for number, key in enumerate(parts):
        shutil.move(hidden / f"{number}.parquet", store.arrow_path(key))

    path = store.arrow_path(index_key(run_id))
    with open(path, "r+b") as stream:  # damaged: a digest's worth of bytes gone
        stream.truncate(stream.seek(0, 2) - 32)
    assert CommittedDocuments(store, manifests).among(published) == published
    with open(path, "rb") as stream:
        assert KeyIndex(stream.read(), len(published)).count == len(published), "the damaged index was made again"
