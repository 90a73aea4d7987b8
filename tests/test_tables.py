"""The datasets as Apache Iceberg tables: after clean runs, cross-batch duplicates, a run killed (kill -9) before
its manifest, one killed between its manifest and its tables, and two runs committing at once, the Iceberg scan,
Polars and open_dataset give the same rows, on a local store, moto and SeaweedFS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from archive.audit import check_tables, check_unlisted
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.read import iceberg_table, open_dataset, snapshot_of
from archive.records import DATASETS
from archive.sources import open_source
from archive.storage import open_store
from tests.tables_util import assert_tables_match


def ingest(store, folder, *, split: int = 3):
    """One run of the library's batches: the first split files, then all of them (each of those a cross-batch
    duplicate that reconcile settles at commit by rewriting the second batch)."""
    source = open_source(str(folder))
    run = RunContext(new_run_id(), "tables", source.url)
    refs = list(source.iter_files())
    summaries = [process_batch(store, source, run, 0, refs[:split]), process_batch(store, source, run, 1, refs)]
    return commit_run(store, run, summaries, parameters={}, warnings=[])


KILLED = """
import sys
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import open_store

store, source = open_store(sys.argv[1]), open_source(sys.argv[2])
run = RunContext(new_run_id(), "killed", source.url)
summary = process_batch(store, source, run, 0, list(source.iter_files()))
if sys.argv[3] == "commit":
    commit_run(store, run, [summary], parameters={}, warnings=[])
