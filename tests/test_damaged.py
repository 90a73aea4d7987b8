"""A damaged store does not freeze: a damaged manifest leaves its own run out, named, and every command goes on;
a part whose bytes differ from its manifest's sha256 fails the read that would use it, naming the part and run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest

from archive import partcheck
from archive.audit import check_parts, selected_manifests
from archive.errors import DamagedPartError, ManifestError
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.publish import DamagedManifestWarning, committed_manifests, load_manifest, manifest_key
from archive.read import open_dataset
from archive.sources import open_source
from archive.storage import LocalStore, open_store
from tests.s3server import server_of

pytestmark = pytest.mark.flow

DAMAGES = ("truncated", "wrong-type", "missing-field")


def ingest_runs(store, seeds_dir, tmp_path) -> list[str]:
    """Two committed runs, without Prefect: the first three seeds, then the other two."""
    seeds = sorted(seeds_dir.iterdir())
    runs = []
    for index, chunk in enumerate((seeds[:3], seeds[3:])):
        folder = tmp_path / f"source{index}"
        folder.mkdir()
        for seed in chunk:
            shutil.copy(seed, folder / seed.name)
        source = open_source(str(folder))
        run = RunContext(new_run_id(), None, source.url)
        summary = process_batch(store, source, run, 0, list(source.iter_files()))
        commit_run(store, run, [summary], parameters={}, warnings=[])
        runs.append(run.run_id)
    return runs


def replace(store, request, key: str, data: bytes) -> None:
    """Change a stored object behind the archive's back."""
    if isinstance(store, LocalStore):
        path = store.arrow_path(key)
        os.chmod(path, 0o644)
        with open(path, "wb") as out:
            out.write(data)
    else:
        server_of(request).client().put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=data)


def damage_manifest(store, request, run_id: str, how: str) -> str:
    """Damage run_id's manifest; returns what the archive should say is wrong with it."""
    key = manifest_key(run_id)
    data = store.get_bytes(key)
    if how == "truncated":
        replace(store, request, key, data[:812])
        return "truncated JSON at byte 812"
    manifest = json.loads(data)
    if how == "wrong-type":
        manifest["counts"]["files"] = "two"
        expected = "does not validate: $.counts.files: 'two' is not of type 'integer'"
    else:
        del manifest["parts"]
        expected = "does not validate: $: 'parts' is a required property"
    replace(store, request, key, json.dumps(manifest).encode())
    return expected


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(request.getfixturevalue("s3_bucket"))


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_manifest_leaves_its_run_out_named_and_the_others_readable(any_store, seeds_dir, tmp_path, request,
                                                                              how):
    store = any_store
    good, bad = ingest_runs(store, seeds_dir, tmp_path)
    before = open_dataset(store, "documents").to_table(columns=["doc_id", "run_id"]).to_pylist()
    assert {r["run_id"] for r in before} == {good, bad}
    damage = damage_manifest(store, request, bad, how)

    damaged = []
    assert [m["run_id"] for m in committed_manifests(store, damaged=damaged)] == [good]
    ((run_id, key, found),) = [(d.run_id, d.key, d.damage) for d in damaged]
    assert (run_id, key) == (bad, manifest_key(bad))
    assert found.startswith(damage), found
    with pytest.raises(ManifestError, match=f"{manifest_key(bad)} is damaged"):
        load_manifest(store, manifest_key(bad))

    # A reader goes on over the other runs and warns, naming the run and the damage.
    with pytest.warns(DamagedManifestWarning, match=f"run {bad} left out.*{re.escape(damage)}"):
        rows = open_dataset(store, "documents").to_table(columns=["doc_id", "run_id"]).to_pylist()
    assert rows == [r for r in before if r["run_id"] == good] and len(rows) == 3

    # The audit's selection names it too, and knows the run when asked for it by id.
    listed = []
    assert [m["run_id"] for m in selected_manifests(store, [bad, good], listed)] == [good]
    assert [d.run_id for d in listed] == [bad]


def archive(*args, env):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


