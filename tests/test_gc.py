"""archive gc: exactly the parts and originals no committed run references go, and only when old enough."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from archive.audit import check_objects, check_parts, referenced_objects, selected_manifests
from archive.commitlock import LOCK_KEY, commit_lock
from archive.gc import delete_garbage, find_garbage
from archive.ingest import process_batch, total_counts
from archive.provenance import RunContext, new_run_id
from archive.publish import build_manifest, commit_manifest, manifest_key
from archive.read import open_dataset
from archive.sources import open_source
from archive.storage import object_key, open_store

pytestmark = pytest.mark.flow

CRASHED_FILES = {
    "letter.txt": b"Dear editor, the minutes of the 20 January meeting follow below.\n",
    "blank.txt": b"",  # quarantined as empty: its original is kept all the same
    "scan.bin": bytes(range(256)) * 8,  # quarantined as unsupported-format
}


def keys_and_sizes(store) -> dict[str, int]:
    return {i.key: i.size for prefix in ("datasets/", "objects/", "runs/", "locks/") for i in store.list(prefix)}


def crash_a_batch(store, folder, files: dict[str, bytes]):
    """A batch task's work for one batch of a run that then dies before its manifest:
    parts and originals in the store, nothing committed. Returns (run, summary)."""
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    source = open_source(str(folder))
    run = RunContext(new_run_id(), None, source.url)
    return run, process_batch(store, source, run, 0, list(source.iter_files()))


def commit(store, run, summary) -> None:
    """What the commit task does once the batches are done: the manifest makes the run exist."""
    commit_manifest(store, build_manifest(
        run_id=run.run_id, kind="ingest", collection=None, source=run.source, started_at=run.started_at,
        flow_run_id=None, started_by=run.started_by, parameters={}, counts=total_counts([summary]),
        parts=summary.parts))


def verified(store) -> int:
    """Fixity of every committed run holds (as archive verify checks it); returns the originals checked."""
    manifests = selected_manifests(store)
    parts = list(check_parts(store, manifests))
    assert [c.finding for c in parts if not c.ok] == []
    objects = list(check_objects(store, referenced_objects(store, manifests, {c.key for c in parts})))
    assert [c.finding for c in objects if not c.ok] == []
    return len(objects)


def published(dest) -> dict:
    """What analysts see, in a stable order."""
    tables = {}
    for name, sort in (("documents", "doc_id"), ("files", "path"), ("quarantine", "path"), ("events", "event_id")):
        table = open_dataset(dest, name).to_table()
        tables[name] = table.sort_by(sort).to_pylist()
    return tables


def test_listing_reports_when_each_key_was_written(store):
    before = time.time()
    store.put_bytes("datasets/files/run=20261201T000000Z-aaaa/part-00000.parquet", b"x")
    after = time.time()
    (info,) = store.list("datasets/")
    assert info.size == 1
    assert before - 1.5 <= info.modified <= after + 1  # S3 reports whole seconds


def test_gc_lists_then_removes_exactly_what_no_committed_run_references(prefect_harness, seeds_dir, dest, tmp_path):
    from archive_flows.ingest import ingest

    seeds = sorted(seeds_dir.iterdir())
    # A --metadata sidecar is kept as an original without a files row: only the run's notes name it.
    sidecar = tmp_path / "described.csv"
    sidecar.write_text(f"filename,dc.title\n{seeds[0].name},A seed with a title from the sidecar\n")
    committed = ingest(str(seeds_dir), dest=dest, collection="seeds", metadata=str(sidecar), workers=1)
    store = open_store(dest)
    sidecar_key = object_key(hashlib.sha256(sidecar.read_bytes()).hexdigest())
    assert store.exists(sidecar_key)
    committed_keys = keys_and_sizes(store)
    seen_before = published(dest)

    # A run that crashed long ago: its batch wrote parts and originals (one of them the
    # bytes of a committed seed, already stored and referenced), then no manifest.
    crashed, crashed_summary = crash_a_batch(store, tmp_path / "crashed",
                                             {**CRASHED_FILES, "again.txt": seeds[1].read_bytes()})
    stray = f"datasets/documents/run={crashed.run_id}/_SUCCESS"
    store.put_bytes(stray, b"")  # not a part file, but under datasets/ and referenced by nothing
    old = set(keys_and_sizes(store)) - set(committed_keys)
    new_objects = {object_key(hashlib.sha256(d).hexdigest()) for d in CRASHED_FILES.values()}
    assert old == {p.key for p in crashed_summary.parts} | new_objects | {stray}
    crashed_done = time.time()
    time.sleep(2.1)  # S3 reports whole seconds: leave a clear gap before the next run
    # A run still in progress: its first batch is written, its manifest is not yet.
    running, running_summary = crash_a_batch(store, tmp_path / "running",
                                             {"minutes.txt": b"Minutes of the 2 February session.\n"})
    young = set(keys_and_sizes(store)) - set(committed_keys) - old
    assert young == {p.key for p in running_summary.parts} | {
        object_key(hashlib.sha256(b"Minutes of the 2 February session.\n").hexdigest())}
    everything = keys_and_sizes(store)

    # Dry run, everything old enough: exactly the leftovers of both runs, nothing referenced,
    # no manifest and no lock (even while a commit holds it); nothing removed.
    with commit_lock(store, "20991231T000000Z-busy"):
        assert store.exists(LOCK_KEY)
        plan = find_garbage(store, older_than=0)
    assert {c.key for c in plan.candidates} == old | young
    assert {c.key: c.kind for c in plan.candidates} == {
        **{k: "part" for k in old | young if k.endswith(".parquet")},
        **{k: "object" for k in old | young if k.startswith("objects/")},
        stray: "other"}
    assert all(c.bytes == everything[c.key] for c in plan.candidates)
    assert not {c.key for c in plan.candidates} & set(committed_keys)
    assert plan.too_recent == () and plan.runs == {committed["run_id"]}
    assert plan.referenced == sum(1 for k in committed_keys if k.startswith(("datasets/", "objects/")))
    assert keys_and_sizes(store) == everything

    # Nothing is an hour old yet: all kept as too recent.
    plan = find_garbage(store, older_than=3600)
    assert plan.candidates == ()
    assert {c.key for c in plan.too_recent} == old | young

    # A minute after the crashed run, the run in progress is still too young to touch.
    plan = find_garbage(store, older_than=60, now=crashed_done + 0.5 + 60)
    assert {c.key for c in plan.candidates} == old
    assert {c.key for c in plan.too_recent} == young
    assert all(c.age >= 60 for c in plan.candidates) and all(c.age < 60 for c in plan.too_recent)
    assert keys_and_sizes(store) == everything

    result = delete_garbage(store, plan)
    assert {c.key for c in result.removed} == old
    assert result.referenced_meanwhile == () and result.already_gone == ()
    assert keys_and_sizes(store) == {k: v for k, v in everything.items() if k not in old}

    # The committed runs are whole: fixity holds, analysts see exactly what they saw.
    assert verified(store) == 5
    assert store.exists(sidecar_key)
    assert published(dest) == seen_before
    for name in ("documents", "quarantine"):
        for key in open_dataset(dest, name).to_table(columns=["object_key"]).column("object_key").to_pylist():
            assert store.exists(key)


def test_a_run_committed_after_the_plan_keeps_everything_it_references(store, tmp_path):
    first, first_summary = crash_a_batch(store, tmp_path / "first", {"a.txt": b"The first letter of the batch.\n"})
    commit(store, first, first_summary)
    running, summary = crash_a_batch(store, tmp_path / "running",
                                     {**CRASHED_FILES, "a.txt": b"The first letter of the batch.\n"})
    plan = find_garbage(store, older_than=0)
    leftovers = {c.key for c in plan.candidates}
    assert leftovers == {p.key for p in summary.parts} | {
        object_key(hashlib.sha256(d).hexdigest()) for d in CRASHED_FILES.values()}

    commit(store, running, summary)  # between the plan and the deletion
    result = delete_garbage(store, plan)
    assert result.removed == ()
    assert {c.key for c in result.referenced_meanwhile} == leftovers
    assert all(store.exists(key) for key in leftovers)
    assert verified(store) == 4
    assert find_garbage(store, older_than=0).candidates == ()


@pytest.mark.cli
def test_gc_command_dry_run_json_and_delete(seeds_dir, tmp_path):
    store_dir = tmp_path / "store"
    store = open_store(str(store_dir))
    seeded, summary = crash_a_batch(store, tmp_path / "seeds", {p.name: p.read_bytes() for p in seeds_dir.iterdir()})
    commit(store, seeded, summary)
    _, crashed = crash_a_batch(store, tmp_path / "crashed", CRASHED_FILES)
    leftovers = {p.key for p in crashed.parts} | {
        object_key(hashlib.sha256(d).hexdigest()) for d in CRASHED_FILES.values()}
    everything = keys_and_sizes(store)
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVE_DEST"}

    def archive(*args):
        # gc needs no Prefect: the command runs in-process here and must not even import it.
        code = ("import sys; from archive_flows.cli import main; code = main(sys.argv[1:]); "
                "assert 'prefect' not in sys.modules, 'gc imported prefect'; sys.exit(code)")
        return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)

    done = archive("gc", "--dest", str(store_dir), "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    listed = {line.split()[-1]: line.split()[2] for line in lines if line.startswith("would remove")}
    assert {k: kind for k, kind in listed.items()} == {
        k: "part" if k.startswith("datasets/") else "object" for k in leftovers}
    for key in leftovers:
        line = next(line for line in lines if line.endswith(key))
        assert f"{everything[key]:,} bytes" in line
    parts = sum(1 for k in leftovers if k.startswith("datasets/"))
    total = sum(everything[k] for k in leftovers)
    assert (f"Would remove {parts} part(s), {len(leftovers) - parts} object(s), 0 other: "
            f"{total:,} bytes from {store_dir}. "
            f"Kept: 0 too recent (younger than 0s), ") in done.stdout
    assert "Dry run: nothing was removed; --delete removes them." in done.stdout
    assert keys_and_sizes(store) == everything

    done = archive("gc", "--dest", str(store_dir))  # default: older than 1h
    assert done.returncode == 0, done.stderr
    assert "would remove" not in done.stdout
    assert (f"Would remove 0 part(s), 0 object(s), 0 other: 0 bytes from {store_dir}. "
            f"Kept: {len(leftovers)} too recent (younger than 1h)") in done.stdout

    done = archive("gc", "--dest", str(store_dir), "--older-than", "0s", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is True and report["removed"] == [] and report["committed_runs"] == 1
    assert {c["key"]: (c["kind"], c["bytes"]) for c in report["candidates"]} == {
        k: ("part" if k.startswith("datasets/") else "object", everything[k]) for k in leftovers}
    assert report["totals"] == {"parts": parts, "objects": len(leftovers) - parts, "other": 0, "bytes": total}
    assert report["kept"]["too_recent"] == 0 and report["kept"]["referenced"] == sum(
        1 for k in everything if k.startswith(("datasets/", "objects/")) and k not in leftovers)

    # A committed run whose files part is gone: gc cannot tell what it references, so it removes nothing.
    files_part = next(p.key for p in summary.parts if p.dataset == "files")
    saved = store.get_bytes(files_part)
    store.delete(files_part)
    done = archive("gc", "--dest", str(store_dir), "--older-than", "0s", "--delete")
    assert done.returncode == 1
    assert done.stderr.startswith(f"archive: gc failed, nothing was removed: "
                                  f"cannot tell what committed run {seeded.run_id} references")
    assert files_part in done.stderr and len(done.stderr.splitlines()) == 1
    store.put_bytes(files_part, saved)
    assert keys_and_sizes(store).keys() == everything.keys()

    done = archive("gc", "--dest", str(store_dir), "--older-than", "0s", "--delete")
    assert done.returncode == 0, done.stderr
    assert {line.split()[-1] for line in done.stdout.splitlines() if line.startswith("removed")} == leftovers
    assert (f"Removed {parts} part(s), {len(leftovers) - parts} object(s), 0 other: "
            f"{total:,} bytes from {store_dir}.") in done.stdout
    assert keys_and_sizes(store) == {k: v for k, v in everything.items() if k not in leftovers}
    assert store.exists(manifest_key(seeded.run_id)) and verified(store) == 5

    again = json.loads(archive("gc", "--dest", str(store_dir), "--older-than", "0s", "--json").stdout)
    assert again["candidates"] == []

    usage = archive("gc", "--dest", str(store_dir), "--older-than", "soon")
    assert usage.returncode == 2 and "not a duration: 'soon'" in usage.stderr


def test_an_original_gc_removes_while_a_run_relies_on_it_fails_that_run_not_the_archive(
        prefect_harness, tmp_path, monkeypatch):
    """A crashed run left an original; a new run of the same file finds it stored and does not upload it;
    gc removes it (unreferenced, old) before the new run commits: the new run must not commit a reference
    to a missing original. It fails with the key named; run again, it stores the original and commits."""
    import archive_flows.ingest as flow_module
    from archive.errors import StoreError

    dest = str(tmp_path / "store")
    store = open_store(dest)
    crash_a_batch(store, tmp_path / "crashed", {"letter.txt": CRASHED_FILES["letter.txt"]})
    leftover = object_key(hashlib.sha256(CRASHED_FILES["letter.txt"]).hexdigest())
    assert store.exists(leftover)
    # The crash was two hours ago: its leftovers are old enough for gc's default --older-than 1h.
    for info in list(store.list("objects/")) + list(store.list("datasets/")):
        stamp = time.time() - 7200
        os.utime(tmp_path / "store" / info.key, (stamp, stamp))
    source = tmp_path / "again"
    source.mkdir()
    (source / "letter.txt").write_bytes(CRASHED_FILES["letter.txt"])

    real = flow_module.process_batch

    def batch_then_gc(*args, **kwargs):
        summary = real(*args, **kwargs)
        assert summary.reused_originals == [leftover]  # found stored, not uploaded again
        plan = find_garbage(store, older_than=3600)  # gc runs meanwhile: the leftover is unreferenced and old
        assert leftover in {c.key for c in plan.candidates}
        assert plan.too_recent, "this run's own parts are young: gc keeps them"
        delete_garbage(store, plan)
        return summary

    monkeypatch.setattr(flow_module, "process_batch", batch_then_gc)
    with pytest.raises(StoreError, match="removed before the commit") as failed:
        flow_module.ingest(str(source), dest=dest, workers=1)  # workers=1: the batch runs where the patch is
    assert failed.value.key == leftover
    assert not list(store.list("runs/"))  # nothing committed

    monkeypatch.setattr(flow_module, "process_batch", real)
    result = flow_module.ingest(str(source), dest=dest, workers=1)
    assert result["counts"]["documents"] == 1
    assert verified(store) == 1  # the original is back and holds
