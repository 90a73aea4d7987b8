"""Text reuse as a committed run over the archive: the dataset, its offsets, lineage, duplicates."""

from __future__ import annotations

import shutil

import pytest

from archive.lineage import lineage
from archive.provenance import RunContext, new_run_id
from archive.read import open_dataset
from archive.reuse import publish_reuse
from archive.storage import open_store

pytestmark = pytest.mark.flow


def test_reuse_run_over_committed_documents(prefect_harness, seeds_dir, tmp_path):
    from archive_flows.ingest import ingest

    source = tmp_path / "source"
    shutil.copytree(seeds_dir, source)
    shutil.copy(source / "000_1b6d2751a6b6d7cc.txt", source / "same-bytes-again.txt")  # a duplicate, not reuse
    dest = str(tmp_path / "store")
    result = ingest(str(source), dest=dest, workers=1)
    assert result["counts"]["duplicates"] == 1
    store = open_store(dest)
    reuse = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    assert reuse["counts"]["pairs"] == 2

    texts = {d["doc_id"]: d["text"]
             for d in open_dataset(dest, "documents").to_table(columns=["doc_id", "text"]).to_pylist()}
    rows = open_dataset(dest, "reuse", runs=[reuse["run_id"]]).to_table().to_pylist()
    assert rows and len(rows) == reuse["counts"]["passages"]
    for row in rows:
        a = texts[row["doc_id_a"]][row["start_a"]:row["end_a"]]
        b = texts[row["doc_id_b"]][row["start_b"]:row["end_b"]]
        assert a == row["passage_text"]
        assert a.split()[0] == b.split()[0] and a.split()[-1] == b.split()[-1]  # edits may lie between
    pairs = {(r["doc_id_a"][:6], r["doc_id_b"][:6]) for r in rows}
    assert len(pairs) == 2
    assert any("Mass arrests accompanied the illegal deployment of troops" in r["passage_text"] for r in rows)

    seed0 = "081300ed1fe77233192c9a2e684326ebc5ef77535375faf2a6cecf5c3e205570"
    story = lineage(store, seed0)
    assert {s["doc_id"] for s in story["shares_text_with"]} == {
        r["doc_id_b"] if r["doc_id_a"] == seed0 else r["doc_id_a"]
        for r in rows if seed0 in (r["doc_id_a"], r["doc_id_b"])}
    # The passages grouped in clusters of reprints: every passage in a member of its document, and seed 000's
    # clusters (in its lineage) hold the documents it shares text with.
    members = open_dataset(dest, "reuse_clusters", runs=[reuse["run_id"]]).to_table().to_pylist()
    assert len({m["cluster_id"] for m in members}) == reuse["counts"]["clusters"] >= 2
    for row in rows:
        for side in "ab":
            assert any(m["doc_id"] == row[f"doc_id_{side}"] and m["start"] <= row[f"start_{side}"]
                       and row[f"end_{side}"] <= m["end"] and m["text_sha256"] == row[f"text_sha256_{side}"]
                       for m in members)
    clusters = story["reuse_clusters"]
    assert clusters and all(c["members"][0]["doc_id"] == seed0 and c["size"] >= 2 for c in clusters)
    assert {m["doc_id"] for c in clusters for m in c["members"][1:]} == {s["doc_id"] for s in story["shares_text_with"]}
    # One provenance event per pair, committed with the reuse run.
    events = open_dataset(dest, "events", runs=[reuse["run_id"]]).to_table().to_pylist()
    assert len(events) == 2 and all("shares text with" in e["detail"] for e in events)