@pytest.mark.parametrize("kind,how", [("local", "truncated"), ("local", "wrong-type"), ("s3", "wrong-type")])
def test_every_command_goes_on_without_a_damaged_run_and_names_it(cli_env, seeds_dir, tmp_path, request, kind, how):
    if kind == "local":
        store = LocalStore(tmp_path / "store")
    else:
        store = open_store(request.getfixturevalue("s3_bucket"))
    env = {**cli_env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    dest = store.url
    good, bad = ingest_runs(store, seeds_dir, tmp_path)
    seeds = sorted(seeds_dir.iterdir())
    bad_docs = open_dataset(store, "documents", runs=[bad]).to_table(columns=["doc_id"]).column("doc_id").to_pylist()
    damage = damage_manifest(store, request, bad, how)

    def keys() -> set[str]:
        return {i.key for prefix in ("datasets/", "objects/", "runs/") for i in store.list(prefix)}

    # runs: lists it as damaged, among the others.
    done = archive("runs", "--dest", dest, "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["run_id"], r["status"]) for r in rows] == sorted([(good, "committed"), (bad, "damaged")])
    (row,) = [r for r in rows if r["status"] == "damaged"]
    assert row["key"] == manifest_key(bad) and row["damage"].startswith(damage)
    done = archive("runs", "--dest", dest, env=env)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(bad)]
    assert line.split()[1] == "DAMAGED" and f"{manifest_key(bad)}: {damage[:20]}" in line, line

    # verify: a problem of its own kind, naming the run; the other run's parts and originals are checked.
    done = archive("verify", "--dest", dest, "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(p["kind"], p["key"]) for p in report["problems"]] == [("damaged-manifest", manifest_key(bad))]
    assert f"run {bad} is left out" in report["problems"][0]["message"]
    assert damage[:20] in report["problems"][0]["message"]
    assert report["checked"]["runs"] == 1 and report["checked"]["objects"] == 3
    assert [d["run_id"] for d in report["damaged_runs"]] == [bad]

    # lineage: of a record of the other run, it goes on and says once which run it left out.
    done = archive("lineage", str(tmp_path / "source0" / seeds[0].name), "--dest", dest, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"run {bad} left out") == 1, done.stderr
    done = archive("lineage", seeds[0].name, "--dest", dest, "--json", env=env)
    assert done.returncode == 0, done.stderr
    story = json.loads(done.stdout)
    assert story["runs"][0]["run_id"] == good and [d["run_id"] for d in story["damaged_runs"]] == [bad]
    # Of a record only the damaged run holds: not found, and the damaged run is named as the reason it may be.
    done = archive("lineage", bad_docs[0], "--dest", dest, env=env)
    assert done.returncode == 1
    assert f"run {bad} left out" in done.stderr

    # gc: lists, keeps the damaged run's own parts out of its candidates, and refuses to delete anything.
    done = archive("gc", "--dest", dest, "--older-than", "0s", "--json", env=env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert [d["run_id"] for d in plan["damaged_runs"]] == [bad]
    assert not [c for c in plan["candidates"] if f"run={bad}" in c["key"]]
    assert plan["kept"]["of_damaged_runs"] > 0
    stored = keys()
    done = archive("gc", "--dest", dest, "--older-than", "0s", "--delete", env=env)
    assert done.returncode == 1
    assert f"run {bad} left out" in done.stderr and "gc removes nothing" in done.stderr, done.stderr
    assert keys() >= stored

    # ingest: a new run commits, its manifest notes the damaged run, and the command names it.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "notice.txt").write_text("Notice of the annual meeting of the harbour board, held on 3 March.\n")
    done = archive("ingest", str(fresh), "--dest", dest, "--no-reuse", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["counts"]["documents"] == 1
    assert [d["run_id"] for d in result["damaged_runs"]] == [bad]
    new = load_manifest(store, manifest_key(result["run_id"]))
    assert any(note.startswith(f"run {bad} left out") for note in new["notes"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = {r["run_id"] for r in open_dataset(dest, "documents").to_table(columns=["run_id"]).to_pylist()}
    assert runs == {good, result["run_id"]}
    assert [str(w.message) for w in caught if w.category is DamagedManifestWarning][0].startswith(
        f"run {bad} left out")


def documents_part(store, run_id: str) -> dict:
    (manifest,) = [m for m in committed_manifests(store) if m["run_id"] == run_id]
    return next(p for p in manifest["parts"] if p["dataset"] == "documents")


def test_a_bit_flip_in_a_part_fails_the_read_naming_the_part_and_its_run(any_store, seeds_dir, tmp_path, request):
    store = any_store
    good, flipped = ingest_runs(store, seeds_dir, tmp_path)
    part = documents_part(store, flipped)
    data = bytearray(store.get_bytes(part["key"]))
    data[len(data) // 2] ^= 0x04
    replace(store, request, part["key"], bytes(data))

    with pytest.raises(DamagedPartError, match=f"part {part['key']} of run {flipped} does not match its manifest"):
        open_dataset(store, "documents").to_table()
    # The other run's rows are still readable on their own; archive verify names the part.
    assert open_dataset(store, "documents", runs=[good]).to_table().num_rows == 3
    findings = [c.finding for c in check_parts(store, selected_manifests(store)) if not c.ok]
    assert [(f.kind, f.key) for f in findings] == [("changed", part["key"])]


def test_a_missing_part_fails_the_read_naming_it(tmp_path, seeds_dir):
    store = LocalStore(tmp_path / "store")
    _, gone = ingest_runs(store, seeds_dir, tmp_path)
    part = documents_part(store, gone)
    store.delete(part["key"])
    with pytest.raises(DamagedPartError, match=f"part {part['key']} of run {gone} is missing"):
        open_dataset(store, "documents")


def test_each_part_is_hashed_once_per_process(tmp_path, seeds_dir, monkeypatch):
    store = LocalStore(tmp_path / "store")
    ingest_runs(store, seeds_dir, tmp_path)
    hashed = []
    real = partcheck._digest
    monkeypatch.setattr(partcheck, "_digest", lambda store, key: hashed.append(key) or real(store, key))
    parts = [p["key"] for m in committed_manifests(store) for p in m["parts"] if p["dataset"] == "documents"]
    assert len(parts) == 2

    assert open_dataset(store, "documents").to_table().num_rows == 5
    assert sorted(hashed) == sorted(parts)
    # Again, and through another store object of the same DEST: nothing is hashed again.
    assert open_dataset(store, "documents").to_table().num_rows == 5
    assert open_dataset(str(tmp_path / "store"), "documents").count_rows() == 5
    assert sorted(hashed) == sorted(parts)
    # verify=False reads without the check.
    files = open_dataset(store, "files", verify=False).to_table()
    assert files.num_rows == 5 and sorted(hashed) == sorted(parts)
    open_dataset(store, "files").to_table()
    assert len(hashed) == 4
