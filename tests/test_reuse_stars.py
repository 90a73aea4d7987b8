"""A star's pairs derived through its pivot against the same pairs aligned directly, on reprints with OCR noise."""

import importlib
import random

import numpy as np

from archive.reuse.align import Tokenizer, align_tokens
from archive.reuse.params import ReuseParams, ReuseStats
from archive.reuse.stars import STAR_BLOCK, align_star, pick_stars

VOCABULARY = ["".join(random.Random(i).choices("etaoinshrdlcumwfgypb", k=random.Random(-i).randint(2, 9)))
              for i in range(5000)]


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCABULARY, k=count)


def _noisy(words: list[str], rng: random.Random) -> list[str]:
    """OCR noise: 3% of words misread, 0.5% split, 0.5% dropped, 0.5% run into the next."""
    out = []
    for word in words:
        roll = rng.random()
        if roll < 0.03:
            at = rng.randrange(len(word))
            out.append(word[:at] + "#" + word[at + 1:])
        elif roll < 0.035 and len(word) > 1:
            out.extend([word[:1], word[1:]])
        elif roll < 0.04:
            continue
        elif roll < 0.045 and out:
            out[-1] += word
        else:
            out.append(word)
    return out


def _reprints(rng: random.Random, story: list[str], count: int, full: int = 0) -> list[str]:
    """count reprints of story: each cut to 60-100% of its words (the first full of them whole), with a local
    paragraph before or after it, and OCR noise."""
    texts = []
    for n in range(count):
        kept = story if n < full else story[:int(len(story) * rng.uniform(0.6, 1.0))]
        local = _words(rng, rng.randint(40, 150))
        words = _noisy(kept, rng)
        texts.append(" ".join(local + words if rng.random() < 0.5 else words + local))
    return texts


def _direct(texts: dict[int, str], pairs, params: ReuseParams) -> dict:
    tokenizer = Tokenizer()
    found = {}
    for a, b in pairs:
        alignment = align_tokens(tokenizer.tokens(texts[a]), tokenizer.tokens(texts[b]), params.min_words,
                                 params.max_gap)
        if alignment.passages:
            found[(a, b)] = alignment
    return found


def _covered(passages, side: str) -> set[int]:
    return {t for p in passages for t in (range(p.token_a, p.token_a + p.words) if side == "a"
                                            else range(p.token_b, p.token_b + p.words_b))}


def test_a_stars_pairs_derived_through_its_pivot_match_their_direct_alignments():
    rng = random.Random(7)
    params = ReuseParams()
    story = _words(rng, 600)
    # The pivot (key 0) holds the story whole, with noise of its own; five reprints do too, the rest are cut.
    texts = dict(enumerate([" ".join(_noisy(story, rng))] + _reprints(rng, story, 40, full=5)))
    texts[41] = " ".join(_words(rng, 500))  # a false candidate: shares nothing
    pairs = [(a, b) for a in texts for b in texts if a < b]
    stats = ReuseStats()
    derived = {(a, b): alignment for a, b, alignment in align_star(texts, 0, pairs, params, stats, Tokenizer())}
    direct = _direct(texts, pairs, params)
    assert derived.keys() == direct.keys()  # the same pairs share passages; 41 with none
    assert stats.pairs_derived >= 0.9 * 40 * 39 / 2  # the pairs of two reprints, but where noise left seeds
    tokenizer = Tokenizer()
    for pair, alignment in direct.items():
        got = derived[pair]
        for side in "ab":
            want, have = _covered(alignment.passages, side), _covered(got.passages, side)
            assert len(have - want) <= 2 * params.max_gap, pair  # (a derived passage may bridge a gap on one side)
            assert len(have & want) >= 0.9 * len(want), pair
        for p in got.passages:  # each derived passage starts and ends with a token both texts have there
            a, b = (tokenizer.tokens(texts[key]) for key in pair)
            assert texts[pair[0]][p.start_a:a.ends[p.token_a]] == texts[pair[1]][p.start_b:b.ends[p.token_b]]
            last_a, last_b = p.token_a + p.words - 1, p.token_b + p.words_b - 1
            assert texts[pair[0]][a.starts[last_a]:p.end_a] == texts[pair[1]][b.starts[last_b]:p.end_b]
        assert abs(got.similarity - alignment.similarity) < 0.05, pair


