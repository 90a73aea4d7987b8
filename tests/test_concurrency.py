"""Two ingests of overlapping sources into one DEST at the same time: both commit, each document once."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from archive.commitlock import LOCK_KEY, CommitLockTimeout, commit_lock
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import LocalStore, open_store

pytestmark = pytest.mark.flow


def test_overlapping_runs_at_the_same_time_publish_each_document_once(prefect_harness, seeds_dir, dest, tmp_path,
                                                                       monkeypatch):
    import archive_flows.ingest as flow_module

    seeds = sorted(seeds_dir.iterdir())
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, chosen in ((first, seeds[:4]), (second, seeds[2:])):  # seeds 2 and 3 are in both
        folder.mkdir()
        for seed in chosen:
            shutil.copy(seed, folder / seed.name)

    # Both runs finish their batches before either commits: each took its
    # snapshot of the committed documents when there were none.
    both_processed = threading.Barrier(2, timeout=120)
    real = flow_module.process_batch

    def process_then_wait(*args, **kwargs):
        summary = real(*args, **kwargs)
        both_processed.wait()
        return summary

    monkeypatch.setattr(flow_module, "process_batch", process_then_wait)
    results, errors = {}, []

    def run(name, folder):
        try:
            results[name] = flow_module.ingest(str(folder), dest=dest, workers=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, f)) for n, f in (("first", first), ("second", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    store = open_store(dest)
    manifests = list(committed_manifests(store))
    assert sorted(m["run_id"] for m in manifests) == sorted(r["run_id"] for r in results.values())
    doc_ids = open_dataset(dest, "documents").to_table(columns=["doc_id"]).column("doc_id").to_pylist()
    assert len(doc_ids) == len(set(doc_ids)) == 5
    assert sum(r["counts"]["documents"] for r in results.values()) == 5
    assert sum(r["counts"]["duplicates"] for r in results.values()) == 2
    # The later commit says what it turned into duplicates.
    assert any(r["notes"] for r in results.values())
    assert not store.exists(LOCK_KEY)


def test_commit_lock_excludes_and_breaks_stale_locks(tmp_path):
    store = LocalStore(tmp_path / "store")
    with commit_lock(store, "20261122T153000Z-aaaa"):
        assert store.exists(LOCK_KEY)
        with pytest.raises(CommitLockTimeout):
            with commit_lock(store, "20261122T153000Z-bbbb", timeout=0.2):
                pass
    assert not store.exists(LOCK_KEY)
    # A lock left by a run that died is broken once stale.
    store.put_bytes(LOCK_KEY, b'{"run_id": "dead", "acquired_at": "2020-01-01T00:00:00Z"}')
    with commit_lock(store, "20261122T153000Z-cccc", timeout=5, stale_after=60):
        assert b"cccc" in store.get_bytes(LOCK_KEY)


def test_a_lock_left_by_a_killed_process_of_this_host_is_broken_at_once(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    store = LocalStore(tmp_path / "store")
    # A process that takes the lock and is killed (SIGKILL) while holding it: no finally runs.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from archive.commitlock import commit_lock; from archive.storage import LocalStore\n"
        f"with commit_lock(LocalStore({str(tmp_path / 'store')!r}), '20261201T000000Z-dead'):\n"
        "    print('held', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    left = json.loads(store.get_bytes(LOCK_KEY))
    assert left["pid"] == holder.pid and left["run_id"] == "20261201T000000Z-dead"
    # While it lives, the lock holds (it is recent, and its process is there).
    with pytest.raises(CommitLockTimeout):
        with commit_lock(store, "20261201T000000Z-wait", timeout=0.3):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert store.exists(LOCK_KEY)  # still there: nobody released it
    # Recent, but its process is gone: the next commit breaks it without waiting for stale_after.
    with commit_lock(store, "20261201T000000Z-next", timeout=5, stale_after=3600):
        assert json.loads(store.get_bytes(LOCK_KEY))["run_id"] == "20261201T000000Z-next"
    assert not store.exists(LOCK_KEY)


def test_a_retried_commit_takes_over_its_own_run_s_lock(tmp_path):
    store = LocalStore(tmp_path / "store")
    # A commit whose lock release failed leaves its lock; the task's retry must not wait for itself.
    store.put_bytes(LOCK_KEY, json.dumps({"run_id": "20261201T000000Z-same", "acquired_at": "2099-01-01T00:00:00Z",
                                          "host": "elsewhere", "pid": 1}).encode())
    with commit_lock(store, "20261201T000000Z-same", timeout=0.5):
        assert json.loads(store.get_bytes(LOCK_KEY))["run_id"] == "20261201T000000Z-same"
    assert not store.exists(LOCK_KEY)
    # Another run's recent lock from another host is still waited on.
    store.put_bytes(LOCK_KEY, json.dumps({"run_id": "20261201T000000Z-other", "acquired_at": "2099-01-01T00:00:00Z",
                                          "host": "elsewhere", "pid": 1}).encode())
    with pytest.raises(CommitLockTimeout):
        with commit_lock(store, "20261201T000000Z-same", timeout=0.3):
            pass


def test_a_retried_commit_whose_manifest_landed_returns_it_instead_of_failing(seeds_dir, tmp_path):
    """The commit task's retry after a lost answer: the manifest is there, so the run is committed, once."""
    from archive.ingest import commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import open_source

    dest = str(tmp_path / "store")
    store = open_store(dest)
    source = open_source(str(seeds_dir))
    run = RunContext(new_run_id(), "seeds", source.url)
    summary = process_batch(store, source, run, 0, list(source.iter_files()))
    first = commit_run(store, run, [summary], parameters={}, warnings=[])
    again = commit_run(open_store(dest), run, [summary], parameters={}, warnings=[])  # as a retried commit task would
    assert again.manifest == first.manifest and again.counts == first.counts
    (manifest,) = committed_manifests(store)
    assert manifest["run_id"] == run.run_id
    assert open_dataset(dest, "documents").count_rows() == 5
    assert not store.exists(LOCK_KEY)


