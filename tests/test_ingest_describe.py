"""A batch describes its documents a few dozen at a time (describe.describe_texts): the same records as one by one."""

import pyarrow.parquet as pq
import pytest

from archive import provenance as ev
from archive.describe import describe_text, describe_texts
from archive.ingest import batch, load_descriptions, process_batch
from archive.normalise import normalise_text
from archive.provenance import RunContext, new_run_id
from archive.sources import LocalSource
from archive.storage import LocalStore

GERMAN = "Der Rat der Stadt hat heute beschlossen, dass die neue Brücke im Frühling gebaut wird.\n"


def test_describing_texts_together_gives_each_the_answer_it_gets_alone(seeds_dir):
    texts = [normalise_text(p.read_text()) for p in sorted(seeds_dir.iterdir())]
    texts += [GERMAN, "ok", "date 2021-13-45 Something happened", "2021-01-21\nHarbour minutes\n\nThe board met."]
    together = describe_texts(texts)
    assert together == [describe_text(text) for text in texts]
    assert {d.language for d in together} >= {"en", "de", None}
    assert describe_texts([]) == []


@pytest.fixture
def source_dir(seed_copy):
    for i in range(9):
        (seed_copy / f"note-{i}.txt").write_text(
            f"Note {i} of the harbour committee: the minutes were read again.\n" * 5)
    (seed_copy / "rat.txt").write_text(GERMAN * 3)
    (seed_copy / "blank.txt").write_text(" \n\t\n")  # quarantined (no text) between documents still waiting
    (seed_copy / "metadata.csv").write_text("filename,dc.title,dc.date\nnote-4.txt,Minutes of the fourth meeting,\n"
                                            "note-6.txt,Sixth,2021-13-45\n")  # (not a date: note-6 is quarantined)
    return seed_copy


def _run(tmp_path, source_dir, name):
    source = LocalSource(source_dir)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    descriptions = load_descriptions(source, [r for r in refs if r.path == "metadata.csv"])
    summary = process_batch(LocalStore(tmp_path / name), source, RunContext(new_run_id(), "notes", source.url), 0, refs,
                            descriptions=descriptions)
    tables = {p.dataset: pq.read_table(tmp_path / name / p.key).to_pylist() for p in summary.parts}
    return summary, tables


def test_a_batch_described_in_groups_makes_the_records_it_makes_in_one(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(batch, "DOCUMENTS_TOGETHER", 10_000)
    whole, whole_tables = _run(tmp_path, source_dir, "whole")
    described = []
    real = batch.describe_texts
    monkeypatch.setattr(batch, "DOCUMENTS_TOGETHER", 3)
    monkeypatch.setattr(batch, "describe_texts", lambda texts: (described.append(len(texts)), real(texts))[1])
    grouped, tables = _run(tmp_path, source_dir, "grouped")

    assert described and max(described) == 3 and len(described) > 1  # groups of three, the rest at the batch's end
    # (note-6.txt, whose sidecar row is invalid, is set aside before its text is extracted and described)
    assert grouped.counts == whole.counts and grouped.counts["document"] == sum(described)
    assert grouped.counts["quarantine"] == 2  # blank.txt, and note-6.txt's sidecar row

    def comparable(rows, *dropped):
        return sorted(({k: v for k, v in row.items() if k not in {"run_id", *dropped}} for row in rows),
                      key=lambda row: sorted(map(str, row.items())))

    assert comparable(tables["documents"], "ingested_at") == comparable(whole_tables["documents"], "ingested_at")
    assert comparable(tables["files"], "seen_at") == comparable(whole_tables["files"], "seen_at")
    assert (comparable(tables["quarantine"], "quarantined_at")
            == comparable(whole_tables["quarantine"], "quarantined_at"))
    by_path = {d["source_path"]: d for d in tables["documents"]}
    assert by_path["rat.txt"]["language"] == "de" and by_path["note-0.txt"]["language"] == "en"
    assert by_path["note-4.txt"]["title"] == "Minutes of the fourth meeting"
    for document in tables["documents"]:  # each document's own events, once each
        events = [e["event_type"] for e in tables["events"] if e["object_sha256"] == document["doc_id"]]
        for event_type in (ev.NORMALIZATION, ev.METADATA_EXTRACTION, ev.VALIDATION, ev.PUBLICATION):
            assert events.count(event_type) == 1, (document["source_path"], event_type)


def test_files_wait_to_be_made_documents_up_to_a_bound_in_bytes(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(batch, "DOCUMENTS_TOGETHER_BYTES", 1000)
    groups = []
    real = batch.BatchProcessor._make_documents

    def spy(self):
        groups.append([len(data) for *_, data in self._waiting])
        real(self)

    monkeypatch.setattr(batch.BatchProcessor, "_make_documents", spy)
    summary, tables = _run(tmp_path, source_dir, "bounded")
    waited = [g for g in groups if g]
    assert all(sum(g) <= 1000 or len(g) == 1 for g in waited)  # a file over the bound goes alone
    assert any(len(g) > 1 for g in waited) and any(sum(g) > 1000 for g in waited)  # (both kinds were there)
    # Every file waited but note-6.txt, set aside for its invalid sidecar row before it could.
    assert sum(map(len, waited)) == summary.counts["document"] + summary.counts["quarantine"] - 1
    assert len(tables["documents"]) == summary.counts["document"]
