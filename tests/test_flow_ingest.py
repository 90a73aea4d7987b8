"""The ingest flow under Prefect's test harness, on the seed corpus and on hostile input."""

from __future__ import annotations

import hashlib
import io
import os
import shutil

import pyarrow.parquet as pq
import pytest

from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.records import json_form
from archive.storage import LocalStore, object_key, open_store
from archive.validate import problems

pytestmark = pytest.mark.flow

EVENT_TYPES_PER_DOCUMENT = {
    "message digest calculation", "format identification", "ingestion", "normalization",
    "metadata extraction", "validation", "publication",
}


@pytest.fixture
def run_ingest(prefect_harness):
    from archive_flows.ingest import ingest

    return ingest


def rows(dest, name, **kw):
    return open_dataset(dest, name, **kw).to_table().to_pylist()


def test_seeds_become_five_valid_documents_with_originals_and_events(run_ingest, seeds_dir, dest):
    result = run_ingest(str(seeds_dir), dest=dest, collection="black-january")
    assert result["status"] == "committed"
    assert result["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 0}

    store = open_store(dest)
    documents = rows(dest, "documents")
    assert len(documents) == 5
    by_path = {d["source_path"]: d for d in documents}
    for path in seeds_dir.iterdir():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        doc = by_path[path.name]
        assert doc["doc_id"] == digest
        assert doc["collection"] == "black-january"
        # The original is kept byte for byte under its checksum.
        assert store.get_bytes(object_key(digest)) == data
        assert hashlib.sha256(doc["text"].encode()).hexdigest() == doc["text_sha256"]
    assert by_path["002_bdbfc77629c1cea2.txt"]["date"].isoformat() == "2021-01-21"
    assert by_path["004_fe37357cb45043f5.txt"]["title"] == "Black January"

    # Every document row, read back from Parquet, validates against the schema.
    for doc in rows(dest, "documents"):
        assert problems("document", json_form(doc)) == []

    # Each document has the full chain of events, all tied to this flow run, each a valid event record.
    events = rows(dest, "events")
    for event in events:
        assert problems("event", json_form(event)) == [], event
    for doc in documents:
        kinds = {e["event_type"] for e in events if e["object_sha256"] == doc["doc_id"]}
        assert kinds == EVENT_TYPES_PER_DOCUMENT
    assert {e["flow_run_id"] for e in events} == {result_flow_run_id(dest)}
    assert all(e["agent"] == "archive" and e["agent_version"] for e in events)

    # The manifest lists each part with sha256, bytes and rows that match what is stored.
    (manifest,) = list(committed_manifests(store))
    assert manifest["counts"]["documents"] == 5
    for part in manifest["parts"]:
        data = store.get_bytes(part["key"])
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        assert len(data) == part["bytes"]
        assert pq.read_table(io.BytesIO(data)).num_rows == part["rows"]


def result_flow_run_id(dest):
    (manifest,) = [m for m in committed_manifests(open_store(dest))][-1:]
    return manifest["flow_run_id"]


def test_rerun_adds_no_documents_and_accounts_for_every_file(run_ingest, seeds_dir, dest):
    first = run_ingest(str(seeds_dir), dest=dest)
    second = run_ingest(str(seeds_dir), dest=dest)
    assert second["counts"] == {"files": 5, "documents": 0, "duplicates": 5, "quarantined": 0, "skipped": 0}
    assert len(rows(dest, "documents")) == 5
    files = rows(dest, "files", runs=[second["run_id"]])
    assert sorted(f["path"] for f in files) == sorted(p.name for p in seeds_dir.iterdir())
    assert {f["outcome"] for f in files} == {"duplicate"}
    assert {f["reason"] for f in files} == {"duplicate-of-committed"}
    docs_first = {d["doc_id"] for d in rows(dest, "documents", runs=[first["run_id"]])}
    assert {f["doc_id"] for f in files} == docs_first


def test_duplicates_across_batches_are_published_once(run_ingest, seeds_dir, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    seed = next(iter(sorted(seeds_dir.iterdir())))
    for name in ("a.txt", "b.txt", "c.txt"):
        shutil.copy(seed, source / name)
    dest = str(tmp_path / "store")
    # One file per batch: the three copies meet only at commit.
    result = run_ingest(str(source), dest=dest, batch_files=1)
    assert result["counts"]["documents"] == 1 and result["counts"]["duplicates"] == 2
    documents = rows(dest, "documents")
    assert [d["source_path"] for d in documents] == ["a.txt"]
    files = {f["path"]: f for f in rows(dest, "files")}
    assert files["a.txt"]["outcome"] == "document"
    assert {files[n]["outcome"] for n in ("b.txt", "c.txt")} == {"duplicate"}
    publications = [e for e in rows(dest, "events") if e["event_type"] == "publication" and e["object_sha256"]]
    assert [e["source_path"] for e in publications] == ["a.txt"]
    # Settled by the batches' claims (a batch that ends after a's) or at commit (one that ends before): the same.
    assert {files[n]["reason"] for n in ("b.txt", "c.txt")} == {"duplicate-in-run"}
    deduplications = [e for e in rows(dest, "events") if e["event_type"] == "deduplication"]
    assert sorted(e["source_path"] for e in deduplications) == ["b.txt", "c.txt"]


def test_a_batch_that_loses_a_document_at_commit_keeps_its_others_with_events_naming_the_new_part(
        run_ingest, seeds_dir, tmp_path, monkeypatch):
    seeds = sorted(seeds_dir.iterdir())
    source = tmp_path / "source"
    source.mkdir()
    # Batches of two, in path order: [a, b] and [c, d]; c repeats a, so the second batch keeps only d.
    for name, seed in (("a.txt", seeds[0]), ("b.txt", seeds[1]), ("c.txt", seeds[0]), ("d.txt", seeds[2])):
        shutil.copy(seed, source / name)
    dest = str(tmp_path / "store")
    # Batches without the run's claims (as on Dask workers; or the copy's batch ending first): the commit settles it.
    from archive_flows import workers as worker_pool

    monkeypatch.setattr(worker_pool, "claims_for", lambda run_id: None)
    result = run_ingest(str(source), dest=dest, batch_files=2, reuse=False, workers=1)

    assert result["counts"] == {"files": 4, "documents": 3, "duplicates": 1, "quarantined": 0, "skipped": 0}
    assert sorted(d["source_path"] for d in rows(dest, "documents")) == ["a.txt", "b.txt", "d.txt"]
    files = {f["path"]: f for f in rows(dest, "files")}
    assert (files["c.txt"]["outcome"], files["c.txt"]["reason"]) == ("duplicate", "duplicate-in-run")
    (manifest,) = committed_manifests(open_store(dest))
    document_parts = {p["key"] for p in manifest["parts"] if p["dataset"] == "documents"}
    events = rows(dest, "events")
    publications = [e for e in events if e["event_type"] == "publication" and e["object_sha256"]]
    assert sorted(e["source_path"] for e in publications) == ["a.txt", "b.txt", "d.txt"]
    assert {e["detail"].rsplit(" ", 1)[1] for e in publications} == document_parts
    (unpublished,) = [e for e in events
                      if e["event_type"] == "deduplication" and "unpublished at commit" in e["detail"]]
    assert unpublished["source_path"] == "c.txt"


@pytest.fixture
def hostile_source(tmp_path, seeds_dir):
    src = tmp_path / "hostile"
    src.mkdir()
    text = (seeds_dir / "001_291c46b230e7e5bc.txt").read_text(encoding="utf-8")
    (src / "empty.txt").write_bytes(b"")
    (src / "blank.txt").write_bytes(b"  \n\t \r\n")
    (src / "random.bin").write_bytes(hashlib.sha512(b"seed").digest() * 64 + bytes(range(256)))
    (src / "nul.txt").write_bytes(b"Minutes of the meeting\x00 held on Tuesday.\n")
    (src / "with space and ünïcödé.txt").write_text("A name with spaces and accents, and text inside it.",
                                                    encoding="utf-8")
    (src / "-leading-dash.txt").write_text("A file whose name starts with a dash.", encoding="utf-8")
    (src / "line\nbreak.txt").write_text("A file whose name holds a newline.", encoding="utf-8")
    (src / os.fsdecode(b"latin1-\xe9.txt")).write_text("A file whose name is not valid UTF-8.", encoding="utf-8")
    (src / "utf16.txt").write_bytes(text.encode("utf-16"))
    (src / "cp1252.txt").write_bytes(text.encode("cp1252"))
    (src / "big.txt").write_text("x " * 5000, encoding="utf-8")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside the source", encoding="utf-8")
    (src / "link-out.txt").symlink_to(outside)
    (src / "link-in.txt").symlink_to(src / "cp1252.txt")
    (src / "dangling.txt").symlink_to(src / "nowhere.txt")
    (src / "subdir").mkdir()
    (src / "subdir" / "nested.txt").write_text("Nested file text here.", encoding="utf-8")
    (src / "link-dir").symlink_to(src / "subdir")
    os.mkfifo(src / "pipe")
    return src


def test_hostile_input_every_file_accounted_for_with_reason(run_ingest, hostile_source, tmp_path):
    dest = str(tmp_path / "store")
    result = run_ingest(str(hostile_source), dest=dest, max_file_bytes=8000)
    files = {f["path"]: f for f in rows(dest, "files")}
    expected = {
        "empty.txt": ("quarantine", "empty"),
        "blank.txt": ("quarantine", "no-text"),
        "random.bin": ("quarantine", "unsupported-format"),
        "nul.txt": ("quarantine", "corrupt"),
        "with space and ünïcödé.txt": ("document", None),
        "-leading-dash.txt": ("document", None),
        "line\nbreak.txt": ("document", None),
        "latin1-\\xe9.txt": ("document", None),
        "utf16.txt": ("document", None),
        "cp1252.txt": ("document", None),
        "big.txt": ("quarantine", "too-large"),
        "link-out.txt": ("skipped", "symlink-outside-source"),
        "link-in.txt": ("duplicate", "duplicate-in-run"),
        "dangling.txt": ("skipped", "broken-symlink"),
        "subdir/nested.txt": ("document", None),
        "link-dir": ("skipped", "symlinked-directory"),
        "pipe": ("skipped", "not-a-regular-file"),
    }
    assert {p: (f["outcome"], f["reason"]) for p, f in files.items()} == expected
    # Every quarantined or skipped file says why, in words.
    for f in files.values():
        if f["outcome"] in ("quarantine", "skipped"):
            assert f["detail"] and len(f["detail"]) > 10, f
    assert "NUL" in files["nul.txt"]["detail"]
    assert "8000" in files["big.txt"]["detail"]
    assert result["counts"] == {"files": 17, "documents": 7, "duplicates": 1, "quarantined": 5, "skipped": 4}

    store = LocalStore(dest)
    # Quarantined files' bytes are kept too (even the too-large one, streamed).
    for name in ("empty.txt", "random.bin", "nul.txt", "big.txt"):
        data = (hostile_source / name).read_bytes()
        assert store.get_bytes(object_key(hashlib.sha256(data).hexdigest())) == data
    # Nothing from outside the source was read or stored.
    secret = hashlib.sha256(b"secret outside the source").hexdigest()
    assert not store.exists(object_key(secret))
    # The same text in two encodings: two originals, one normalised text.
    docs = {d["source_path"]: d for d in rows(dest, "documents")}
    assert docs["utf16.txt"]["text_sha256"] == docs["cp1252.txt"]["text_sha256"]
    assert docs["utf16.txt"]["doc_id"] != docs["cp1252.txt"]["doc_id"]
    assert (docs["utf16.txt"]["encoding"], docs["cp1252.txt"]["encoding"]) == ("utf-16-le", "cp1252")
    quarantine = {q["path"]: q for q in rows(dest, "quarantine")}
    assert set(quarantine) == {"empty.txt", "blank.txt", "random.bin", "nul.txt", "big.txt"}
    for q in quarantine.values():
        assert problems("quarantine",
                        {**q, "quarantined_at": q["quarantined_at"].isoformat().replace("+00:00", "Z")}) == []


def test_a_crash_before_the_manifest_leaves_nothing_visible(run_ingest, seeds_dir, tmp_path, monkeypatch):
    from archive.ingest import commit as commit_module

    dest = str(tmp_path / "store")

    def crash(store, manifest, **kwargs):
        raise RuntimeError("simulated crash between the part files and the manifest")

    monkeypatch.setattr(commit_module, "commit_manifest", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_ingest(str(seeds_dir), dest=dest)
    store = LocalStore(dest)
    # The parts are there on disk, but no reader sees them.
    assert list(store.list("datasets/documents/")), "the crash came after the parts were written"
    assert list(committed_manifests(store)) == []
    for name in ("documents", "files", "quarantine", "events"):
        assert open_dataset(dest, name).count_rows() == 0

    monkeypatch.undo()
    result = run_ingest(str(seeds_dir), dest=dest)
    # The originals were already stored by the crashed run; the documents are published now.
    assert result["counts"]["documents"] == 5
    assert open_dataset(dest, "documents").count_rows() == 5
    assert len(list(committed_manifests(store))) == 1


def test_one_task_per_batch_and_progress_reported(run_ingest, seeds_dir, tmp_path):
    from archive_flows import progress

    heard = []
    stop = progress.listen(lambda done, total, elapsed: heard.append((done, total)))
    try:
        result = run_ingest(str(seeds_dir), dest=str(tmp_path / "store"), batch_files=2)
    finally:
        stop()
    assert result["batches"] == 3  # 5 files, 2 per batch
    assert len(heard) == 3
    assert heard[-1] == (5, 5)
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)


def test_analysts_query_the_datasets_with_duckdb(run_ingest, seeds_dir, tmp_path):
    import duckdb

    dest = str(tmp_path / "store")
    run_ingest(str(seeds_dir), dest=dest)
    docs = open_dataset(dest, "documents")  # noqa: F841 - DuckDB finds it by name
    dated = duckdb.sql("select title, date from docs where date is not null order by date").fetchall()
    assert [d.isoformat() for _, d in dated] == ["2021-01-20", "2021-01-21"]
    files = open_dataset(dest, "files")  # noqa: F841
    assert duckdb.sql("select outcome, count(*) from files group by outcome").fetchall() == [("document", 5)]


def test_run_publishes_prefect_artifacts(run_ingest, tmp_path):
    from prefect.artifacts import Artifact

    source = tmp_path / "batch"
    source.mkdir()
    (source / "ok.txt").write_text("A good page of text for the archive.", encoding="utf-8")
    (source / "empty.txt").write_bytes(b"")
    result = run_ingest(str(source), dest=str(tmp_path / "store"))
    key = result["run_id"].lower()
    import json

    counts = Artifact.get(f"ingest-counts-{key}")
    table = json.loads(counts.data) if isinstance(counts.data, str) else counts.data
    assert {"outcome": "documents", "files": 1} in table and {"outcome": "quarantined", "files": 1} in table
    quarantine = Artifact.get(f"ingest-quarantine-{key}")
    assert "empty.txt" in str(quarantine.data) and "the file has no bytes" in str(quarantine.data)
    summary = Artifact.get(f"ingest-summary-{key}")
    assert result["manifest"] in summary.data and result["dest"] in summary.data
    progress_artifact = Artifact.get(f"ingest-progress-{key}")
    assert progress_artifact is not None and float(progress_artifact.data) == 100.0
