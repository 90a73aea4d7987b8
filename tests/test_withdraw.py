"""Withdrawal: records (and documents no current record uses) leave the current views, the history keeps them with
the reason; --purge deletes the originals and verify reports them purged; on local, moto S3 and SeaweedFS."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from archive.catalogue.withdraw import withdraw
from archive.errors import NotFoundError
from archive.lineage import lineage
from archive.provenance import export_run_prov
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.storage import object_key, open_store

pytestmark = pytest.mark.flow

SEED, TAKEN = "000_1b6d2751a6b6d7cc.txt", "002_bdbfc77629c1cea2.txt"
REASON = "rights holder's takedown request of 2026-12-01"


@pytest.fixture
def press(tmp_path, seeds_dir):
    source = tmp_path / "press"
    shutil.copytree(seeds_dir, source / "seeds")
    (source / "duplicates").mkdir()
    shutil.copy(seeds_dir / SEED, source / "duplicates" / "copy-of-000.txt")
    return source


@pytest.fixture
def ingest(prefect_harness):
    from archive_flows.ingest import ingest

    return ingest


def doc_id(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def paths(dest, name="records", **kw) -> list[str]:
    return sorted(open_dataset(dest, name, **kw).to_table(columns=["path"])["path"].to_pylist())


def doc_ids(dest, **kw) -> set[str]:
    return set(open_dataset(dest, "documents", **kw).to_table(columns=["doc_id"])["doc_id"].to_pylist())


def test_a_withdrawn_record_leaves_the_current_views_and_its_history_stays(ingest, press, dest):
    first = ingest(str(press), dest=dest)
    taken = doc_id(press / "seeds" / TAKEN)
    result = withdraw(open_store(dest), [f"seeds/{TAKEN}"], REASON)
    assert result["counts"] == {"records": 1, "documents": 1, "purged": 0}

    assert f"seeds/{TAKEN}" not in paths(dest) and len(paths(dest)) == 5
    assert taken not in doc_ids(dest) and len(doc_ids(dest)) == 4
    reuse = open_dataset(dest, "reuse").to_table().to_pylist()
    assert all(taken not in (r["doc_id_a"], r["doc_id_b"]) for r in reuse)
    assert all(r["doc_id"] != taken for r in open_dataset(dest, "reuse_bands").to_table(columns=["doc_id"])
               .to_pylist())
    # The view as of the ingest still has it; the rows as written are all there.
    assert f"seeds/{TAKEN}" in paths(dest, as_of=first["run_id"]) and taken in doc_ids(dest, as_of=first["run_id"])
    everything = [m["run_id"] for m in committed_manifests(open_store(dest))]
    versions = [r for r in open_dataset(dest, "records", runs=everything).to_table().to_pylist()
                if r["path"] == f"seeds/{TAKEN}"]
    assert [(v["version"], v["change"], v["reason"]) for v in sorted(versions, key=lambda v: v["version"])] == [
        (1, "new", None), (2, "withdrawn", REASON)]

    (manifest,) = [m for m in committed_manifests(open_store(dest)) if m["kind"] == "withdrawal"]
    assert manifest["run_id"] == result["run_id"] and manifest["parameters"]["reason"] == REASON
    events = [e for e in open_dataset(dest, "events", runs=[result["run_id"]]).to_table().to_pylist()
              if e["event_type"] == "deaccession"]
    assert {(e["object_sha256"], e["source_path"]) for e in events} == {(taken, f"seeds/{TAKEN}"), (taken, None)}
    assert all(REASON in e["detail"] for e in events)
    story = lineage(open_store(dest), f"seeds/{TAKEN}")
    assert [(r["version"], r["change"], r["reason"], r["run_id"]) for r in story["records"]] == [
        (1, "new", None, first["run_id"]), (2, "withdrawn", REASON, result["run_id"])]
    assert any(e["event_type"] == "deaccession" for e in story["events"])
    prov = export_run_prov(open_store(dest), result["run_id"]).serialize(format="json")
    assert "deaccession" in prov and REASON.replace("'", "") in prov.replace("'", "").replace("\\", "")

    # The next ingest of the same source skips the withdrawn path: it stays withdrawn, nothing is republished.
    again = ingest(str(press), dest=dest)
    assert again["counts"]["documents"] == again["counts"]["updated"] == 0
    (skipped,) = [f for f in open_dataset(dest, "files", runs=[again["run_id"]]).to_table().to_pylist()
                  if f["path"] == f"seeds/{TAKEN}"]
    assert (skipped["outcome"], skipped["reason"], skipped["sha256"]) == ("skipped", "withdrawn", None)
    assert result["run_id"] in skipped["detail"] and REASON in skipped["detail"]
    assert f"seeds/{TAKEN}" not in paths(dest) and taken not in doc_ids(dest)


def test_a_document_leaves_only_when_no_current_record_uses_it(ingest, press, tmp_path):
    dest = str(tmp_path / "store")
    ingest(str(press), dest=dest, reuse=False)
    shared = doc_id(press / "seeds" / SEED)
    one = withdraw(open_store(dest), [f"seeds/{SEED}"], "privacy request")
    assert one["counts"] == {"records": 1, "documents": 0, "purged": 0}
    assert shared in doc_ids(dest) and "duplicates/copy-of-000.txt" in paths(dest)
    # By doc_id: every current record of those bytes, and then the document.
    both = withdraw(open_store(dest), [shared], "privacy request", purge=True)
    assert both["counts"] == {"records": 1, "documents": 1, "purged": 1}
    assert [r["path"] for r in both["records"]] == ["duplicates/copy-of-000.txt"]
    assert any("already withdrawn" in note for note in both["notes"])
    assert shared not in doc_ids(dest) and not open_store(dest).exists(object_key(shared))
    with pytest.raises(NotFoundError):  # nothing left to withdraw or purge
        withdraw(open_store(dest), [shared], "again")


def test_an_unknown_id_withdraws_nothing(ingest, press, tmp_path):
    dest = str(tmp_path / "store")
    ingest(str(press), dest=dest, reuse=False)
    before = [m["run_id"] for m in committed_manifests(open_store(dest))]
    with pytest.raises(NotFoundError, match="no-such-file.txt"):
        withdraw(open_store(dest), [f"seeds/{SEED}", "no-such-file.txt"], "typo")
    assert [m["run_id"] for m in committed_manifests(open_store(dest))] == before
    assert len(paths(dest)) == 6


def test_purge_deletes_the_original_and_verify_reports_it_purged_not_missing(ingest, press, dest):
    from archive_flows.audit import fixity_audit

    ingest(str(press), dest=dest, reuse=False)
    taken = doc_id(press / "seeds" / TAKEN)
    result = withdraw(open_store(dest), [f"seeds/{TAKEN}"], REASON, purge=True)
    assert result["purged"] == [object_key(taken)]
    assert not open_store(dest).exists(object_key(taken))
    (manifest,) = [m for m in committed_manifests(open_store(dest)) if m["kind"] == "withdrawal"]
    assert manifest["purged"] == [object_key(taken)]
    deletion = [e for e in open_dataset(dest, "events", runs=[result["run_id"]]).to_table().to_pylist()
                if e["event_type"] == "deletion"]
    assert [e["object_sha256"] for e in deletion] == [taken]

    report = fixity_audit(dest=dest, workers=1)
    assert report["problems"] == [] and report["status"] == "ok"
    (purged,) = report["purged"]
    assert purged["key"] == object_key(taken) and result["run_id"] in purged["message"] and REASON in purged["message"]
    # A re-ingest of the source does not store the bytes again: the path is withdrawn.
    ingest(str(press), dest=dest, reuse=False)
    assert not open_store(dest).exists(object_key(taken))
    assert fixity_audit(dest=dest, workers=1)["problems"] == []
