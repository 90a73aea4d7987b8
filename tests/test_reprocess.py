"""Re-derivation: texts extracted again from the kept originals; a new text version only where the text changed,
records re-described, events naming the old and new tool versions; on local, moto S3 and SeaweedFS."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from archive.errors import NotFoundError
from archive.ingest import stages
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.read import open_dataset
from archive.reuse import publish_reuse
from archive.storage import open_store

pytestmark = pytest.mark.flow

TITLED = "004_fe37357cb45043f5.txt"  # its first line, "Black January", is its title


@pytest.fixture
def flows(prefect_harness):
    from archive_flows.ingest import ingest
    from archive_flows.reprocess import reprocess

    return ingest, reprocess


def upgrade(monkeypatch) -> None:
    """An extractor upgrade: the text extractor now reads "Black January" as "Black January of 1990"."""
    real = stages.extract_text

    def extract_text(data, fmt, budgets=None):
        found = real(data, fmt, budgets)
        if isinstance(found, stages.Quarantine) or fmt.media_type != "text/plain":
            return found
        return dataclasses.replace(found, text=found.text.replace("Black January", "Black January of 1990"),
                                   extractor_version="99.0")

    monkeypatch.setattr(stages, "extract_text", extract_text)


def rows(dest, name, **kw):
    return open_dataset(dest, name, **kw).to_table().to_pylist()


def all_current(reuse: list[dict], documents: dict[str, dict]) -> bool:
    """Each passage names its documents' current texts and points into them."""
    return all(r[f"text_sha256_{s}"] == documents[r[f"doc_id_{s}"]]["text_sha256"]
               and " ".join(documents[r[f"doc_id_{s}"]]["text"][r[f"start_{s}"]:r[f"end_{s}"]].split())
               == " ".join(r["passage_text"].split()) for r in reuse for s in "ab")


def passages(reuse: list[dict]) -> set[tuple]:
    return {(r["doc_id_a"], r["doc_id_b"], r["start_a"], r["end_a"], r["start_b"], r["end_b"]) for r in reuse}


def test_a_re_derived_text_is_a_new_version_only_where_it_changed(flows, seeds_dir, tmp_path, dest, monkeypatch):
    ingest, reprocess = flows
    source = tmp_path / "seeds"
    shutil.copytree(seeds_dir, source)
    first = ingest(str(source), dest=dest)
    before = {d["doc_id"]: d for d in rows(dest, "documents")}

    same = reprocess(dest=dest)
    assert same["counts"] == {"documents": 5, "changed": 0, "unchanged": 5, "failed": 0, "updated": 0}
    assert open_dataset(dest, "documents", runs=[same["run_id"]]).count_rows() == 0

    upgrade(monkeypatch)
    result = reprocess(dest=dest, formats=["text"])
    changed = {d for d, doc in before.items() if "Black January" in doc["text"]}
    assert result["counts"]["changed"] == len(changed) > 0 and result["counts"]["unchanged"] == 5 - len(changed)
    now = {d["doc_id"]: d for d in rows(dest, "documents")}
    assert set(now) == set(before)  # one current row per document
    for doc_id in changed:
        assert "Black January of 1990" in now[doc_id]["text"] and now[doc_id]["run_id"] == result["run_id"]
        assert now[doc_id]["extractor_version"] == "99.0"
        assert now[doc_id]["text_sha256"] != before[doc_id]["text_sha256"]
    for doc_id in set(before) - changed:
        assert now[doc_id] == before[doc_id]
    # The old texts are kept, and the view as of the ingest shows them.
    assert {d["doc_id"]: d["text"] for d in rows(dest, "documents", as_of=first["run_id"])} == {
        d: doc["text"] for d, doc in before.items()}
    events = [e for e in rows(dest, "events", runs=[result["run_id"]]) if e["event_type"] == "normalization"]
    assert {e["object_sha256"] for e in events} == changed
    assert all("-> charset-normalizer 99.0" in e["detail"] and e["tool"] == "charset-normalizer 99.0" for e in events)

    # The record whose title came from the text gets a rederived version naming the field.
    (record,) = [r for r in rows(dest, "records") if r["path"] == TITLED]
    assert (record["version"], record["change"], record["changed_fields"], record["title"]) == (
        2, "rederived", ["title"], "Black January of 1990")
    assert result["counts"]["updated"] >= 1 and "99.0" in record["reason"]
    # The passages are found again in the new texts, by the reprocess run; those of the old texts leave the view.
    pairs_before = {(r["doc_id_a"], r["doc_id_b"]) for r in rows(dest, "reuse", as_of=first["run_id"])}
    reuse_now = rows(dest, "reuse")
    assert pairs_before & {(a, b) for a in changed for b in changed}  # (the seeds' reprints are among them)
    assert {(r["doc_id_a"], r["doc_id_b"]) for r in reuse_now} == pairs_before
    assert all_current(reuse_now, now)
    assert {r["run_id"] for r in reuse_now if {r["doc_id_a"], r["doc_id_b"]} & changed} == {result["run_id"]}
    assert result["reuse"]["pairs"] > 0
    bands = open_dataset(dest, "reuse_bands").to_table(columns=["doc_id", "text_sha256"]).to_pylist()
    assert {(b["doc_id"], b["text_sha256"]) for b in bands} == {(d, doc["text_sha256"]) for d, doc in now.items()}
    # A complete recompute reads the current texts and finds the same pairs, at the same offsets.
    recomputed = publish_reuse(open_store(dest), RunContext(new_run_id(), None, dest))
    again_rows = rows(dest, "reuse")
    assert {r["run_id"] for r in again_rows} == {recomputed["run_id"]} and all_current(again_rows, now)
    assert passages(again_rows) == passages(reuse_now)

    # Nothing changed since: a second re-derivation publishes nothing.
    again = reprocess(dest=dest)
    assert again["counts"]["changed"] == again["counts"]["updated"] == 0
    assert len(rows(dest, "documents")) == 5


def test_reprocess_selects_by_format_run_and_doc_and_refuses_what_is_not_there(flows, seeds_dir, tmp_path):
    ingest, reprocess = flows
    dest = str(tmp_path / "store")
    first = ingest(str(seeds_dir), dest=dest, reuse=False)
    doc_id = rows(dest, "documents")[0]["doc_id"]
    assert reprocess(dest=dest, formats=["pdf"])["counts"]["documents"] == 0
    assert reprocess(dest=dest, runs=[first["run_id"]])["counts"]["documents"] == 5
    assert reprocess(dest=dest, doc_ids=[doc_id])["counts"]["documents"] == 1
    with pytest.raises(NotFoundError):
        reprocess(dest=dest, doc_ids=["0" * 64])
    with pytest.raises(NotFoundError):
        reprocess(dest=dest, runs=["20200101T000000Z-0000"])
    kinds = [m["kind"] for m in committed_manifests(open_store(dest))]
    assert kinds == ["ingest", "reprocess", "reprocess", "reprocess"]