print(run.run_id, flush=True)
sys.stdin.read()
"""


def killed_run(dest: str, folder, *, commit: bool) -> None:
    """A run in a process of its own, killed with SIGKILL once its parts are written (commit: once its manifest has
    landed, its tables not followed)."""
    env = {**os.environ, "ARCHIVE_TABLES": "off" if commit else "on"}
    process = subprocess.Popen([sys.executable, "-c", KILLED, dest, str(folder), "commit" if commit else "no"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout.readline().strip(), "the run ended before it could be killed"
    finally:
        process.kill()  # SIGKILL
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def test_the_tables_give_exactly_the_committed_rows(dest, seeds_dir, tmp_path):
    store = open_store(dest)
    first = tmp_path / "first"
    first.mkdir()
    seeds = sorted(seeds_dir.iterdir())
    for seed in seeds[:3]:
        (first / seed.name).write_bytes(seed.read_bytes())
    ingest(store, first, split=2)
    one = [m["run_id"] for m in committed_manifests(store)][0]

    # kill -9 of a run that wrote its parts and never committed: in no table, no view.
    killed_run(dest, seeds_dir, commit=False)
    # kill -9 of a run between its manifest and its tables: they are behind, and caught up by the next commit.
    killed_run(dest, seeds_dir, commit=True)
    assert [d.kind for d in check_tables_of(store)] == ["table-behind"] * 4  # documents, files, events, records

    # Two runs committing at once, over the same new bytes: each doc_id published once, both runs in the tables.
    second, third = tmp_path / "second", tmp_path / "third"
    for folder in (second, third):
        folder.mkdir()
        (folder / "shared.txt").write_text("A letter both runs hold.\n\nIt is long enough to be a document.\n")
        (folder / f"{folder.name}.txt").write_text(f"Only the {folder.name} run holds this letter, of some words.\n")
    errors = []

    def run(folder):
        try:
            ingest(store, folder, split=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (second, third)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    manifests = list(committed_manifests(store))
    assert len(manifests) == 4
    doc_ids = assert_tables_match(dest)
    assert len(doc_ids) == len(set(doc_ids)) == 8  # 5 seeds, shared.txt, second.txt, third.txt
    for name in DATASETS:
        table = iceberg_table(dest, name)
        assert len(table.schemas()) == 1, name  # one schema per table across runs
        written = open_dataset(dest, name, runs=[m["run_id"] for m in manifests])
        assert table.scan().to_arrow().num_rows == written.count_rows(), name
    # Time travel: the first run's snapshot holds its rows only.
    documents = iceberg_table(dest, "documents")
    assert documents.scan(snapshot_id=snapshot_of(documents, one)).to_arrow().num_rows == 3
    assert [s.summary["archive.run-id"] for s in documents.snapshots()] == \
        [m["run_id"] for m in sorted(manifests, key=lambda m: m["committed_at"])]
    # No committed run left an unlisted part in its folder (the rewritten batches' superseded parts are gone); the
    # run that never committed is named once its parts are an hour old, as gc would take them.
    assert list(check_unlisted(store, manifests)) == []
    stray = [c.finding.kind for c in check_unlisted(store, manifests, older_than=0)]
    assert stray and set(stray) == {"uncommitted-part"}
    store.put_bytes(f"datasets/documents/run={one}/part-00009-abcdef.parquet", b"not listed")
    assert [(c.finding.kind, c.key) for c in check_unlisted(store, manifests)] == [
        ("unlisted-part", f"datasets/documents/run={one}/part-00009-abcdef.parquet")]
    assert check_tables_of(store) == []

    # A part file gone: the Iceberg scan fails, where a glob of datasets/ would return fewer rows without a word.
    store.delete(next(p["key"] for p in manifests[0]["parts"] if p["dataset"] == "documents"))
    with pytest.raises(OSError):
        iceberg_table(dest, "documents").scan().to_arrow()


def check_tables_of(store):
    return [c.finding for c in check_tables(store, list(committed_manifests(store)))]


def test_two_followers_racing_for_a_table_append_each_run_once(seeds_dir, tmp_path, monkeypatch):
    """Both read the table before either commits: one table commit lands, the other reads the table again and finds
    the run there (pyiceberg's own retry would have appended it a second time)."""
    from archive.tables import catalog
    from archive.tables.sync import follow

    store = open_store(str(tmp_path / "store"))
    monkeypatch.setenv("ARCHIVE_TABLES", "off")
    ingest(store, seeds_dir)
    both_staged = threading.Barrier(2, timeout=60)
    first_write = threading.local()
    real = catalog.StoreCatalog._write

    def write_once_both_staged(self, identifier, version, metadata):
        if version > 1 and not getattr(first_write, "done", False):  # (past creating the table)
            first_write.done = True
            both_staged.wait()
        return real(self, identifier, version, metadata)

    monkeypatch.setattr(catalog.StoreCatalog, "_write", write_once_both_staged)
    results, errors = [], []

    def run():
        try:
            results.append(follow(store))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(len(r.appended) for r in results)[0] < 4  # one of them found runs already appended
    for name in ("documents", "files", "events", "records"):
        table = iceberg_table(store, name)
        assert len(table.snapshots()) == 1, name
        assert table.scan().to_arrow().num_rows == open_dataset(store, name).count_rows(), name
    assert check_tables_of(store) == []


def test_archive_tables_names_a_run_behind_and_sync_catches_it_up(seeds_dir, tmp_path, monkeypatch, capsys):
    import json

    from archive_flows.cli import main

    dest = str(tmp_path / "store")
    store = open_store(dest)
    ingest(store, seeds_dir)
    monkeypatch.setenv("ARCHIVE_TABLES", "off")  # the next run's tables are not followed: as after a crash
    run = ingest(store, seeds_dir).manifest.removeprefix("runs/").removesuffix(".json")
    capsys.readouterr()
    assert main(["tables", "--dest", dest]) == 1
    out = capsys.readouterr().out
    assert f"run {run} is committed but not in the table yet" in out and "datasets.files" in out
    assert main(["tables", "--dest", dest, "--sync", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["appended"] == {"files": [run], "events": [run]}  # (a re-run: no documents, no new versions)
    assert {t["table"]: t["latest_run"] for t in report["tables"]}["datasets.files"] == run
    assert all(not t["problems"] for t in report["tables"])


def test_a_catalog_named_by_uri_holds_the_tables_instead(seeds_dir, tmp_path, monkeypatch):
    """ARCHIVE_CATALOG_URI with pyiceberg's standard configuration: here a SQL catalog (SQLite), a real catalog of
    the kind a team runs; the store then holds no table metadata of its own."""
    from pyiceberg.catalog import load_catalog

    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("ARCHIVE_CATALOG_URI", uri)
    monkeypatch.setenv("PYICEBERG_CATALOG__ARCHIVE__WAREHOUSE", (tmp_path / "warehouse").as_uri())
    import pyiceberg.catalog
    from pyiceberg.utils.config import Config

    monkeypatch.setattr(pyiceberg.catalog, "_ENV_CONFIG", Config())  # (read at import: as a new process reads it)
    dest = str(tmp_path / "store")
    store = open_store(dest)
    ingest(store, seeds_dir)
    ingest(store, seeds_dir)  # (a re-run: duplicates only)
    assert len(assert_tables_match(dest)) == 5
    assert not (tmp_path / "store" / "tables").exists()
    catalog = load_catalog("archive", uri=uri, warehouse=(tmp_path / "warehouse").as_uri())
    assert ("datasets", "documents") in catalog.list_tables("datasets")
    runs = [m["run_id"] for m in sorted(committed_manifests(store), key=lambda m: m["committed_at"])]
    assert [s.summary["archive.run-id"] for s in catalog.load_table("datasets.files").snapshots()] == runs
    assert check_tables_of(store) == []
