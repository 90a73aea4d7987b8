"""Auditors: fixity verification, lineage, W3C PROV export, BagIt export."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from urllib.parse import unquote

import pytest

from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import LocalStore, object_key, open_store
from tests.s3server import server_of

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module", params=["local", "s3"])
def ingested(request, prefect_harness, seeds_dir, tmp_path_factory):
    """One ingest of the seeds per store kind, shared by the read-only tests of this module."""
    from archive_flows.ingest import ingest

    if request.param == "local":
        dest = str(tmp_path_factory.mktemp("audit") / "store")
    else:
        dest = f"s3://{request.getfixturevalue('s3_server').create_bucket()}/audit"
    result = ingest(str(seeds_dir), dest=dest, collection="black-january")
    return dest, result["run_id"]


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def archive(*args, env):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


class Tamperer:
    """Changes stored objects behind the archive's back, as bit rot or a careless hand would."""

    def __init__(self, store, request):
        self.store = store
        self.s3 = server_of(request) if not isinstance(store, LocalStore) else None

    def replace(self, key: str, data: bytes) -> None:
        if self.s3 is None:
            path = self.store.arrow_path(key)
            if os.path.exists(path):
                os.chmod(path, 0o644)
            with open(path, "wb") as out:
                out.write(data)
        else:
            self.s3.client().put_object(Bucket=self.store.bucket, Key=f"{self.store.prefix}/{key}", Body=data)

    def flip_byte(self, key: str, offset: int) -> None:
        data = bytearray(self.store.get_bytes(key))
        data[offset] ^= 0x01
        self.replace(key, bytes(data))

    def delete(self, key: str) -> None:
        self.store.delete(key)


