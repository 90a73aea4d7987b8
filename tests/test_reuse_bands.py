"""Band hashes of text reuse: the same sketches as datasketch's, the candidate rule, grouping on disk, the record."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from archive.records import REUSE_BANDS
from archive.reuse import ReuseParams, band_scheme, candidate_pairs, document_bands
from archive.reuse.bands import _BandWriter
from archive.reuse.candidates import HashFilter
from archive.reuse.search import _Partitions, _Search
from archive.reuse.sketch import _identity, _sketch_words, _window_starts
from archive.storage import LocalStore
from archive.validate import problems
from archive_flows.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "20261122T153000Z-3f9a"


def _random_text(rng: random.Random, words: int) -> str:
    vocabulary = [f"Word{i}" for i in range(300)] + ["the", "of", "and", "Baku", "January"]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


_MASK = (1 << 64) - 1


def _fmix64(value: int) -> int:
    value ^= value >> 33
    value = value * 0xFF51AFD7ED558CCD & _MASK
    value ^= value >> 33
    value = value * 0xC4CEB9FE1A85EC53 & _MASK
    return value ^ (value >> 33)


def _word_hash(word: str) -> int:
    """A word's hash, one byte at a time: tabulation over its lower-cased UTF-8 bytes, and its length."""
    data = word.lower().encode("utf-8")
    value = 0
    for at, byte in enumerate(data):
        slot = at % 64 * 256 + byte  # (the table's 64-bit values, 8 to a 64-byte blake2b digest)
        block = hashlib.blake2b((slot // 8).to_bytes(2, "little"), digest_size=64, person=b"archive-lsh2").digest()
        value ^= int.from_bytes(block[slot % 8 * 8:slot % 8 * 8 + 8], "little")
    return value ^ (len(data) * 0xBF58476D1CE4E5B9 & _MASK)


def _shingle_hash(words: list[str]) -> int:
    value = _word_hash(words[0])
    for word in words[1:]:
        value = (value * 0x9E3779B97F4A7C15 + _word_hash(word)) & _MASK
    return _fmix64(value) >> 32


def _band_hash(band: int, values) -> int:
    value = int.from_bytes(hashlib.blake2b(band.to_bytes(2, "little"), digest_size=8,
                                           person=b"archive-lsh2").digest(), "little")
    for row in values:
        value = _fmix64(value ^ int(row))
    return value - (1 << 64) if value >= 1 << 63 else value


@pytest.mark.parametrize("words", [3, 5, 17, 25, 26, 333, 20_613])  # (20,613: windows in two chunks)
def test_band_hashes_are_the_bands_of_datasketch_minhash_sketches_of_each_window(words):
    """Each window's sketch is datasketch's MinHash.update_batch over its shingles' hashes, cut into
    MinHashLSH's bands; each band's hash mixes its band number's seed with its values. The reference here
    computes them one word, one shingle and one band at a time, in Python ints."""
    from datasketch import MinHash, MinHashLSH

    params = ReuseParams()
    text = _random_text(random.Random(words), words) + " Straße İstanbul ΟΔΟΣ don't"
    bands = document_bands(text, params)
    tokens = _sketch_words(text)
    if len(tokens) < params.shingle_words:
        assert bands is None
        return
    shingles = [_shingle_hash(tokens[i:i + 5]) for i in range(len(tokens) - 4)]
    sketch = MinHash(num_perm=params.num_perm, seed=params.seed, hashfunc=_identity)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    indexed_starts = set(_window_starts(len(tokens), 25, 25))
    starts = sorted(indexed_starts | set(_window_starts(len(tokens), 25, 5)))
    expected: dict[int, bool] = {}
    for start in starts:
        sketch.clear()
        sketch.update_batch(shingles[start:start + 21])
        for band, (low, high) in enumerate(lsh.hashranges):
            value = _band_hash(band, sketch.hashvalues[low:high])
            expected[value] = expected.get(value, False) or start in indexed_starts
    assert dict(zip(bands.hashes.tolist(), bands.indexed.tolist())) == expected
    assert bands.windows_queried == len(starts) and bands.windows_indexed == len(indexed_starts)
    assert set(bands.bands.tolist()) <= set(range(8))


def test_a_word_hash_does_not_depend_on_the_words_around_it_or_on_case():
    from archive.reuse.sketch import _word_hashes

    words = ["ΟΔΟΣ", "Σ", "İstanbul", "Straße", "don't", "a", "ab", "ba", "x" * 70, "x" * 69 + "y", "x" * 6 + "y"]
    alone = [int(_word_hashes([word])[0]) for word in words]
    assert _word_hashes(words).tolist() == alone == [_word_hash(word) for word in words]
    assert _word_hashes([w.upper() for w in words[5:]]).tolist() == alone[5:]
    assert len(set(alone)) == len(words)


def test_the_scheme_names_every_parameter_that_shapes_the_bands_and_no_other():
    default = band_scheme(ReuseParams())
    assert default.name.startswith("lsh2:shingle5:window25:stride5:perm32:bands8x4:seed1:")
    assert band_scheme(ReuseParams(min_words=20, min_similarity=0.5)).name == default.name
    for changed in ({"seed": 2}, {"num_perm": 64}, {"window_words": 30}, {"query_stride": 3}, {"threshold": 0.8}):
        assert band_scheme(ReuseParams(**changed)).name != default.name, changed


def test_identical_texts_have_identical_bands_and_a_copied_paragraph_shares_some():
    rng = random.Random(5)
    shared = _random_text(rng, 80)
    a = f"{_random_text(rng, 100)}\n\n{shared}\n\n{_random_text(rng, 60)}"
    b = f"{_random_text(rng, 40)}\n\n{shared}"
    bands_a, bands_b = document_bands(a), document_bands(b)
    assert np.array_equal(document_bands(a).hashes, bands_a.hashes)
    common = set(bands_a.hashes.tolist()) & set(bands_b.hashes.tolist())
    assert common
    keys = np.r_[np.zeros(len(bands_a), np.int64), np.ones(len(bands_b), np.int64)]
    pairs = candidate_pairs(np.r_[bands_a.hashes, bands_b.hashes], keys, np.r_[bands_a.indexed, bands_b.indexed])
    assert pairs.tolist() == [[0, 1]]


def test_a_pair_needs_a_shared_hash_with_an_indexed_row_on_either_side():
    hashes = np.array([10, 10, 20, 20, 30, 30, 30, 40], dtype=np.int64)
    keys = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int64)
    indexed = np.array([False, False, True, False, False, True, False, True])
    # 10: no indexed row, no pair; 20: 3 indexed; 30: only 6 is indexed, so 5-7 is no pair; 40 alone.
    assert candidate_pairs(hashes, keys, indexed).tolist() == [[3, 4], [5, 6], [6, 7]]
    # Symmetric and order-free: shuffled rows and repeated rows give the same pairs.
    order = np.random.default_rng(1).permutation(len(hashes))
    again = candidate_pairs(np.r_[hashes[order], hashes], np.r_[keys[order], keys], np.r_[indexed[order], indexed])
    assert again.tolist() == [[3, 4], [5, 6], [6, 7]]
    # A (hash, key) seen twice is indexed if either row is.
    assert candidate_pairs(np.array([1, 1, 1]), np.array([1, 2, 1]),
                           np.array([False, False, True])).tolist() == [[1, 2]]


def test_candidate_pairs_made_distinct_as_they_are_found_are_the_same_pairs(monkeypatch):
    """Pairs of texts sharing many buckets are held once (made distinct whenever MERGE_PAIRS are held): the
    answer is the same, and it is what pairs of rows give."""
    from archive.reuse import candidates

    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 400, size=5_000).astype(np.int64)  # buckets of some 12 rows, most pairs many times
    keys = rng.integers(0, 60, size=5_000).astype(np.int32)
    indexed = rng.random(5_000) < 0.5
    whole = candidates.candidate_codes(hashes, keys, indexed)
    monkeypatch.setattr(candidates, "MERGE_PAIRS", 50)
    held, given = [], []
    original = candidates._Distinct.add
    monkeypatch.setattr(candidates._Distinct, "add",
                        lambda self, codes: (given.append(len(codes)), original(self, codes), held.append(self._count)))
    assert np.array_equal(candidates.candidate_codes(hashes, keys, indexed), whole)
    assert sum(given) > 2 * len(whole)  # pairs repeat across buckets...
    assert max(held) == len(whole) < sum(given)  # ...held once: made distinct as they come
    assert any(after < before + new for before, after, new in zip(held, held[1:], given[1:]))
    expected = {(min(a, b), max(a, b)) for h in np.unique(hashes) for i, a in enumerate(keys[hashes == h].tolist())
                for j, b in enumerate(keys[hashes == h].tolist())
                if i < j and a != b and (indexed[hashes == h][i] or indexed[hashes == h][j])}
    assert {(int(c >> 32), int(c & 0xFFFFFFFF)) for c in whole} == expected


