"""Text reuse: exact passages, candidate pairs by LSH, the real seed documents and a synthetic corpus."""

import hashlib
import json
import random
import time

import pyarrow as pa
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from archive.normalise import normalise_text
from archive.records import REUSE
from archive.reuse import ReuseError, ReuseParams, ReuseStats, align, find_reuse
from archive.validate import SCHEMA_DIR
from tests.conftest import SEEDS

RUN_ID = "20261122T153000Z-3f9a"


def _seed_documents() -> dict[str, tuple[str, str]]:
    """File-name prefix ("000") -> (doc_id, normalised text)."""
    documents = {}
    for path in sorted(SEEDS.glob("*.txt")):
        data = path.read_bytes()
        documents[path.name[:3]] = (hashlib.sha256(data).hexdigest(), normalise_text(data.decode("utf-8")))
    return documents


@pytest.fixture(scope="module")
def seeds() -> dict[str, tuple[str, str]]:
    documents = _seed_documents()
    assert len(documents) == 5
    return documents


@pytest.fixture(scope="module")
def seed_rows(seeds) -> tuple[list[dict], ReuseStats]:
    stats = ReuseStats()
    rows = list(find_reuse(seeds.values(), run_id=RUN_ID, stats=stats))
    return rows, stats


def _pair(seeds, x: str, y: str) -> tuple[str, str]:
    return tuple(sorted((seeds[x][0], seeds[y][0])))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _assert_row_slices_exactly(row: dict, texts: dict[str, str], min_words: int) -> None:
    text_a, text_b = texts[row["doc_id_a"]], texts[row["doc_id_b"]]
    slice_a = text_a[row["start_a"]:row["end_a"]]
    slice_b = text_b[row["start_b"]:row["end_b"]]
    assert slice_a == row["passage_text"]
    assert slice_a.split() == slice_b.split()  # the same tokens; only whitespace may differ
    assert row["passage_words"] == len(slice_a.split()) >= min_words
    for text, start, end in ((text_a, row["start_a"], row["end_a"]), (text_b, row["start_b"], row["end_b"])):
        # Whole tokens: no partial word at either end.
        assert start == 0 or text[start - 1].isspace()
        assert end == len(text) or text[end].isspace()
        assert not text[start].isspace() and not text[end - 1].isspace()
    # Maximal: the tokens just outside the passage differ (or a text ends there).
    before_a, before_b = text_a[:row["start_a"]].split()[-1:], text_b[:row["start_b"]].split()[-1:]
    after_a, after_b = text_a[row["end_a"]:].split()[:1], text_b[row["end_b"]:].split()[:1]
    assert not before_a or not before_b or before_a != before_b
    assert not after_a or not after_b or after_a != after_b
    assert row["doc_id_a"] < row["doc_id_b"]
    assert 0.0 < row["similarity"] <= 1.0
    assert row["run_id"] == RUN_ID


# -- the seed documents ------------------------------------------------------

# Checked by hand against the seed files: the pairs that copy whole paragraphs
# (with light edits between the copies), and passages each shares verbatim.
# Seed 000 (Anadolu, 2021-01-20) and 001 (Daily Sabah) both carry the "On the
# night of January 19-20 / Jan. 19-20 ..." paragraph, edited ("the USSR's
# State Security Committee (KGB)", "including women and children"), so only
# its unedited runs are passages; "Mass arrests ..." follows it in both.
# Seed 000 and 002 (an embassy press release) share the account of the night
# paragraph by paragraph ("Upper Karabakh" / "Nagorno Karabakh", "management"
# / "Leadership", "400" / "800" people detained break the runs).
EXPECTED_PASSAGES = {
    ("000", "001"): [
        "19-20, under direct instructions from Soviet leader Mikhail Gorbachev, the",
        "using heavy military equipment and other weaponry. Mass arrests accompanied the illegal deployment "
        "of troops and subsequent military intervention.",
        "Azerbaijanis refer to Black January as a day of sorrow, but at the same time, as a day of pride, "
        "because the country's heroes who perished laid the groundwork for the",
        "The events that led to the tragedy of Black January",
    ],
    ("000", "002"): [
        "Karabakh to Armenia. Azerbaijan reacted to the decision with demonstrations held in Baku with hundreds "
        "of thousands of people. The people of Azerbaijan flocked to Azadliq (Independence) Square in Baku to "
        "protest the Soviet government and the Armenians' increasing demands for land. Continuing "
        "demonstrations disturbed the Soviet",
        "The Soviet army entered the city by shooting the unarmed civilians who tried to stop them. Tanks and heavy",
        "vehicles were driven over people, while fire was opened at ambulances and passenger buses. That night, "
        "130 civilians lost their lives in Baku. The Soviet army continued its massacre in other cities such as",
        "people were detained by the Soviet army. Although the state of emergency was declared by the Soviet "
        "administration in Baku, and the city was completely controlled by the Soviet army, people went out to "
        "the streets again to bury the",
    ],
}