def test_verify_names_exactly_the_changed_and_missing_keys(prefect_harness, seeds_dir, dest, cli_env, request):
    from archive_flows.audit import fixity_audit
    from archive_flows.ingest import ingest

    ingest(str(seeds_dir), dest=dest)
    store = open_store(dest)
    tamper = Tamperer(store, request)
    clean = fixity_audit(dest=dest)
    assert clean["status"] == "ok" and clean["problems"] == []
    assert clean["checked"]["objects"] == 5

    seeds = sorted(seeds_dir.iterdir())
    flipped_original = object_key(hashlib.sha256(seeds[0].read_bytes()).hexdigest())
    deleted_original = object_key(hashlib.sha256(seeds[1].read_bytes()).hexdigest())
    (manifest,) = [m for m in committed_manifests(store) if m["kind"] == "ingest"]
    flipped_part = next(p["key"] for p in manifest["parts"] if p["dataset"] == "documents")
    saved = {k: store.get_bytes(k) for k in (flipped_original, deleted_original, flipped_part)}

    tamper.flip_byte(flipped_original, 10)
    tamper.flip_byte(flipped_part, 200)
    tamper.delete(deleted_original)

    env = {**cli_env, **({k: v for k, v in os.environ.items() if k.startswith("AWS_")})}
    done = archive("verify", "--dest", dest, "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert {(p["kind"], p["key"]) for p in report["problems"]} == {
        ("changed", flipped_original), ("changed", flipped_part), ("missing", deleted_original)}
    changed = next(p for p in report["problems"] if p["key"] == flipped_original)
    assert changed["expected_sha256"] == flipped_original.rsplit("/", 1)[1]
    assert changed["found_sha256"] != changed["expected_sha256"]

    # Restore the three: verify holds again. (The audit runs themselves are now checked too.)
    for key, data in saved.items():
        tamper.replace(key, data)
    done = archive("verify", "--dest", dest, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all hold" in done.stdout

    # Each audit left a trail: a committed run of kind audit with a fixity event per check.
    audits = [m for m in committed_manifests(store) if m["kind"] == "audit"]
    assert len(audits) == 3
    assert [a["counts"]["problems"] for a in audits] == [0, 3, 0]


def test_verify_in_worker_processes_finds_what_verify_in_threads_finds(prefect_harness, seeds_dir, dest, request,
                                                                       monkeypatch):
    """Large audits hash their chunks of originals in worker processes: same findings, same fixity trail."""
    import archive_flows.audit
    from archive.read import open_dataset
    from archive_flows import workers as worker_pool
    from archive_flows.audit import fixity_audit
    from archive_flows.ingest import ingest

    ingest(str(seeds_dir), dest=dest, reuse=False)
    store = open_store(dest)
    changed = object_key(hashlib.sha256(sorted(seeds_dir.iterdir())[2].read_bytes()).hexdigest())
    Tamperer(store, request).flip_byte(changed, 5)
    # 5 originals in chunks of 2: 3 chunks, enough for processes with the threshold at 2.
    monkeypatch.setattr(archive_flows.audit, "OBJECTS_PER_TASK", 2)
    monkeypatch.setattr(archive_flows.audit, "MIN_CHUNKS_FOR_PROCESSES", 2)
    handed = []
    real = worker_pool.audit_in_pool
    monkeypatch.setattr(worker_pool, "audit_in_pool", lambda pool, *args: handed.append(args[2]) or real(pool, *args))

    in_threads = fixity_audit(dest=dest, workers=1)
    assert handed == []
    in_processes = fixity_audit(dest=dest, workers=2)
    assert sorted(handed) == [1, 2, 3]

    for report in (in_threads, in_processes):
        assert report["checked"]["objects"] == 5 and report["status"] == "problems"
        assert [(p["kind"], p["key"]) for p in report["problems"]] == [("changed", changed)]
    events = open_dataset(dest, "events").to_table().to_pylist()
    for report in (in_threads, in_processes):
        fixity = [e for e in events if e["run_id"] == report["run_id"] and e["event_type"] == "fixity check"]
        assert len(fixity) == report["checked"]["objects"] + report["checked"]["parts"] + 1  # + the hash chain's
        assert sum("hash chain holds" in e["detail"] for e in fixity) == 1
        assert [e["object_sha256"] for e in fixity if e["outcome"] == "failure"] == [changed.rsplit("/", 1)[1]]
    (audit,) = [m for m in committed_manifests(store) if m["run_id"] == in_processes["run_id"]]
    assert audit["parameters"]["workers"] == 2


def test_lineage_of_a_seed_shows_its_events_in_order_and_its_part(ingested, seeds_dir):
    from archive.lineage import lineage

    dest, run_id = ingested
    store = open_store(dest)
    seed = seeds_dir / "003_383d63a257376c65.txt"
    sha = hashlib.sha256(seed.read_bytes()).hexdigest()
    story = lineage(store, sha)
    assert story["original"] == {"key": object_key(sha), "stored": True, "bytes": seed.stat().st_size,
                                 "purged_by": None}
    assert [(s["path"], s["run_id"], s["outcome"]) for s in story["sources"]] == [(seed.name, run_id, "document")]
    assert [e["event_type"] for e in story["events"] if e["run_id"] == run_id] == [
        "message digest calculation", "format identification", "ingestion", "normalization",
        "metadata extraction", "validation", "publication"]
    (manifest,) = [m for m in committed_manifests(store) if m["run_id"] == run_id]
    (document,) = story["documents"]
    assert document["part"] in {p["key"] for p in manifest["parts"] if p["dataset"] == "documents"}
    assert document["part"] in story["events"][-1]["detail"]  # the publication event names the same part
    # A path works as well as a doc_id.
    assert lineage(store, seed.name)["sha256"] == sha
    assert story["runs"][0]["started_by"]["user"]


def test_prov_export_round_trips(ingested, tmp_path):
    import prov

    from archive.provenance import export_run_prov

    dest, run_id = ingested
    document = export_run_prov(open_store(dest), run_id)
    for fmt in ("json", "jsonld"):
        path = tmp_path / f"run.{fmt}"
        path.write_text(document.serialize(format=fmt))
        loaded = prov.read(str(path), format=fmt)
        assert len(loaded.get_records()) == len(document.get_records())
        assert loaded == document if fmt == "json" else True
    provn = document.get_provn()
    assert provn.startswith("document") and provn.rstrip().endswith("endDocument")
    ids = {str(r.identifier) for r in document.get_records() if r.identifier}
    assert f"archive:run-{run_id}" in ids
    assert sum(1 for i in ids if i.startswith("archive:document-")) == 5
    assert sum(1 for i in ids if i.startswith("archive:original-")) == 5


def test_prov_command_outputs_each_format(ingested, cli_env, tmp_path):
    import prov

    dest, run_id = ingested
    cli_env = {**cli_env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    done = archive("prov", run_id, "--dest", dest, env=cli_env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run.prov.json"
    out.write_text(done.stdout)
    assert prov.read(str(out), format="json").get_records()
    provn = archive("prov", run_id, "--dest", dest, "--format", "provn", env=cli_env)
    assert provn.returncode == 0 and "wasDerivedFrom" in provn.stdout
    assert archive("prov", "20990101T000000Z-dead", "--dest", dest, env=cli_env).returncode == 1


def test_bag_of_a_run_validates_with_bagit(ingested, seeds_dir, tmp_path):
    import bagit

    from archive.bag import export_bag

    dest, run_id = ingested
    out = tmp_path / "bag"
    result = export_bag(open_store(dest), run_id, out)
    assert result["files"] == 5
    bag = bagit.Bag(str(out))
    bag.validate()
    assert set(bag.algorithms) == {"sha256", "sha512"}
    assert bag.info["Archive-Run-Id"] == run_id
    assert bag.info["Archive-Collection"] == "black-january"
    for seed in seeds_dir.iterdir():
        assert (out / "data" / "objects" / seed.name).read_bytes() == seed.read_bytes()
    # A bag with a changed payload fails bagit's own validation.
    (out / "data" / "objects" / seed.name).write_bytes(b"tampered")
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(out)).validate()


def test_a_bag_of_damaged_bytes_stops_naming_them(seeds_dir, tmp_path):
    """An original or a part that no longer hashes to its recorded sha256 never goes into a bag under fresh
    checksums: the export stops and names it."""
    from archive import partcheck
    from archive.bag import export_bag
    from archive.errors import DamagedPartError, TerminalError
    from archive.ingest import commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import open_source

    store = LocalStore(tmp_path / "store")
    source = open_source(str(seeds_dir))
    run = RunContext(new_run_id(), "bagged", source.url)
    commit_run(store, run, [process_batch(store, source, run, 0, list(source.iter_files()))], parameters={},
               warnings=[])
    (manifest,) = committed_manifests(store)

    def damage(key: str) -> None:
        path = tmp_path / "store" / key
        os.chmod(path, 0o644)
        path.write_bytes(path.read_bytes()[:-1] + b"!")

    original = sorted(p for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file())[0]
    damage(str(original.relative_to(tmp_path / "store")))
    with pytest.raises(TerminalError, match=f"original .*{original.name}.* hashes to [0-9a-f]{{64}}, not its sha256"):
        export_bag(store, run.run_id, tmp_path / "bag-1")
    original.write_bytes(next(p.read_bytes() for p in seeds_dir.iterdir()
                              if hashlib.sha256(p.read_bytes()).hexdigest() == original.name))
    part = next(p["key"] for p in manifest["parts"] if p["dataset"] == "files")
    damage(part)
    partcheck._verified.clear()  # (as in a new process: this one trusts the parts it has checked)
    with pytest.raises(DamagedPartError, match=f"part {part} of run {run.run_id} (does not match|hashes)"):
        export_bag(store, run.run_id, tmp_path / "bag-2")


def test_a_bag_is_an_archival_information_package(ingested, tmp_path):
    """Beside the originals: each document's text, the run's part files, METS (PREMIS inside) whose file section
    points at the bag's own files, PREMIS, PROV-O and the events; the official XSDs, rdflib and bagit accept them."""
    import bagit
    import rdflib
    from lxml import etree

    from archive.bag import export_bag
    from tests import xsd

    dest, run_id = ingested
    out = tmp_path / "bag"
    result = export_bag(open_store(dest), run_id, out)
    bagit.Bag(str(out)).validate()
    data = out / "data"
    documents = open_dataset(dest, "documents", runs=[run_id]).to_table(columns=["doc_id", "text"]).to_pylist()
    assert result["texts"] == len(documents) == 5
    for document in documents:
        assert (data / "texts" / f"{document['doc_id']}.txt").read_text(encoding="utf-8") == document["text"]
    manifest = json.loads((out / "archive-run-manifest.json").read_text())
    for part in manifest["parts"]:
        copy = data / "datasets" / part["key"].removeprefix("datasets/")
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == part["sha256"]
    mets = etree.parse(str(data / "METS.xml"))
    assert xsd.problems(xsd.mets_schema(), mets) == []
    hrefs = [unquote(el.get("{http://www.w3.org/1999/xlink}href"))  # (a URI reference: %-encoded)
             for el in mets.iter("{http://www.loc.gov/METS/}FLocat")]
    assert len(hrefs) == 5 + 5 + len(manifest["parts"])
    assert all((data / href).is_file() for href in hrefs), [h for h in hrefs if not (data / h).is_file()]
    assert xsd.problems(xsd.premis_schema(), etree.parse(str(data / "metadata" / "premis.xml"))) == []
    graph = rdflib.Graph().parse(data=(data / "metadata" / "prov.jsonld").read_text(encoding="utf-8"),
                                 format="json-ld")
    assert len(graph) > 0
    events = [json.loads(line) for line in (data / "metadata" / "events.jsonl").read_text().splitlines()]
    assert len(events) == result["events"] == open_dataset(dest, "events", runs=[run_id]).count_rows()
    # A changed text fails bagit's validation as a changed original does.
    (data / "texts" / f"{documents[0]['doc_id']}.txt").write_text("tampered", encoding="utf-8")
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(out)).validate()