def test_a_search_groups_its_partitions_in_an_executor_to_the_same_pairs(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    hashes = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=400, dtype=np.int64)[rng.integers(0, 400, 20_000)]
    keys = rng.integers(0, 3_000, size=20_000).astype(np.int32)
    indexed = rng.random(20_000) < 0.3
    found = []
    for executor in (None, ThreadPoolExecutor(2)):
        search = _Search(str(tmp_path / f"s{len(found)}"), max_bucket=40)
        search.partitions.add(hashes, keys, indexed)
        count = search.find_pairs(executor, workers=2)
        found.append(search.db.execute("SELECT a, b FROM pairs ORDER BY a, b").fetchall())
        assert count == len(found[-1]) > 1000
        search.close()
    assert found[0] == found[1] == [tuple(p) for p in candidate_pairs(hashes, keys, indexed, max_bucket=40).tolist()]


def test_partitions_split_past_max_rows_and_group_to_the_same_pairs_as_in_memory(tmp_path):
    rng = np.random.default_rng(7)
    n = 6_000
    hashes = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=n, dtype=np.int64)
    shared = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=50, dtype=np.int64)
    hashes[:300] = shared[rng.integers(0, len(shared), 300)]  # buckets of several texts
    hashes[300:340] = hashes[0]  # and one of more rows than max_rows: it cannot be split
    keys = rng.integers(0, 500, size=n).astype(np.int32)
    indexed = rng.random(n) < 0.3
    expected = candidate_pairs(hashes, keys, indexed)
    partitions = _Partitions(str(tmp_path / "p"), max_rows=10)  # ~23 rows a file at the first level: split again
    for chunk in range(0, n, 701):
        partitions.add(hashes[chunk:chunk + 701], keys[chunk:chunk + 701], indexed[chunk:chunk + 701])
    groups, found = 0, []
    for rows in partitions.groups():
        groups += 1
        # Only the rows of one hash are ever more than max_rows: they cannot be split.
        assert len(rows) <= 10 or len(np.unique(rows["hash"])) == 1
        found.append(candidate_pairs(rows["hash"], rows["key"], rows["indexed"]))
    assert groups > 256  # split past the first level
    assert np.array_equal(np.unique(np.concatenate(found), axis=0), expected)
    assert not list((tmp_path / "p").rglob("*.bin"))  # removed as read


