"""Text reuse as part of each ingest run: the same answer as `archive reuse`, across runs through the persisted
band hashes, with documents of runs that had none, and when a concurrent run commits the same document."""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from archive.lineage import lineage
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests, load_manifest
from archive.read import current_reuse_runs, open_dataset
from archive.reuse import ReuseParams, banded_runs, find_reuse, publish_reuse
from archive.storage import open_store
from archive.validate import problems
from tests.test_reuse import EXPECTED_MERGED, EXPECTED_PASSAGES

pytestmark = pytest.mark.flow

PASSAGE_COLUMNS = ("doc_id_a", "doc_id_b", "start_a", "end_a", "start_b", "end_b", "passage_words", "passage_text",
                   "similarity")


def _seed(seeds_dir: Path, prefix: str) -> Path:
    (path,) = seeds_dir.glob(f"{prefix}_*.txt")
    return path


def _source(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return folder


def _seed_files(seeds_dir: Path, *prefixes: str) -> dict[str, bytes]:
    return {_seed(seeds_dir, p).name: _seed(seeds_dir, p).read_bytes() for p in prefixes}


def _doc_id(seeds_dir: Path, prefix: str) -> str:
    return hashlib.sha256(_seed(seeds_dir, prefix).read_bytes()).hexdigest()


def _passages(rows) -> list[tuple]:
    return sorted(tuple(r[c] for c in PASSAGE_COLUMNS) for r in rows)


def _current(dest: str) -> list[dict]:
    return open_dataset(dest, "reuse").to_table().to_pylist()


def _texts(dest: str) -> dict[str, str]:
    table = open_dataset(dest, "documents").to_table(columns=["doc_id", "text"])
    return dict(zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()))


def _expected(dest: str) -> list[tuple]:
    """The answer of the in-memory search (archive.reuse.find_reuse) over every committed text."""
    return _passages(find_reuse(_texts(dest).items(), run_id="20261122T153000Z-3f9a"))


def _assert_rows_slice_the_stored_texts(dest: str, rows: list[dict]) -> None:
    texts = _texts(dest)
    for row in rows:
        a = texts[row["doc_id_a"]][row["start_a"]:row["end_a"]]
        b = texts[row["doc_id_b"]][row["start_b"]:row["end_b"]]
        assert a == row["passage_text"]
        # The same tokens at both ends; between them the copies may differ (an edit, a misread word: max_gap).
        assert a.split()[0] == b.split()[0] and a.split()[-1] == b.split()[-1]
        assert problems("reuse", row) == []


def _manifest(dest: str, run_id: str) -> dict:
    return load_manifest(open_store(dest), f"runs/{run_id}.json")


