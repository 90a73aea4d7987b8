"""Text reuse on long texts: a text is searched in its first max_text_chars characters, cut at whitespace; what
is done in pieces (words, windows, alignment seeds) gives what the whole computation gives."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.reuse import ReuseParams, ReuseStats, align, document_bands, find_reuse, reuse_parameters
from archive.reuse.align import MAX_SEED_OCCURRENCES
from archive.reuse.bands import _heads, _text_digests
from archive.reuse.sketch import searched_text

RUN_ID = "20261207T153000Z-1a2b"


def _words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(3000)}" for _ in range(n))


def test_max_text_chars_is_a_recorded_parameter_with_a_default():
    assert ReuseParams().max_text_chars == 4_000_000
    assert reuse_parameters(ReuseParams(max_text_chars=1000))["max_text_chars"] == 1000
    with pytest.raises(ValueError, match="max_text_chars"):
        ReuseParams(max_text_chars=0)
    # It decides how much of a long text has band hashes, not what they are: the scheme is the same.
    assert reuse_parameters(ReuseParams(max_text_chars=1000))["bands"] == reuse_parameters()["bands"]


def test_a_text_is_searched_whole_up_to_max_text_chars_then_cut_at_whitespace():
    params = ReuseParams(max_text_chars=10)
    assert searched_text("0123456789", params) == "0123456789"
    assert searched_text("one two three four", params) == "one two"  # "three" would be cut: it goes whole
    assert searched_text("one two th ree", params) == "one two th"  # the 11th character is a space: cut there
    assert searched_text("x" * 30, params) == "x" * 10  # no whitespace at all: cut at the limit
    # Only the first max_text_chars + 1 characters count.
    text = "alpha beta gamma delta"
    assert searched_text(text, params) == searched_text(text[:11], params)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n\u00e9", max_size=40), st.integers(1, 30))
def test_the_searched_text_is_a_prefix_that_cuts_no_token(text, limit):
    searched = searched_text(text, ReuseParams(max_text_chars=limit))
    assert text.startswith(searched)
    if len(text) <= limit:
        assert searched is text
    elif any(c.isspace() for c in text[:limit + 1]):
        assert len(searched) <= limit and text[len(searched)].isspace()
        assert searched.split() == text.split()[:len(searched.split())]  # whole tokens, none cut
    else:
        assert searched == text[:limit]


def test_arrow_slices_a_long_text_to_what_searched_text_reads_and_hashes_it_in_place():
    params = ReuseParams(max_text_chars=12)
    texts = ["short text", "a much longer text, cut here and not later", "é" * 20, ""]
    column = pa.array(texts, pa.large_string())
    heads = _heads(column, params)
    assert heads == ["short text", texts[1][:13], "é" * 13, ""]
    assert [searched_text(h, params) for h in heads] == [searched_text(t, params) for t in texts]
    assert _heads(column, params, [2, 0]) == ["é" * 13, "short text"]
    assert _text_digests(column.slice(1), [0, 2]) == [hashlib.sha256(t.encode()).hexdigest()
                                                       for t in (texts[1], texts[3])]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


@pytest.mark.parametrize("seed", range(6))
def test_sketching_a_few_words_and_windows_at_a_time_gives_the_same_band_hashes(seed):
    rng = random.Random(seed)
    text = "\n".join(_words(rng, rng.randint(0, 80)) + rng.choice([".", ",", " -", ""]) for _ in range(8))
    params = ReuseParams(shingle_words=rng.choice([2, 5]), window_words=rng.choice([5, 25]),
                         query_stride=rng.choice([1, 5]))
    whole = document_bands(text, params)
    with mock.patch("archive.reuse.sketch.SKETCH_CHARS", rng.choice([1, 9, 40])), \
            mock.patch("archive.reuse.sketch.WINDOWS_AT_ONCE", rng.choice([1, 2, 7])):
        assert _same(document_bands(text, params), whole)


def test_a_long_texts_band_hashes_are_those_of_its_searched_text():
    rng = random.Random(3)
    text = _words(rng, 4000)
    params = ReuseParams(max_text_chars=5000)
    bands = document_bands(text, params)
    assert _same(bands, document_bands(searched_text(text, params)))
    assert bands.windows_queried < document_bands(text).windows_queried / 4


def test_a_long_text_shares_what_lies_in_its_searched_part_and_rows_slice_the_whole_texts():
    rng = random.Random(11)
    early, late = _words(rng, 80), _words(rng, 80)
    long_text = f"{_words(rng, 200)} {early} {_words(rng, 2000)} {late} {_words(rng, 100)}"
    params = ReuseParams(max_text_chars=long_text.index(late) - 100)
    documents = [("a" * 64, long_text), ("b" * 64, f"{_words(rng, 50)} {early} {_words(rng, 40)}"),
                 ("c" * 64, f"{_words(rng, 50)} {late} {_words(rng, 40)}")]
    stats = ReuseStats()
    rows = list(find_reuse(documents, run_id=RUN_ID, params=params, stats=stats))
    assert stats.texts_cut == 1
    assert {(r["doc_id_a"], r["doc_id_b"]) for r in rows} == {("a" * 64, "b" * 64)}  # the late passage is past it
    (row,) = rows
    texts = dict(documents)
    assert texts[row["doc_id_a"]][row["start_a"]:row["end_a"]] == row["passage_text"] == early
    assert texts[row["doc_id_b"]][row["start_b"]:row["end_b"]] == early
    # With the default, the whole text is searched: both passages.
    assert len({(r["doc_id_a"], r["doc_id_b"]) for r in find_reuse(documents, run_id=RUN_ID)}) == 2


def _reference_align(text_a: str, text_b: str, m: int) -> list[tuple]:
    """The passages by the plain seed-and-extend, every seed in a dict of tuples."""
    import re

    spans_a = [x.span() for x in re.finditer(r"\S+", text_a)]
    spans_b = [x.span() for x in re.finditer(r"\S+", text_b)]
    a = [text_a[s:e] for s, e in spans_a]
    b = [text_b[s:e] for s, e in spans_b]
    seeds: dict[tuple, list[int]] = {}
    for j in range(len(b) - m + 1):
        seeds.setdefault(tuple(b[j:j + m]), []).append(j)
    found, reached = [], {}
    for i in range(len(a) - m + 1):
        hits = seeds.get(tuple(a[i:i + m]), [])
        if len(hits) > MAX_SEED_OCCURRENCES:
            continue
        for j in hits:
            d = j - i
            if i < reached.get(d, -1):
                continue
            start, end = i, i + m
            while start > 0 and start + d > 0 and a[start - 1] == b[start - 1 + d]:
                start -= 1
            while end < len(a) and end + d < len(b) and a[end] == b[end + d]:
                end += 1
            reached[d] = end
            found.append((spans_a[start][0], spans_a[end - 1][1], spans_b[start + d][0], spans_b[end - 1 + d][1],
                          end - start, start, start + d, end - start, end - start))
    return sorted(found, key=lambda p: (p[0], p[2]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z", "yy", "é"]), max_size=60),
       st.lists(st.sampled_from(["x", "y", "z", "yy", "é"]), max_size=60),
       st.sampled_from([1, 2, 3, 5]), st.sampled_from([" ", "\n", "  "]))
def test_alignment_with_hashed_seeds_finds_the_passages_of_the_plain_one(a, b, m, space):
    text_a, text_b = space.join(a), " ".join(b)
    passages = align(text_a, text_b, m).passages
    assert [dataclasses.astuple(p) for p in passages] == _reference_align(text_a, text_b, m)


@pytest.mark.parametrize("repeats", [MAX_SEED_OCCURRENCES, MAX_SEED_OCCURRENCES + 1])
def test_a_seed_repeated_more_than_max_seed_occurrences_is_skipped(repeats):
    seed = "one two three four five six seven eight nine ten"
    passages = align(f"start {seed} end", " ".join([seed] * repeats), 10).passages
    assert len(passages) == (repeats if repeats <= MAX_SEED_OCCURRENCES else 0)