def test_band_rows_written_are_valid_records_and_read_back_whole(tmp_path):
    store = LocalStore(tmp_path / "store")
    writer = _BandWriter(store, RUN_ID, "abc123")
    texts = {hashlib.sha256(f"doc {i}".encode()).hexdigest(): _random_text(random.Random(i), 60 + i) for i in range(5)}
    expected = 0
    for doc_id, text in texts.items():
        bands = document_bands(text)
        writer.add(doc_id, hashlib.sha256(text.encode()).hexdigest(), bands)
        expected += len(bands)
    (part,) = writer.close()
    assert part.dataset == "reuse_bands" and part.rows == expected
    assert part.key == f"datasets/reuse_bands/run={RUN_ID}/part-00000-abc123.parquet"
    import pyarrow.parquet as pq

    table = pq.read_table(store.arrow_path(part.key))
    assert table.schema.equals(REUSE_BANDS, check_metadata=False)
    rows = table.to_pylist()
    assert len(rows) == expected and {r["doc_id"] for r in rows} == set(texts)
    for row in rows[:: max(1, len(rows) // 50)]:
        assert problems("reuse-band", row) == []
    assert problems("reuse-band", {**rows[0], "hash": 2 ** 63})
    assert problems("reuse-band", {**rows[0], "colour": "blue"})


def test_identical_texts_are_one_text_in_a_search_and_never_a_pair(tmp_path):

    search = _Search(str(tmp_path / "s"))
    rng = random.Random(3)
    shared = _random_text(rng, 70)
    text, other = f"{_random_text(rng, 50)} {shared}", f"{shared} {_random_text(rng, 50)}"
    for doc_id, body in (("a" * 64, text), ("c" * 64, text), ("b" * 64, other)):
        bands = document_bands(body)
        search.add_document(doc_id, hashlib.sha256(body.encode()).hexdigest(), bands.hashes, bands.indexed,
                            source=RUN_ID)
    assert search.find_pairs() == 1  # one pair of texts: "a" and "c" have the same text
    assert search.needed_sources() == [RUN_ID]
    search.load_texts([pa.record_batch({"doc_id": ["a" * 64, "b" * 64],
                                        "text_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in (text, other)],
                                        "text": [text, other]})])
    ((_, sha_a, text_a, docs_a, _, sha_b, text_b, docs_b, _star),) = list(search.text_pairs())
    assert {(sha_a, text_a), (sha_b, text_b)} == {(hashlib.sha256(t.encode()).hexdigest(), t) for t in (text, other)}
    pairs = sorted(tuple(sorted(p)) for p in search.doc_pairs(docs_a, docs_b))
    assert pairs == [("a" * 64, "b" * 64), ("b" * 64, "c" * 64)]
    search.close()


def test_archive_ingest_has_a_no_reuse_flag():
    assert build_parser().parse_args(["ingest", "src", "--no-reuse"]).no_reuse is True
    assert build_parser().parse_args(["ingest", "src"]).no_reuse is False


# Run in a fresh process: the peak resident memory a block of work adds above what
# the process held when it started (imports included), from /proc's high-water mark
# reset just before (Linux), beside getrusage's peak for the whole process.
MEASURE = textwrap.dedent("""
    import json, sys
    from archive.timing import measure_memory as measure
""")


def test_grouping_memory_stays_flat_as_band_rows_grow_tenfold(tmp_path):
    """Peak memory of grouping 0.6M and 6M synthetic band rows (random hashes,
    buckets planted), each in a fresh process: the rows are grouped on disk a
    partition at a time (max_rows 100,000 here), so ten times the rows (78 MB of
    them) must not cost ten times the memory."""
    script = MEASURE + textwrap.dedent("""
        import numpy as np
        from archive.reuse.search import _Search
        rows, directory = int(sys.argv[1]), sys.argv[2]

        def work():
            search = _Search(directory, max_rows=100_000)
            rng = np.random.default_rng(1)
            chunk = 200_000
            shared = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=1000, dtype=np.int64)
            for start in range(0, rows, chunk):
                hashes = rng.integers(-(2 ** 63), 2 ** 63 - 1, size=chunk, dtype=np.int64)
                hashes[:20] = shared[rng.integers(0, 1000, 20)]
                keys = (np.arange(start, start + chunk) // 1700).astype(np.int32)  # ~1,700 band rows a document
                search.partitions.add(hashes, keys, rng.random(chunk) < 0.2)
            return {"rows": rows, "pairs": search.find_pairs()}

        print(json.dumps(measure(work)))
    """)
    results = {}
    for rows in (600_000, 6_000_000):
        done = subprocess.run([sys.executable, "-c", script, str(rows), str(tmp_path / f"s{rows}")], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        results[rows] = json.loads(done.stdout)
    small, large = results[600_000], results[6_000_000]
    print(results)
    assert large["pairs"] > small["pairs"] > 0
    # Holding the rows would add 70 MB more (13 bytes a row) before sorting them; grouped on disk, a few MB.
    assert large["added_kb"] - small["added_kb"] < 20 * 1024, results
    assert large["added_kb"] < 40 * 1024, results


def test_a_hash_shared_by_more_texts_than_the_cap_makes_no_pairs():
    # Hash 7 is in five texts (a masthead, say); hash 9 in two of them.
    hashes = np.array([7, 7, 7, 7, 7, 9, 9])
    keys = np.array([1, 2, 3, 4, 5, 1, 2])
    indexed = np.ones(7, dtype=bool)
    assert len(candidate_pairs(hashes, keys, indexed)) == 10  # every pair of the five
    assert candidate_pairs(hashes, keys, indexed, max_bucket=4).tolist() == [[1, 2]]  # only through hash 9
    assert len(candidate_pairs(hashes, keys, indexed, max_bucket=5)) == 10


def test_the_bucket_cap_is_a_parameter_with_a_floor():
    with pytest.raises(ValueError, match="max_bucket_texts"):
        ReuseParams(max_bucket_texts=1)
    assert ReuseParams().max_bucket_texts == 50
    # It does not shape the band hashes: runs with other caps compare their bands.
    assert band_scheme(ReuseParams(max_bucket_texts=10)).name == band_scheme(ReuseParams()).name


def test_a_hash_filter_finds_every_hash_added_in_fixed_memory():
    rng = np.random.default_rng(5)
    hashes = rng.integers(-2 ** 63, 2 ** 63 - 1, size=200_000, dtype=np.int64)
    wanted = HashFilter(bits=20)
    wanted.add(hashes[:100_000])
    wanted.add(hashes[:10])  # (added twice: no harm)
    found = wanted.contains(hashes)
    assert found[:100_000].all()
    assert 0.06 < found[100_000:].mean() < 0.12  # about 1 - e ** (-100,000 / 2 ** 20): passed on, never lost
    assert wanted.words.nbytes == 2 ** 20 // 8 and wanted.added == 100_010
    with pytest.raises(ValueError, match="bits"):
        HashFilter(bits=3)


def test_candidate_pairs_come_by_stars_so_that_a_chunk_carries_each_text_once(tmp_path):
    """Two stories reprinted 100 and 300 times, their texts' keys interleaved, and a few pairs across them: every
    pair comes once; each story is a star (its pivot the text with most partners), its pairs in tasks of blocks of
    STAR_BLOCK members, each task one chunk for the workers carrying its pivot's text and its members'; the pairs
    across the stars (a text a pivot took into the other star has most of them) come last, in chunks of their
    own."""
    from archive.reuse.parallel import _chunks
    from archive.reuse.stars import STAR_BLOCK

    search = _Search(str(tmp_path / "search"))
    keys = [search._register(f"doc{i:03d}", f"sha{i:03d}", 0, "run") for i in range(400)]
    search.db.executemany("UPDATE texts SET body = ? WHERE key = ?", [(f"text {key}", key) for key in keys])
    stories = [keys[0:200:2], keys[1::2] + keys[200::2]]
    pairs = {tuple(sorted((a, b))) for story in stories for i, a in enumerate(story) for b in story[i + 1:]}
    across = {(stories[0][i], stories[1][i]) for i in range(3)}
    search._insert_pairs([np.array([(a << 32) | b for a, b in sorted(pairs | across)], dtype=np.int64)])
    given = list(search.text_pairs())
    assert sorted((row[0], row[4]) for row in given) == sorted(pairs | across)
    assert all(row[2] == f"text {row[0]}" and row[6] == f"text {row[4]}" and row[3] == [(f"doc{row[0] - 1:03d}", 0)]
               for row in given)
    plain = [row[8] is None for row in given]
    assert plain == sorted(plain) and sum(plain) < 2 * STAR_BLOCK  # the pairs across stars last, and few
    assert len({row[8][1] for row in given if row[8] is not None}) == 2
    chunks = list(_chunks(iter(given)))
    star_chunks = [(chunk, texts, pivot) for chunk, texts, pivot in chunks if pivot is not None]
    assert len(star_chunks) == 1 + 6  # a task per block and per two blocks: 98 or 99 members, then 300 or 301
    assert all(len(texts) <= 2 * STAR_BLOCK + 1 and pivot in texts for _, texts, pivot in star_chunks)
    assert sum(len(texts) for _, texts, _ in chunks) < 3 * len(keys)  # (each pair of blocks ships both)
    search.close()


def test_pair_keys_hold_the_pairs_pair_key_names_in_either_order():
    from archive.reuse.pairs import PairKeys, pair_key

    rng = random.Random(7)
    docs = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(500)]
    docs += [docs[0][:16] + "0" * 48]  # (the same first 16 digits as another: one key, as pair_key has it)
    given = [(rng.choice(docs), rng.choice(docs)) for _ in range(3000)]
    keys = PairKeys()
    keys.update([a for a, _ in given[:2000]], [b for _, b in given[:2000]])
    for a, b in given[2000:]:
        keys.add(pair_key(b, a))
    expected = {pair_key(a, b) for a, b in given}
    assert len(keys) == len(expected)
    probes = [pair_key(rng.choice(docs), rng.choice(docs)) for _ in range(5000)]
    assert [key in keys for key in probes] == [key in expected for key in probes]
    assert all(pair_key(b, a) in keys for a, b in given)


def test_a_batch_makes_the_band_hashes_of_the_documents_it_publishes(tmp_path, seeds_dir):
    from archive.claims import DocumentClaims
    from archive.ingest import IngestOptions, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import open_source

    seeds = sorted(seeds_dir.iterdir())
    folder = tmp_path / "source"
    folder.mkdir()
    for name, seed in (("a.txt", seeds[0]), ("b.txt", seeds[1]), ("c.txt", seeds[0])):
        (folder / name).write_bytes(seed.read_bytes())
    source = open_source(folder)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    store, run, claims = LocalStore(tmp_path / "dest"), RunContext(new_run_id(), None, source.url), DocumentClaims()
    options = IngestOptions(reuse=ReuseParams())
    first = process_batch(store, source, run, 0, refs[:2], options=options, claims=claims)
    second = process_batch(store, source, run, 1, refs[2:], options=options, claims=claims)  # c: a copy of a
    assert second.reuse_bands == [] and second.reuse_stats == {}
    assert not any(p.dataset == "reuse_bands" for p in first.parts)  # the reuse step lists them, not the batch
    (part,) = first.reuse_bands
    table = pq.read_table(store.arrow_path(part.key))
    texts = {d["doc_id"]: d["text"] for p in first.parts if p.dataset == "documents"
             for d in pq.read_table(store.arrow_path(p.key)).to_pylist()}
    assert set(table.column("doc_id").to_pylist()) == set(texts) == set(first.documents)
    for doc_id, text in texts.items():
        rows = table.filter(pc.equal(table.column("doc_id"), doc_id))
        assert sorted(rows.column("hash").to_pylist()) == sorted(document_bands(text).hashes.tolist())
    assert first.reuse_stats["documents"] == 2 and first.reuse_stats["windows_indexed"] > 0
    assert "reuse_bands" in first.timings
    assert process_batch(store, source, run, 2, refs[:1]).reuse_bands == []  # reuse off: no band hashes