def test_members_sharing_what_the_pivot_lacks_are_aligned_directly():
    """Two reprints hold the story's second half, the pivot only its first: their shared second half is found
    whole, as a direct alignment finds it, not cut where the pivot ends."""
    rng = random.Random(11)
    params = ReuseParams()
    story = _words(rng, 400)
    texts = {0: " ".join(story[:200]), 1: " ".join(story), 2: " ".join(story) + " " + " ".join(_words(rng, 60))}
    stats = ReuseStats()
    (found,) = [alignment for a, b, alignment in align_star(texts, 0, [(0, 1), (0, 2), (1, 2)], params, stats,
                                                             Tokenizer()) if (a, b) == (1, 2)]
    assert stats.pairs_derived == 0
    assert [(p.token_a, p.words, p.token_b, p.words_b) for p in found.passages] == [(0, 400, 0, 400)]


def test_pick_stars_takes_the_most_connected_text_as_pivot_and_its_partners_as_members():
    # keys 10-14 a clique, 20-22 another, 14-20 a pair across them; 30-31 a pair alone
    clique = [(a, b) for i, a in enumerate(range(10, 15)) for b in range(a + 1, 15)]
    pairs = np.array(clique + [(20, 21), (20, 22), (21, 22), (14, 20), (30, 31)], dtype=np.int64)
    degree = {}
    for a, b in pairs.tolist():
        degree[a], degree[b] = degree.get(a, 0) + 1, degree.get(b, 0) + 1
    preferred = np.array(sorted(degree, key=lambda key: (-degree[key], key)), dtype=np.int64)
    keys, pivots, blocks = pick_stars(pairs[:, 0], pairs[:, 1], preferred)
    pivot_of = dict(zip(keys.tolist(), pivots.tolist()))
    assert pivot_of[14] == 14 and all(pivot_of[k] == 14 for k in (10, 11, 12, 13, 20))
    assert pivot_of[21] == 21 and pivot_of[22] == 21  # 20 went to the first pivot
    assert pivot_of[30] == 30 and pivot_of[31] == 30
    assert {k: b for k, b in zip(keys.tolist(), blocks.tolist()) if pivot_of[k] == k} == {14: -1, 21: -1, 30: -1}
    assert set(blocks.tolist()) == {-1, 0}


def test_a_large_stars_members_come_in_blocks():
    members = 2 * STAR_BLOCK + 5
    pairs = np.array([(0, k) for k in range(1, members + 1)], dtype=np.int64)
    keys, pivots, blocks = pick_stars(pairs[:, 0], pairs[:, 1], np.arange(members + 1, dtype=np.int64))
    assert (pivots == 0).all() and blocks[0] == -1
    assert np.bincount(blocks[1:]).tolist() == [STAR_BLOCK, STAR_BLOCK, 5]


def test_a_stars_blocks_end_at_a_bound_in_characters_too(monkeypatch):
    from archive.reuse import stars

    monkeypatch.setattr(stars, "STAR_BLOCK_CHARS", 1000)
    members = 20
    pairs = np.array([(0, k) for k in range(1, members + 1)], dtype=np.int64)
    chars = np.array([5000] + [300] * members, dtype=np.int64)  # the pivot's length counts in no block
    keys, pivots, blocks = stars.pick_stars(pairs[:, 0], pairs[:, 1], np.arange(members + 1, dtype=np.int64), chars)
    assert blocks[0] == -1 and (np.diff(blocks[1:]) >= 0).all()  # blocks by key
    sizes = np.bincount(blocks[1:])
    assert len(sizes) == 6 and (sizes >= 3).all() and (sizes * 300 <= 1000 + 300).all()  # up to 1000, one text more


def test_tokens_are_numbered_again_only_between_alignments_never_within_a_star(monkeypatch):
    """With a vocabulary bound far below a star's distinct tokens, the tokenizer starts again before each star
    or pair, never while one is aligned: the star's passages are the same as with no bound."""
    align = importlib.import_module("archive.reuse.align")  # (the package's `align` is the function)

    rng = random.Random(5)
    params = ReuseParams()
    story = _words(rng, 300)
    texts = dict(enumerate([" ".join(story)] + _reprints(rng, story, 8)))
    pairs = [(a, b) for a in texts for b in texts if a < b]
    unbounded = align_star(texts, 0, pairs, params, ReuseStats(), Tokenizer())
    monkeypatch.setattr(align, "MAX_VOCABULARY", 10)
    tokenizer = Tokenizer()
    for _ in range(2):  # (the second time, the tokenizer holds more than the bound when the star starts)
        assert align_star(texts, 0, pairs, params, ReuseStats(), tokenizer) == unbounded
        assert len(tokenizer.vocabulary) > 10
    assert len(unbounded) == len(pairs)
