"""Re-derivation: texts extracted again from the kept originals; a new text version only where the text changed,
records re-described, events naming the old and new tool versions; on local, moto S3 and SeaweedFS."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from archive.errors import NotFoundError
from archive.ingest import stages
from archive.publish import committed_manifests
from archive.read import open_dataset
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
    # Passages found in the old texts are not the current texts': they leave the current view of reuse.
    assert all(not {r["doc_id_a"], r["doc_id_b"]} & changed for r in rows(dest, "reuse"))
    bands = open_dataset(dest, "reuse_bands").to_table(columns=["doc_id"])["doc_id"].to_pylist()
    assert not set(bands) & changed

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