def test_the_seed_pairs_that_share_paragraphs_are_found_and_no_others(seeds, seed_rows):
    rows, stats = seed_rows
    found = {(r["doc_id_a"], r["doc_id_b"]) for r in rows}
    assert found == {_pair(seeds, "000", "001"), _pair(seeds, "000", "002")}
    # 000 and 003 share an 8-word phrase, 003 and 004 a few words: below min_words, not reuse.
    assert stats.documents == 5 and stats.pairs_with_reuse == 2
    assert stats.candidate_pairs < 10  # of the 10 possible pairs, LSH put forward only a few


@pytest.mark.parametrize("pair", sorted(EXPECTED_PASSAGES))
def test_the_seed_passages_checked_by_hand_are_found(seeds, seed_rows, pair):
    rows, _ = seed_rows
    passages = {_squash(r["passage_text"]) for r in rows if (r["doc_id_a"], r["doc_id_b"]) == _pair(seeds, *pair)}
    for expected in EXPECTED_PASSAGES[pair]:
        assert expected in passages


def test_the_mass_arrests_passage_is_where_both_seeds_have_it(seeds, seed_rows):
    rows, _ = seed_rows
    sentence = "Mass arrests accompanied the illegal deployment of troops and subsequent military intervention."
    (row,) = [r for r in rows if sentence in r["passage_text"]]
    texts = dict(seeds.values())
    for side in "ab":
        text = texts[row[f"doc_id_{side}"]]
        passage = text[row[f"start_{side}"]:row[f"end_{side}"]]
        assert passage.endswith(sentence)
        assert text.index(sentence) == row[f"start_{side}"] + passage.index(sentence)


def test_every_seed_row_slices_both_texts_exactly_and_is_ordered(seeds, seed_rows):
    rows, _ = seed_rows
    texts = dict(seeds.values())
    assert rows
    for row in rows:
        _assert_row_slices_exactly(row, texts, ReuseParams().min_words)
    by_pair = {}
    for row in rows:
        by_pair.setdefault((row["doc_id_a"], row["doc_id_b"]), []).append(row)
    for pair_rows in by_pair.values():
        assert [r["start_a"] for r in pair_rows] == sorted(r["start_a"] for r in pair_rows)
        assert len({r["similarity"] for r in pair_rows}) == 1


def test_the_seed_pair_similarities(seeds, seed_rows):
    rows, _ = seed_rows
    similarity = {(r["doc_id_a"], r["doc_id_b"]): r["similarity"] for r in rows}
    # 002 is a short press release, nearly half of it in 000; 001 shares much less with 000.
    assert 0.4 < similarity[_pair(seeds, "000", "002")] < 0.5
    assert 0.1 < similarity[_pair(seeds, "000", "001")] < 0.2