def test_one_ingest_run_finds_the_seed_reuse_as_archive_reuse_does(prefect_harness, seeds_dir, tmp_path):
    from archive_flows.ingest import ingest

    files = _seed_files(seeds_dir, "000", "001", "002", "003", "004")
    files["same-bytes-again.txt"] = files[_seed(seeds_dir, "000").name]  # a duplicate: one document
    # The same text in other bytes (CRLF line endings): its own document, a duplicate of 002's text, never reuse.
    files["002-crlf.txt"] = files[_seed(seeds_dir, "002").name].replace(b"\n", b"\r\n")
    dest = str(tmp_path / "store")
    result = ingest(str(_source(tmp_path, "source", files)), dest=dest, workers=1)
    assert result["counts"] == {"files": 7, "documents": 6, "duplicates": 1, "quarantined": 0, "skipped": 0,
                                "updated": 0}

    ids = {p: _doc_id(seeds_dir, p) for p in ("000", "001", "002")}
    crlf = hashlib.sha256(files["002-crlf.txt"]).hexdigest()
    texts = _texts(dest)
    assert texts[crlf] == texts[ids["002"]]
    rows = _current(dest)
    pairs = {(r["doc_id_a"], r["doc_id_b"]) for r in rows}
    assert pairs == {tuple(sorted(p)) for p in ((ids["000"], ids["001"]), (ids["000"], ids["002"]), (ids["000"], crlf))}
    assert {r["run_id"] for r in rows} == {result["run_id"]}
    _assert_rows_slice_the_stored_texts(dest, rows)
    for (x, y), expected in EXPECTED_PASSAGES.items():
        found = {" ".join(r["passage_text"].split())
                 for r in rows if {r["doc_id_a"], r["doc_id_b"]} == {ids[x], ids[y]}}
        assert all(any(passage in f for f in found) for passage in expected)  # within the passages through edits
        assert len(found) == EXPECTED_MERGED[(x, y)]
    assert _passages(rows) == _expected(dest)

    # Committed with the run: reuse rows, band hashes, one event per pair; figures and parameters in the manifest.
    manifest = _manifest(dest, result["run_id"])
    assert {p["dataset"] for p in manifest["parts"]} >= {"reuse", "reuse_bands"}
    assert manifest["parameters"]["reuse"]["bands"].startswith("lsh2:shingle5:window25:stride5:perm32:bands8x4:seed1:")
    assert manifest["parameters"]["reuse"]["min_words"] == ReuseParams().min_words
    assert manifest["reuse"]["pairs"] == result["reuse"]["pairs"] == 3
    assert manifest["reuse"]["passages"] == len(rows) and manifest["reuse"]["documents"] == 6
    bands = open_dataset(dest, "reuse_bands").to_table().to_pylist()
    assert {b["doc_id"] for b in bands} == set(texts) and manifest["reuse"]["band_rows"] == len(bands)
    assert all(problems("reuse-band", b) == [] for b in bands[::97])
    events = [e for e in open_dataset(dest, "events", runs=[result["run_id"]]).to_table().to_pylist()
              if e["detail"].startswith("shares text with")]
    assert sorted((e["object_sha256"], e["detail"].split()[4]) for e in events) == sorted(pairs)

    # archive reuse recomputes the same answer from the committed band hashes alone; the current
    # answer is then its rows, the ingest run's being covered by it: each pair once.
    store = open_store(dest)
    recomputed = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    assert recomputed["counts"]["documents_sketched"] == 0 and recomputed["counts"]["pairs"] == 3
    assert _passages(open_dataset(dest, "reuse", runs=[recomputed["run_id"]]).to_table().to_pylist()) == _passages(rows)
    assert current_reuse_runs(list(committed_manifests(store))) == [recomputed["run_id"]]
    assert _passages(_current(dest)) == _passages(rows)
    shares = {s["doc_id"]: s for s in lineage(store, ids["000"])["shares_text_with"]}
    assert set(shares) == {ids["001"], ids["002"], crlf}
    assert {s["run_id"] for s in shares.values()} == {recomputed["run_id"]}

    # Ingesting the same files again: all duplicates, no documents, nothing new to compare.
    again = ingest(str(tmp_path / "source"), dest=dest, workers=1)
    assert again["counts"]["documents"] == 0 and again["reuse"]["pairs"] == 0
    assert _passages(_current(dest)) == _passages(rows)


def test_pairs_across_two_runs_are_found_through_the_persisted_band_hashes(prefect_harness, seeds_dir, tmp_path):
    from archive_flows.ingest import ingest

    dest = str(tmp_path / "store")
    first = ingest(str(_source(tmp_path, "first", _seed_files(seeds_dir, "000", "003", "004"))), dest=dest, workers=1)
    assert first["reuse"]["pairs"] == 0 and first["reuse"]["runs_compared"] == 0
    second = ingest(str(_source(tmp_path, "second", _seed_files(seeds_dir, "001", "002"))), dest=dest, workers=1)
    assert second["reuse"]["runs_compared"] == 1 and second["reuse"]["pairs"] == 2

    rows = _current(dest)
    assert {r["run_id"] for r in rows} == {second["run_id"]}
    _assert_rows_slice_the_stored_texts(dest, rows)
    # The union of the two runs is the answer one run over all five seeds gives, here with two worker processes
    # and batches of two files: band hashes made in three batches, the pairs aligned in the workers.
    one_run = str(tmp_path / "one-run")
    whole = ingest(str(seeds_dir), dest=one_run, workers=2, batch_files=2)
    assert whole["batches"] == 3 and whole["stage_seconds"]["reuse_bands"] > 0
    assert _passages(rows) == _passages(_current(one_run)) == _expected(dest)


