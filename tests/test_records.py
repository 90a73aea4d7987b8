"""Records that evolve: every file instance a record with its own description, corrections as versions, the
current view and the view as of a run; on a local store, moto's S3 and SeaweedFS."""

from __future__ import annotations

import shutil
import uuid

import pyarrow as pa
import pytest

from archive.catalogue.identity import record_id
from archive.catalogue.keyindex import DocumentsOnceCommitted
from archive.errors import NotFoundError
from archive.lineage import lineage
from archive.read import open_dataset
from archive.storage import open_store
from archive.validate import problems

pytestmark = pytest.mark.flow

SEED = "000_1b6d2751a6b6d7cc.txt"


@pytest.fixture
def run_ingest(prefect_harness):
    from archive_flows.ingest import ingest

    return ingest


@pytest.fixture
def press(tmp_path, seeds_dir):
    """The seeds under seeds/, and the same bytes as seeds/000 at a path that sorts first: two outlets printing
    one press release. The sidecar describes seeds/000 only."""
    source = tmp_path / "press"
    shutil.copytree(seeds_dir, source / "seeds")
    (source / "duplicates").mkdir()
    shutil.copy(seeds_dir / SEED, source / "duplicates" / "copy-of-000.txt")
    sidecar(source, ("Envoy on Black January", "2021-01-20", "Anadolu Agency"))
    return source