def test_seed_results_do_not_depend_on_the_order_documents_come_in(seeds, seed_rows):
    rows, _ = seed_rows
    reversed_rows = list(find_reuse(reversed(list(seeds.values())), run_id=RUN_ID))

    def key(r):
        return (r["doc_id_a"], r["doc_id_b"], r["start_a"])

    assert sorted(reversed_rows, key=key) == sorted(rows, key=key)


def test_a_shorter_min_words_finds_the_shared_phrase_of_unrelated_seeds(seeds):
    text_000, text_003 = seeds["000"][1], seeds["003"][1]
    assert align(text_000, text_003, min_words=10).passages == ()
    (passage,) = align(text_000, text_003, min_words=8).passages
    assert (text_000[passage.start_a:passage.end_a]
            == "massacring the civilian population using heavy military equipment")


def test_seed_rows_are_valid_records(seed_rows):
    rows, _ = seed_rows
    validator = _validator()
    for row in rows:
        assert list(validator.iter_errors(row)) == []
    table = pa.Table.from_pylist(rows, schema=REUSE)
    assert table.num_rows == len(rows)


# -- the record --------------------------------------------------------------


def _validator() -> Draft202012Validator:
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in SCHEMA_DIR.glob("*.schema.json")]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    schema = json.loads((SCHEMA_DIR / "reuse.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_the_json_schema_and_the_arrow_schema_describe_the_same_row():
    schema = json.loads((SCHEMA_DIR / "reuse.schema.json").read_text(encoding="utf-8"))
    assert schema["$id"] == "urn:archive:schema:reuse:1.0.0"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(schema["required"]) == set(REUSE.names)
    # (the text digests are null in rows written before they were recorded)
    assert {f.name for f in REUSE if f.nullable} == {"text_sha256_a", "text_sha256_b"}
    assert "run_id" in REUSE.names


def test_the_json_schema_refuses_bad_rows():
    good = {"run_id": RUN_ID, "doc_id_a": "a" * 64, "doc_id_b": "b" * 64, "text_sha256_a": None,
            "text_sha256_b": None, "start_a": 0, "end_a": 5,
            "start_b": 3, "end_b": 8, "passage_words": 1, "passage_text": "Hello", "similarity": 0.5}
    validator = _validator()
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({**good, "text_sha256_a": "c" * 64, "text_sha256_b": None})) == []
    for field, value in (("doc_id_a", "xyz"), ("text_sha256_b", "xyz"), ("start_a", -1), ("similarity", 0),
                         ("similarity", 1.5),
                         ("passage_text", "  "), ("run_id", "yesterday"), ("passage_words", 0)):
        assert list(validator.iter_errors({**good, field: value})), field
    assert list(validator.iter_errors({**good, "colour": "blue"}))


# -- exact passages ----------------------------------------------------------

SHARED = "the quick brown fox jumps over the lazy dog near the river bank today"


def test_align_finds_a_passage_whatever_the_whitespace_around_its_tokens():
    text_a = f"Alpha beta gamma. {SHARED}. Delta"
    text_b = "Something else entirely, " + SHARED.replace(" ", "\n\n", 3).replace("lazy", "  lazy") + ". Omega"
    (passage,) = align(text_a, text_b, min_words=5).passages
    assert text_a[passage.start_a:passage.end_a] == f"{SHARED}."
    assert text_b[passage.start_b:passage.end_b].split() == f"{SHARED}.".split()
    assert passage.words == len(SHARED.split())


def test_align_needs_min_words_and_exact_tokens():
    assert align("one two three four five", "one two three four five", min_words=6).passages == ()
    # Case and punctuation are part of a token: "D" is not "d", "g." is not "g".
    passages = align("a b c d e f g", "a b c D e f g.", min_words=2).passages
    assert [(p.start_a, p.end_a, p.words) for p in passages] == [(0, 5, 3), (8, 11, 2)]


def test_align_reports_a_passage_once_per_occurrence_and_a_repeat_in_both_once_per_placement():
    text_a = f"start {SHARED} middle words here"
    text_b = f"{SHARED} and again {SHARED} end"
    passages = align(text_a, text_b, min_words=5).passages
    assert [(p.token_a, p.token_b, p.words) for p in passages] == [(1, 0, 14), (1, 16, 14)]
    assert all(text_a[p.start_a:p.end_a] == SHARED for p in passages)


def test_align_is_linear_on_long_texts():
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(5000)]
    shared = " ".join(rng.choices(vocabulary, k=300))
    text_a = " ".join(rng.choices(vocabulary, k=100_000)) + " " + shared
    text_b = shared + " " + " ".join(rng.choices(vocabulary, k=100_000))
    started = time.perf_counter()
    passages = align(text_a, text_b, min_words=10).passages
    assert time.perf_counter() - started < 3.0
    assert [text_a[p.start_a:p.end_a] for p in passages] == [shared]