def test_runs_without_band_hashes_are_caught_up_by_archive_reuse(prefect_harness, seeds_dir, tmp_path):
    """A run committed without the reuse step (like runs from before it existed)
    is invisible to later ingest runs until `archive reuse` computes and publishes
    its band hashes; after that, ingest runs find pairs with its documents."""
    from archive_flows.ingest import ingest

    dest = str(tmp_path / "store")
    store = open_store(dest)
    old = ingest(str(_source(tmp_path, "old", _seed_files(seeds_dir, "000", "003", "004"))), dest=dest, workers=1,
                 reuse=False)
    assert old["reuse"] is None and "reuse" not in _manifest(dest, old["run_id"])
    assert not [p for p in _manifest(dest, old["run_id"])["parts"] if p["dataset"].startswith("reuse")]
    blind = ingest(str(_source(tmp_path, "blind", _seed_files(seeds_dir, "001"))), dest=dest, workers=1)
    assert blind["reuse"]["pairs"] == 0  # 000 has no band hashes yet

    recomputed = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    manifest = _manifest(dest, recomputed["run_id"])
    # The band hashes it computed, in parts filed under the run whose documents they describe.
    (keys,) = manifest["parameters"]["bands_for_runs"].values()
    assert list(manifest["parameters"]["bands_for_runs"]) == [old["run_id"]]
    assert keys == [p["key"] for p in manifest["parts"] if p["dataset"] == "reuse_bands"]
    assert sorted(manifest["parameters"]["documents_of_runs"]) == sorted([old["run_id"], blind["run_id"]])
    assert recomputed["counts"]["documents_sketched"] == 3 and recomputed["counts"]["pairs"] == 1
    assert banded_runs(committed_manifests(store), manifest["parameters"]["bands"]) == {old["run_id"], blind["run_id"]}

    later = ingest(str(_source(tmp_path, "later", _seed_files(seeds_dir, "002"))), dest=dest, workers=1)
    assert later["reuse"]["pairs"] == 1  # with 000, through the band hashes the reuse run published

    assert current_reuse_runs(list(committed_manifests(store))) == [recomputed["run_id"], later["run_id"]]
    rows = _current(dest)
    _assert_rows_slice_the_stored_texts(dest, rows)
    assert _passages(rows) == _expected(dest)
    assert len(rows) == len({(r["doc_id_a"], r["doc_id_b"], r["start_a"], r["start_b"]) for r in rows})
    # A second reuse run needs no sketching at all, and gives the same answer again.
    again = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    assert again["counts"]["documents_sketched"] == 0
    assert _passages(_current(dest)) == _passages(rows)