def test_two_runs_correcting_the_same_record_at_once_both_land_in_commit_order(prefect_harness, seeds_dir, dest,
                                                                              tmp_path, monkeypatch):
    import archive_flows.ingest as flow_module

    seed = sorted(seeds_dir.iterdir())[0]
    first = flow_module.ingest(str(seeds_dir), dest=dest, workers=1)  # version 1 of each seed's record
    folders = {}
    for name in ("a", "b"):  # the same path, each with its own correction
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        shutil.copy(seed, folder / seed.name)
        (folder / "metadata.csv").write_text(f"filename,dc.title\n{seed.name},Corrected by {name}\n", encoding="utf-8")

    both_processed = threading.Barrier(2, timeout=120)
    real = flow_module.process_batch

    def process_then_wait(*args, **kwargs):
        summary = real(*args, **kwargs)
        both_processed.wait()  # each settles its records against what committed meanwhile, not its start
        return summary

    monkeypatch.setattr(flow_module, "process_batch", process_then_wait)
    results, errors = {}, []

    def run(name):
        try:
            results[name] = flow_module.ingest(str(folders[name]), dest=dest, workers=1, reuse=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert results["a"]["counts"]["updated"] == results["b"]["counts"]["updated"] == 1

    store = open_store(dest)
    order = [m["run_id"] for m in sorted(committed_manifests(store), key=lambda m: m["committed_at"])]
    assert order[0] == first["run_id"] and set(order[1:]) == {r["run_id"] for r in results.values()}
    by_run = {r["run_id"]: name for name, r in results.items()}
    versions = [r for r in open_dataset(dest, "records", runs=order).to_table().to_pylist() if r["path"] == seed.name]
    assert [(v["version"], v["run_id"]) for v in sorted(versions, key=lambda v: v["version"])] == [
        (1, order[0]), (2, order[1]), (3, order[2])]
    assert {v["title"] for v in versions if v["version"] > 1} == {"Corrected by a", "Corrected by b"}
    (now,) = [r for r in open_dataset(dest, "records").to_table().to_pylist() if r["path"] == seed.name]
    assert (now["version"], now["title"]) == (3, f"Corrected by {by_run[order[2]]}")
    events = [e for e in open_dataset(dest, "events").to_table().to_pylist()
              if e["event_type"] == "metadata modification"]
    assert sorted(e["run_id"] for e in events) == sorted(order[1:])
    assert not store.exists(LOCK_KEY)