def test_align_of_very_repetitive_texts_stays_bounded():
    text = "la " * 20_000
    started = time.perf_counter()
    align(text, text, min_words=10)
    assert time.perf_counter() - started < 3.0


# -- the search --------------------------------------------------------------


def _texts_with_plant(rng: random.Random, vocabulary, weights, passage: str, n: int) -> list[str]:
    texts = []
    for _ in range(n):
        before = " ".join(rng.choices(vocabulary, weights, k=rng.randint(20, 120)))
        after = " ".join(rng.choices(vocabulary, weights, k=rng.randint(20, 120)))
        texts.append(f"{before}\n\n{passage}\n\n{after}")
    return texts


def test_identical_texts_are_duplicates_not_reuse():
    rng = random.Random(1)
    vocabulary = [f"v{i}" for i in range(2000)]
    passage = " ".join(rng.choices(vocabulary, k=60))
    text, other = _texts_with_plant(rng, vocabulary, None, passage, 2)
    documents = [("a" * 64, text), ("b" * 64, other), ("c" * 64, text)]
    stats = ReuseStats()
    rows = list(find_reuse(documents, run_id=RUN_ID, stats=stats))
    assert {(r["doc_id_a"], r["doc_id_b"]) for r in rows} == {("a" * 64, "b" * 64), ("b" * 64, "c" * 64)}
    assert stats.identical_texts == 1 and stats.candidate_pairs == 1
    texts = dict(documents)
    for row in rows:
        _assert_row_slices_exactly(row, texts, ReuseParams().min_words)
        assert _squash(row["passage_text"]) == passage
    # The twin's rows are the first copy's, with the sides swapped where the ids sort the other way.
    by_pair = {(r["doc_id_a"], r["doc_id_b"]): r for r in rows}
    first, twin = by_pair[("a" * 64, "b" * 64)], by_pair[("b" * 64, "c" * 64)]
    assert (first["start_a"], first["start_b"]) == (twin["start_b"], twin["start_a"])
    assert list(find_reuse([("a" * 64, text), ("c" * 64, text)], run_id=RUN_ID)) == []


def test_texts_are_fetched_again_in_bulk_only_for_candidate_pairs_and_must_not_change(seeds):
    texts = dict(seeds.values())
    calls = []

    def get_texts(doc_ids):
        calls.append(list(doc_ids))
        return [(doc_id, texts[doc_id]) for doc_id in doc_ids]

    stats = ReuseStats()
    rows = list(find_reuse(((d, t) for d, t in seeds.values()), run_id=RUN_ID, get_texts=get_texts, stats=stats))
    assert rows
    # One call, for the three texts of the two pairs.
    assert [sorted(c) for c in calls] == [sorted(seeds[x][0] for x in ("000", "001", "002"))]
    assert stats.fetches == 1 and stats.texts_fetched == 3

    # At most texts_per_fetch texts at a time: the two pairs need 3 texts, so 2 at a time takes two calls.
    calls.clear()
    assert list(find_reuse(seeds.values(), run_id=RUN_ID, get_texts=get_texts, texts_per_fetch=2)) == rows
    assert len(calls) == 2 and all(len(c) <= 2 for c in calls)

    with pytest.raises(ReuseError, match="other than the one indexed"):
        list(find_reuse(seeds.values(), run_id=RUN_ID,
                        get_texts=lambda doc_ids: [(d, texts[d] + " changed") for d in doc_ids]))
    with pytest.raises(ReuseError, match="no text"):
        list(find_reuse(seeds.values(), run_id=RUN_ID, get_texts=lambda doc_ids: [(d, texts[d]) for d in doc_ids[1:]]))