def sidecar(source, row, path=f"seeds/{SEED}") -> None:
    import csv

    with open(source / "metadata.csv", "w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows([("filename", "dc.title", "dc.date", "dc.creator"), (path, *row)])


def current(dest, **kw) -> dict[str, dict]:
    return {r["path"]: r for r in open_dataset(dest, "records", **kw).to_table().to_pylist()}


def test_each_file_instance_is_a_record_with_its_own_description(run_ingest, press, seeds_dir, dest):
    result = run_ingest(str(press), dest=dest, collection="press")
    assert result["counts"]["documents"] == 5 and result["counts"]["duplicates"] == 1

    records = current(dest)
    assert sorted(records) == ["duplicates/copy-of-000.txt", *(f"seeds/{p.name}" for p in sorted(seeds_dir.iterdir()))]
    ours, theirs = records[f"seeds/{SEED}"], records["duplicates/copy-of-000.txt"]
    # The archivist's description of seeds/000 is kept, though its bytes were published from the other path.
    assert (ours["title"], ours["date"].isoformat(), ours["creator"]) == (
        "Envoy on Black January", "2021-01-20", "Anadolu Agency")
    assert ours["sidecar"] == "metadata.csv line 2"
    # The other path is described by what the bytes give, never by seeds/000's row.
    assert ours["doc_id"] == theirs["doc_id"]
    assert theirs["title"] != ours["title"] and theirs["creator"] is None and theirs["sidecar"] is None
    documents = {d["doc_id"]: d for d in open_dataset(dest, "documents").to_table().to_pylist()}
    assert len(documents) == 5 and documents[ours["doc_id"]]["source_path"] == "duplicates/copy-of-000.txt"
    assert theirs["title"] == documents[ours["doc_id"]]["title"]  # the document's own (derived) description

    for path, row in records.items():
        assert row["record_id"] == record_id(path) == str(uuid.uuid5(
            uuid.uuid5(uuid.NAMESPACE_URL, "urn:archive:record"), path))
        assert (row["version"], row["change"], row["run_id"], row["collection"]) == (1, "new", result["run_id"],
                                                                                     "press")
        assert problems("record", _json(row)) == []
    # records join documents on doc_id: every record has its text, stored once per content.
    import duckdb

    records_ds, documents_ds = open_dataset(dest, "records"), open_dataset(dest, "documents")  # noqa: F841
    joined = duckdb.sql("select r.path, d.char_count from records_ds r join documents_ds d using (doc_id)").fetchall()
    assert len(joined) == 6 and all(chars > 0 for _, chars in joined)


def test_a_correction_is_a_new_version_with_an_event_and_the_old_one_stays(run_ingest, press, dest):
    first = run_ingest(str(press), dest=dest)
    sidecar(press, ("Envoy on Black January (corrected)", "2021-01-21", "Anadolu Agency"))
    second = run_ingest(str(press), dest=dest)
    assert second["counts"]["documents"] == 0 and second["counts"]["updated"] == 1

    records = current(dest)
    ours = records[f"seeds/{SEED}"]
    assert (ours["version"], ours["change"], ours["run_id"]) == (2, "metadata", second["run_id"])
    assert ours["changed_fields"] == ["title", "date"]
    assert (ours["title"], ours["date"].isoformat(), ours["creator"]) == (
        "Envoy on Black January (corrected)", "2021-01-21", "Anadolu Agency")
    assert {r["version"] for p, r in records.items() if p != f"seeds/{SEED}"} == {1}
    # Never an overwrite: version 1 is still there, and the view as of the first run shows it.
    versions = open_dataset(dest, "records", runs=[first["run_id"], second["run_id"]]).to_table().to_pylist()
    assert sorted((r["version"], r["title"]) for r in versions if r["path"] == f"seeds/{SEED}") == [
        (1, "Envoy on Black January"), (2, "Envoy on Black January (corrected)")]
    assert current(dest, as_of=first["run_id"])[f"seeds/{SEED}"]["title"] == "Envoy on Black January"
    assert current(dest, as_of=second["run_id"]) == records

    (event,) = [e for e in open_dataset(dest, "events").to_table().to_pylist()
                if e["event_type"] == "metadata modification"]
    assert event["run_id"] == second["run_id"] and event["source_path"] == f"seeds/{SEED}"
    assert event["object_sha256"] == ours["doc_id"]
    for said in ("title 'Envoy on Black January' -> 'Envoy on Black January (corrected)'",
                 "date '2021-01-20' -> '2021-01-21'", f"by run {second['run_id']}", "version 2"):
        assert said in event["detail"]

    # The same description again makes no version; neither does a run without the row (it states nothing).
    third = run_ingest(str(press), dest=dest)
    (press / "metadata.csv").unlink()
    fourth = run_ingest(str(press), dest=dest)
    assert third["counts"]["updated"] == fourth["counts"]["updated"] == 0
    assert open_dataset(dest, "records", runs=[third["run_id"], fourth["run_id"]]).count_rows() == 0
    assert current(dest) == records

    story = lineage(open_store(dest), f"seeds/{SEED}")
    mine = [r for r in story["records"] if r["path"] == f"seeds/{SEED}"]
    assert [(r["version"], r["run_id"], r["changed_fields"]) for r in mine] == [
        (1, first["run_id"], []), (2, second["run_id"], ["title", "date"])]
    assert {r["path"] for r in story["records"]} == {f"seeds/{SEED}", "duplicates/copy-of-000.txt"}


def test_new_bytes_at_a_path_are_the_next_version_and_the_old_document_stays(run_ingest, press, tmp_path):
    dest = str(tmp_path / "store")
    run_ingest(str(press), dest=dest)
    before = current(dest)["seeds/004_fe37357cb45043f5.txt"]
    with open(press / "seeds" / "004_fe37357cb45043f5.txt", "a", encoding="utf-8") as page:
        page.write("\nA line the rescan found.\n")
    second = run_ingest(str(press), dest=dest)
    assert second["counts"]["documents"] == 1 and second["counts"]["updated"] == 1
    after = current(dest)["seeds/004_fe37357cb45043f5.txt"]
    assert (after["version"], after["change"]) == (2, "content")
    assert after["doc_id"] != before["doc_id"] and after["changed_fields"][0] == "doc_id"
    assert after["title"] == before["title"] == "Black January"
    assert {before["doc_id"], after["doc_id"]} <= set(open_dataset(dest, "documents").to_table(
        columns=["doc_id"])["doc_id"].to_pylist())


def test_a_run_that_did_not_commit_leaves_no_version_and_the_next_lands_it_once(run_ingest, press, tmp_path,
                                                                                  monkeypatch):
    import archive.ingest.commit as commit

    dest = str(tmp_path / "store")
    run_ingest(str(press), dest=dest)
    sidecar(press, ("Envoy, corrected", "2021-01-22", "AA"))

    def fail(store, manifest, **kwargs):
        raise OSError("the machine went away before the manifest")

    with monkeypatch.context() as patched:
        patched.setattr(commit, "commit_manifest", fail)
        with pytest.raises(OSError):
            run_ingest(str(press), dest=dest)
    assert current(dest)[f"seeds/{SEED}"]["version"] == 1
    assert open_dataset(dest, "records").count_rows() == 6  # the failed run's records parts are listed nowhere
    again = run_ingest(str(press), dest=dest)
    assert again["counts"]["updated"] == 1
    rows = open_dataset(dest, "records", runs=[again["run_id"]]).to_table().to_pylist()
    assert [(r["path"], r["version"], r["title"]) for r in rows] == [(f"seeds/{SEED}", 2, "Envoy, corrected")]


def test_an_invalid_row_still_quarantines_and_a_valid_one_is_never_dropped(run_ingest, press, tmp_path):
    (press / "metadata.csv").write_text(
        "filename,dc.title,dc.date,dc.language\n"
        "duplicates/copy-of-000.txt,First outlet,2021-13-45,\n"  # invalid: quarantined, not a record
        f"seeds/{SEED},Second outlet,2021-01-20,\n"
        "seeds/001_291c46b230e7e5bc.txt,Upper-case language,,EN\n", encoding="utf-8")  # a valid row, no record's
    dest = str(tmp_path / "store")
    run_ingest(str(press), dest=dest)
    files = {f["path"]: f for f in open_dataset(dest, "files").to_table().to_pylist()}
    assert (files["duplicates/copy-of-000.txt"]["outcome"], files["duplicates/copy-of-000.txt"]["reason"]) == (
        "quarantine", "invalid-metadata")
    # The next file with those bytes is the document, with its own description.
    assert files[f"seeds/{SEED}"]["outcome"] == "document"
    assert current(dest)[f"seeds/{SEED}"]["title"] == "Second outlet"
    assert files["seeds/001_291c46b230e7e5bc.txt"]["reason"] == "invalid-metadata"
    assert "duplicates/copy-of-000.txt" not in current(dest)


def test_as_of_an_unknown_run_is_an_error_and_documents_have_views_as_of_too(run_ingest, press, tmp_path):
    dest = str(tmp_path / "store")
    first = run_ingest(str(press / "seeds"), dest=dest)
    run_ingest(str(press), dest=dest)
    assert open_dataset(dest, "documents", as_of=first["run_id"]).count_rows() == 5
    assert len(current(dest, as_of=first["run_id"])) == 5  # paths relative to that run's SOURCE
    with pytest.raises(NotFoundError):
        open_dataset(dest, "records", as_of="20200101T000000Z-0000")


def _json(row: dict) -> dict:
    from archive.records import json_form

    return json_form(row)


def test_current_view_filter_reads_lazily_in_duckdb(run_ingest, press, tmp_path):
    """The current view is a filtered pyarrow Dataset: DuckDB and pyarrow scanners see the same rows."""
    import duckdb

    dest = str(tmp_path / "store")
    run_ingest(str(press), dest=dest)
    sidecar(press, ("Corrected", "2021-01-22", "AA"))
    run_ingest(str(press), dest=dest)
    records_ds = open_dataset(dest, "records")
    assert isinstance(records_ds, pa.dataset.Dataset)
    assert duckdb.sql("select count(*) from records_ds").fetchall() == [(records_ds.count_rows(),)] == [(6,)]
    assert duckdb.sql(f"select title from records_ds where path = 'seeds/{SEED}'").fetchall() == [("Corrected",)]


def test_a_part_at_a_time_the_commit_gives_the_versions_of_one_settle(run_ingest, press, tmp_path, monkeypatch):
    """The commit settles the candidates a group of parts at a time (settle.SETTLE_ROWS): one part at a time, each
    record gets the version, change and description one group of the whole run gives it, the duplicate whose
    document another batch's part made included."""
    from archive.catalogue import settle

    groups: list[int] = []
    real = settle._settle_group

    def spy(store, run, group, *args):
        groups.append(len(group))
        return real(store, run, group, *args)

    monkeypatch.setattr(settle, "_settle_group", spy)
    versions = {}
    for rows in (settle.SETTLE_ROWS, 1):
        monkeypatch.setattr(settle, "SETTLE_ROWS", rows)
        source, dest, groups[:] = tmp_path / f"press-{rows}", str(tmp_path / f"store-{rows}"), []
        shutil.copytree(press, source)
        first = run_ingest(str(source), dest=dest, batch_files=1)  # (a part a file)
        sidecar(source, ("Envoy on Black January (corrected)", "2021-01-21", "Anadolu Agency"))
        with open(source / "seeds" / "004_fe37357cb45043f5.txt", "a", encoding="utf-8") as page:
            page.write("\nA line the rescan found.\n")
        second = run_ingest(str(source), dest=dest, batch_files=1)
        assert (first["counts"]["duplicates"], second["counts"]["updated"]) == (1, 2)
        assert groups == ([1] * 12 if rows == 1 else [6, 6])  # (the sidecar file makes no record)
        versions[rows] = sorted(tuple((k, str(v)) for k, v in row.items() if k not in ("run_id", "recorded_at"))
                                for row in open_dataset(dest, "records", runs=[first["run_id"], second["run_id"]])
                                .to_table().to_pylist())
    assert versions[1] == versions[settle.SETTLE_ROWS] and len(versions[1]) == 8


def test_a_duplicate_of_a_committed_document_at_a_new_path_is_a_record(run_ingest, press, seeds_dir, tmp_path):
    """A file whose bytes another run published, at a path with no record yet, is a record (version 1), described
    by its sidecar row over the document's derived description."""
    dest = str(tmp_path / "store")
    first = run_ingest(str(press / "seeds"), dest=dest)
    second = run_ingest(str(press), dest=dest)  # (every file a duplicate of the first run's, at a new path)
    assert (second["counts"]["documents"], second["counts"]["duplicates"]) == (0, 6)
    rows = {r["path"]: r for r in open_dataset(dest, "records", runs=[second["run_id"]]).to_table().to_pylist()}
    assert sorted(rows) == ["duplicates/copy-of-000.txt", *(f"seeds/{p.name}" for p in sorted(seeds_dir.iterdir()))]
    assert {(r["version"], r["change"]) for r in rows.values()} == {(1, "new")}
    before = current(dest, as_of=first["run_id"])[SEED]
    assert rows["duplicates/copy-of-000.txt"]["derived"] == before["derived"]
    assert (rows[f"seeds/{SEED}"]["title"], rows["duplicates/copy-of-000.txt"]["title"]) == (
        "Envoy on Black January", before["title"])


def test_a_duplicate_settled_in_its_own_group_takes_the_description_another_part_made(run_ingest, press, tmp_path,
                                                                                         monkeypatch):
    """A candidate whose document another batch made (change pending) gets that document's derived description
    from the run's parts, in whichever group of parts that batch's candidates are settled."""
    import pyarrow.parquet as pq

    from archive.catalogue import settle
    from archive.provenance import RunContext, new_run_id
    from archive.publish import PartInfo, committed_manifests, part_key, write_table_part

    def read(key):
        return pq.read_table(store.arrow_path(key), filesystem=store.arrow_filesystem())

    dest = str(tmp_path / "store")
    run_ingest(str(press), dest=dest, batch_files=1)
    store = open_store(dest)
    (manifest,) = committed_manifests(store)
    parts = [PartInfo(**p) for p in manifest["parts"] if p["dataset"] == "records"]
    tables = [read(p.key) for p in parts]
    made = next(t for t in tables if t["path"][0].as_py() == "seeds/001_291c46b230e7e5bc.txt").to_pylist()[0]
    path = "elsewhere/copy-of-001.txt"  # (as a batch writes a duplicate of a document it did not make)
    pending = {**made, "path": path, "record_id": record_id(path), "change": "pending", "version": 0, "derived": "",
               "description_sha256": ""}
    run = RunContext(new_run_id(), None, str(press))
    candidates = parts + [write_table_part(store, "records", part_key("records", run.run_id, 0),
                                           pa.Table.from_pylist([pending], tables[0].schema))]
    settled = {}
    for rows in (settle.SETTLE_ROWS, 1):  # (one group; a group a part)
        monkeypatch.setattr(settle, "SETTLE_ROWS", rows)
        out = settle.settle_records(store, run, candidates, [],
                                    DocumentsOnceCommitted({t["doc_id"][0].as_py() for t in tables}), 50)
        assert out.counts == {"records": len(candidates), "updated": 0}
        (settled[rows],) = [r for p in out.parts for r in read(p.key).to_pylist() if r["path"] == path]
    for row in settled.values():
        assert (row["path"], row["version"], row["change"], row["derived"], row["title"]) == (
            path, 1, "new", made["derived"], made["title"])