def test_band_hashes_of_another_scheme_are_never_compared_and_archive_reuse_recomputes_them(
        prefect_harness, seeds_dir, tmp_path, monkeypatch):
    """A run whose band hashes are of another scheme (an older hashing: another BANDS_VERSION) is, to later
    ingest runs, a run without band hashes, even where its hashes happen to equal theirs: never compared
    across schemes. `archive reuse` computes its band hashes under the current scheme, and then its pairs."""
    from archive.reuse.sketch import band_scheme
    from archive_flows.ingest import ingest

    dest = str(tmp_path / "store")
    store = open_store(dest)
    current = band_scheme().name
    monkeypatch.setattr("archive.reuse.sketch.BANDS_VERSION", "lsh1")  # (the same hashes, under another name)
    band_scheme.cache_clear()
    old = ingest(str(_source(tmp_path, "old", _seed_files(seeds_dir, "000", "003", "004"))), dest=dest, workers=1)
    monkeypatch.undo()
    band_scheme.cache_clear()
    old_scheme = _manifest(dest, old["run_id"])["parameters"]["reuse"]["bands"]
    assert old_scheme.startswith("lsh1:") and old_scheme != current == band_scheme().name
    assert [p for p in _manifest(dest, old["run_id"])["parts"] if p["dataset"] == "reuse_bands"]
    assert banded_runs(committed_manifests(store), current) == set()

    blind = ingest(str(_source(tmp_path, "blind", _seed_files(seeds_dir, "001"))), dest=dest, workers=1)
    assert blind["reuse"]["pairs"] == 0  # 000's band hashes are of the other scheme

    recomputed = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    assert list(_manifest(dest, recomputed["run_id"])["parameters"]["bands_for_runs"]) == [old["run_id"]]
    assert recomputed["counts"]["documents_sketched"] == 3 and recomputed["counts"]["pairs"] == 1
    later = ingest(str(_source(tmp_path, "later", _seed_files(seeds_dir, "002"))), dest=dest, workers=1)
    assert later["reuse"]["pairs"] == 1  # with 000, through the band hashes of the current scheme
    assert _passages(_current(dest)) == _expected(dest)


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_document_a_concurrent_run_committed_first_leaves_its_pairs_to_that_run(prefect_harness, seeds_dir, tmp_path,
                                                                                   monkeypatch, first):
    """Runs A (seeds 000, 003) and B (000, 001) both publish 000 and both finish their
    reuse step before either commits; 002 was committed before. Whichever commits
    second has 000 reconciled away under the lock: its band hashes and its pairs
    with committed documents go (the first run has them), its pair with a document
    the second run does publish stays. The current answer has each pair once."""
    import archive_flows.ingest as flow_module
    from archive.ingest import commit as commit_module

    dest = str(tmp_path / "store")
    flow_module.ingest(str(_source(tmp_path, "before", _seed_files(seeds_dir, "002"))), dest=dest, workers=1)
    both_searched = threading.Barrier(2, timeout=120)
    real, names = flow_module.find_run_reuse, {}

    def search_then_wait(store, run, *args, **kwargs):
        names[run.run_id] = Path(run.source.removeprefix("file://")).name
        found = real(store, run, *args, **kwargs)
        both_searched.wait()
        return found

    # The order of the commits, set: the other run waits for the first to be committed before taking the lock.
    real_lock, first_committed = commit_module.commit_lock, threading.Event()

    @contextmanager
    def lock_in_order(store, run_id):
        if names[run_id] != first:
            assert first_committed.wait(timeout=120)
        with real_lock(store, run_id):
            yield
        if names[run_id] == first:
            first_committed.set()

    monkeypatch.setattr(commit_module, "commit_lock", lock_in_order)

    monkeypatch.setattr(flow_module, "find_run_reuse", search_then_wait)
    real_settle, compared_under_lock = commit_module.settle_run_reuse, {}

    def settle_and_record(store, run, step, published):
        settled = real_settle(store, run, step, published)
        compared_under_lock[run.run_id] = set(settled.caught_up)
        return settled

    monkeypatch.setattr(commit_module, "settle_run_reuse", settle_and_record)
    results, errors = {}, []

    def run(name, prefixes):
        try:
            results[name] = flow_module.ingest(str(_source(tmp_path, name, _seed_files(seeds_dir, *prefixes))),
                                               dest=dest, workers=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in (("a", ("000", "003")), ("b", ("000", "001")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors

    seed0, seed1, seed2 = (_doc_id(seeds_dir, p) for p in ("000", "001", "002"))
    winner, loser = results[first], results["b" if first == "a" else "a"]
    assert loser["counts"]["duplicates"] == 1
    assert winner["counts"]["documents"] == 2 and loser["counts"]["documents"] == 1
    assert any("left to that run" in note for note in loser["notes"])

    def of_run(run_id, name):
        return open_dataset(dest, name, runs=[run_id]).to_table().to_pylist()

    # The second to commit compared, under the lock, with the run committed after its step looked.
    assert compared_under_lock == {winner["run_id"]: set(), loser["run_id"]: {winner["run_id"]}}
    loser_published = {d["doc_id"] for d in of_run(loser["run_id"], "documents")}
    assert seed0 not in loser_published
    # The loser keeps no band hashes of 000 and no pair in which none of its own documents is.
    assert seed0 not in {b["doc_id"] for b in of_run(loser["run_id"], "reuse_bands")}
    assert all(r["doc_id_a"] in loser_published or r["doc_id_b"] in loser_published
               for r in of_run(loser["run_id"], "reuse"))
    assert tuple(sorted((seed0, seed2))) not in {(r["doc_id_a"], r["doc_id_b"])
                                                 for r in of_run(loser["run_id"], "reuse")}
    assert tuple(sorted((seed0, seed2))) in {(r["doc_id_a"], r["doc_id_b"]) for r in of_run(winner["run_id"], "reuse")}

    rows = _current(dest)
    assert {(r["doc_id_a"], r["doc_id_b"]) for r in rows} == {tuple(sorted((seed0, seed1))),
                                                              tuple(sorted((seed0, seed2)))}
    _assert_rows_slice_the_stored_texts(dest, rows)
    assert _passages(rows) == _expected(dest)
    pair_events = [e for r in results.values() for e in of_run(r["run_id"], "events")
                   if e["detail"].startswith("shares text")]
    assert len(pair_events) == 2


def test_an_ingest_derives_the_pairs_of_a_reprinted_story_through_its_pivot(prefect_harness, tmp_path):
    """Six noisy reprints of one story, each with a paragraph of its own: every pair of them is reported, each
    as one passage; all but the pivot's pairs are derived, none aligned twice."""
    import random

    from archive_flows.ingest import ingest
    from tests.test_reuse_stars import _noisy, _words

    rng = random.Random(23)
    story = _words(rng, 400)
    files = {f"paper-{n}.txt": " ".join(_words(rng, 60) + _noisy(story, rng)).encode() for n in range(6)}
    dest = str(tmp_path / "store")
    result = ingest(str(_source(tmp_path, "source", files)), dest=dest, workers=1)
    figures = _manifest(dest, result["run_id"])["reuse"]
    assert figures["pairs"] == figures["candidate_pairs"] == 15 and figures["passages"] == 15
    assert figures["pairs_derived"] == 10  # the pairs of the 5 members; the pivot's 5 aligned
    rows = _current(dest)
    assert all(r["passage_words"] >= 380 and r["similarity"] > 0.8 for r in rows)
    _assert_rows_slice_the_stored_texts(dest, rows)