def test_a_doc_id_given_twice_is_refused(seeds):
    doc_id, text = seeds["000"]
    with pytest.raises(ReuseError, match="twice"):
        list(find_reuse([(doc_id, text), (doc_id, text)], run_id=RUN_ID))


def test_min_similarity_drops_pairs_that_share_little(seeds):
    rows = list(find_reuse(seeds.values(), run_id=RUN_ID, params=ReuseParams(min_similarity=0.3)))
    assert {(r["doc_id_a"], r["doc_id_b"]) for r in rows} == {_pair(seeds, "000", "002")}


@pytest.mark.parametrize("bad", [
    {"shingle_words": 0}, {"window_words": 3}, {"query_stride": 0}, {"query_stride": 26}, {"num_perm": 1},
    {"threshold": 0.0}, {"threshold": 1.5}, {"min_words": 0}, {"min_similarity": -0.1},
])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        ReuseParams(**bad)


def test_a_synthetic_corpus_scales_below_all_pairs_and_every_planted_passage_is_found():
    """2,000 documents of Zipf-distributed words (so common phrases exist), with
    passages of 50 to 100 words (at least 2 * window_words - 1, the length the
    index is built to catch) planted in 2 to 4 documents each."""
    rng = random.Random(20261122)
    vocabulary = [f"w{i}" for i in range(4000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    n = 2000
    texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(80, 200))) for _ in range(n)]
    planted: dict[tuple[int, int], str] = {}
    hosts_taken: set[int] = set()
    for _ in range(25):
        passage = " ".join(rng.choices(vocabulary[500:], k=rng.randint(50, 100)))
        hosts = rng.sample(sorted(set(range(n)) - hosts_taken), rng.randint(2, 4))
        hosts_taken.update(hosts)
        for host in hosts:
            words = texts[host].split()
            cut = rng.randint(0, len(words))
            texts[host] = " ".join(words[:cut] + [f"\n\n{passage}\n\n"] + words[cut:]).strip()
        for x in hosts:
            for y in hosts:
                if x < y:
                    planted[(x, y)] = passage
    doc_ids = [hashlib.sha256(f"doc {i}".encode()).hexdigest() for i in range(n)]
    texts = [normalise_text(t) for t in texts]
    by_id = dict(zip(doc_ids, texts))

    def get_texts(wanted):
        return [(doc_id, by_id[doc_id]) for doc_id in wanted]

    stats = ReuseStats()
    started = time.perf_counter()
    rows = list(find_reuse(zip(doc_ids, texts), run_id=RUN_ID, get_texts=get_texts, stats=stats))
    elapsed = time.perf_counter() - started

    all_pairs = n * (n - 1) // 2
    assert stats.candidate_pairs < n  # linear, not the 1,999,000 pairs of an all-against-all comparison
    assert stats.candidate_pairs < all_pairs / 1000
    assert stats.texts_fetched <= 2 * stats.candidate_pairs
    found = {}
    for row in rows:
        _assert_row_slices_exactly(row, by_id, ReuseParams().min_words)
        found.setdefault((row["doc_id_a"], row["doc_id_b"]), []).append(_squash(row["passage_text"]))
    expected = {tuple(sorted((doc_ids[x], doc_ids[y]))): passage for (x, y), passage in planted.items()}
    assert set(found) == set(expected)
    for pair, passage in expected.items():
        # A planted passage may run on into a coincidentally equal neighbouring word.
        assert any(passage in p for p in found[pair]), pair
    assert elapsed < 15, stats
