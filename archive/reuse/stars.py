"""The pairs of a star aligned through its pivot: a story's reprints each aligned once with one of them, the
passages of every other pair of reprints derived from those two alignments, not aligned again.

A wire story reprinted n times is n * (n - 1) / 2 candidate pairs, each as long as the story. The search
(search._Search.text_pairs) picks pivots among the texts of candidate pairs, greedily (pick_stars): the text
with most candidate partners (then the longest, then by text_sha256) that is not yet a pivot's partner becomes
a pivot, and its partners not yet taken become its members. Pairs of two members of one star are derived here:

- each member is aligned with the pivot (align_tokens, keeping the runs of identical tokens of its passages);
- where a passage of one member and a passage of the other overlap in the pivot's tokens, the two share the
  stretch from the first to the last pivot token there that both have in a run with the pivot (their tokens
  there are the pivot's, so each other's); it is a passage when it holds min_words such tokens in a row;
- what two members share that the pivot lacks is not seen through it: a pair of members whose tokens outside
  their passages with the pivot start a seed (min_words tokens) in common is aligned directly instead.

A derived passage ends where the two alignments with the pivot end, and counts as matched the tokens both
have in runs with it; tests/test_reuse_stars.py compares derived and direct alignments on reprinted stories
with OCR noise.
"""

from __future__ import annotations

import numpy as np

from .align import Alignment, Passage, Tokenizer, Tokens, _seed_hashes, align_tokens
from .params import ReuseParams, ReuseStats
from .sketch import searched_text


class _Member:
    """A member's alignment with its pivot, as derive uses it: its tokens; for each of its passages with the
    pivot, the passage's span in the pivot's tokens and the member's token aligned with each pivot token of it
    in a run of identical tokens (-1 where none is: int32, or int64 for a text of 2 ** 31 tokens or more); and
    the hashes of the member's seeds that start outside its passages with the pivot. Memory: some 4 bytes a
    token of its passages."""

    __slots__ = ("tokens", "alignment", "spans", "uncovered")

    def __init__(self, tokens: Tokens, alignment: Alignment, runs: list, m: int):
        self.tokens, self.alignment = tokens, alignment
        kind = np.int32 if len(tokens.numbers) < 1 << 31 else np.int64
        self.spans = []
        for passage, passage_runs in zip(alignment.passages, runs):
            mapped = np.full(passage.words, -1, dtype=kind)
            for at, own, length in passage_runs:
                mapped[at - passage.token_a:at - passage.token_a + length] = np.arange(own, own + length)
            self.spans.append((passage.token_a, passage.token_a + passage.words, mapped))
        self.uncovered = _uncovered(tokens, alignment, m)


def align_star(texts: dict[int, str], pivot: int, pairs: list[tuple[int, int]], params: ReuseParams,
               stats: ReuseStats, tokenizer: Tokenizer) -> list[tuple[int, int, Alignment]]:
    """(key_a, key_b, alignment) of each pair (a, b) of pairs with passages of at least params.min_similarity:
    pairs with the pivot aligned, pairs of two other texts derived through it (or aligned, where they may share
    what the pivot lacks). texts holds the pivot's and every text of pairs."""
    m, gap = params.min_words, params.max_gap
    tokenizer.start()  # (never again in the star: its texts' numbers are compared)
    tokens_p = tokenizer.tokens(searched_text(texts[pivot], params))
    members: dict[int, _Member] = {}

    def member(key: int) -> _Member:
        found = members.get(key)
        if found is None:
            tokens = tokenizer.tokens(searched_text(texts[key], params))
            runs: list = []
            alignment = align_tokens(tokens_p, tokens, m, gap, runs)
            found = members[key] = _Member(tokens, alignment, runs, m)
        return found

    found = []
    for a, b in pairs:
        if pivot in (a, b):
            other = member(b if a == pivot else a)
            alignment = other.alignment if a == pivot else _swapped(other.alignment)
        else:
            x, y = member(a), member(b)
            if x.uncovered.isdisjoint(y.uncovered):
                stats.pairs_derived += 1
                alignment = derive(x, y, m)
            else:
                alignment = align_tokens(x.tokens, y.tokens, m, gap)
        if alignment.passages and alignment.similarity >= params.min_similarity:
            found.append((a, b, alignment))
    return found


def derive(x: _Member, y: _Member, min_words: int) -> Alignment:
    """The passages two members share where both are aligned with their pivot: for each passage of x and each
    of y with the pivot that overlap there, from the first to the last token of the pivot in the overlap that
    both have in runs of identical tokens with it (their tokens there are the pivot's: the same), kept when it
    holds min_words such tokens in a row."""
    passages = {}
    for low_x, high_x, mapped_x in x.spans:
        for low_y, high_y, mapped_y in y.spans:
            low, high = max(low_x, low_y), min(high_x, high_y)
            if high - low < min_words:
                continue
            at_x, at_y = mapped_x[low - low_x:high - low_x], mapped_y[low - low_y:high - low_y]
            both = (at_x >= 0) & (at_y >= 0)
            edges = np.flatnonzero(np.diff(np.concatenate(([False], both, [False])).view(np.int8)))
            if not len(edges) or (edges[1::2] - edges[0::2]).max() < min_words:
                continue
            first, last = int(edges[0]), int(edges[-1]) - 1
            first_x, last_x, first_y, last_y = int(at_x[first]), int(at_x[last]), int(at_y[first]), int(at_y[last])
            if last_x < first_x or last_y < first_y:
                continue
            passage = Passage(start_a=int(x.tokens.starts[first_x]), end_a=int(x.tokens.ends[last_x]),
                              start_b=int(y.tokens.starts[first_y]), end_b=int(y.tokens.ends[last_y]),
                              words=last_x + 1 - first_x, token_a=first_x, token_b=first_y,
                              words_b=last_y + 1 - first_y, matched=int(np.count_nonzero(both[first:last + 1])))
            passages.setdefault((first_x, first_y, passage.words, passage.words_b), passage)
    ordered = sorted(passages.values(), key=lambda p: (p.start_a, p.start_b))
    return Alignment(tuple(ordered), len(x.tokens.numbers), len(y.tokens.numbers))


def _uncovered(tokens: Tokens, alignment: Alignment, m: int) -> set[int]:
    """The hashes of the seeds (m tokens) of a member that start outside its passages with the pivot."""
    count = len(tokens.numbers) - m + 1
    if count <= 0:
        return set()
    outside = np.ones(count, dtype=bool)
    for p in alignment.passages:
        outside[p.token_b:p.token_b + p.words_b] = False
    if not outside.any():
        return set()
    return set(_seed_hashes(tokens.numbers, m)[outside].tolist())


def _swapped(alignment: Alignment) -> Alignment:
    passages = sorted((p.swapped() for p in alignment.passages), key=lambda p: (p.start_a, p.start_b))
    return Alignment(tuple(passages), alignment.words_b, alignment.words_a)


# Members of a star a task takes at a time: a task aligns the pivot with the members of one block (its pairs) or
# two (the pairs across them). A block ends at STAR_BLOCK members or STAR_BLOCK_CHARS characters of their texts
# (and one text more), so that a task holds at most some 2 * STAR_BLOCK + 1 texts, or 2 * STAR_BLOCK_CHARS + 3 *
# max_text_chars characters, and their tokens.
STAR_BLOCK = 128
STAR_BLOCK_CHARS = 8 << 20


def pick_stars(a: np.ndarray, b: np.ndarray, preferred: np.ndarray,
               chars: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stars over the candidate pairs (a[i], b[i]), texts by key: (keys, the pivot of each, its block; -1 for a
    pivot). preferred: every key of a pair, in the order they are offered to be pivots: the first key not yet
    taken becomes a pivot and takes its partners not yet taken as members, in blocks by key (of STAR_BLOCK
    members, or of STAR_BLOCK_CHARS characters: chars, the length of each text of preferred, in its order)."""
    keys = np.sort(preferred)
    ia, ib = np.searchsorted(keys, a), np.searchsorted(keys, b)
    source, target = np.concatenate([ia, ib]), np.concatenate([ib, ia])
    order = np.argsort(source, kind="stable")
    target = target[order]
    bounds = np.searchsorted(source[order], np.arange(len(keys) + 1))
    pivot_of = np.full(len(keys), -1, dtype=np.int64)
    for i in np.searchsorted(keys, preferred).tolist():
        if pivot_of[i] >= 0:
            continue
        pivot_of[i] = i
        partners = target[bounds[i]:bounds[i + 1]]
        pivot_of[partners[pivot_of[partners] < 0]] = i
    blocks = np.full(len(keys), -1, dtype=np.int64)
    members = np.flatnonzero(pivot_of != np.arange(len(keys)))
    if len(members):
        members = members[np.lexsort((members, pivot_of[members]))]
        star = pivot_of[members]
        first = np.flatnonzero(np.r_[True, star[1:] != star[:-1]])
        begins = np.repeat(first, np.diff(np.r_[first, len(members)]))
        rank = np.arange(len(members)) - begins
        blocks[members] = rank // STAR_BLOCK
        if chars is not None:
            length = np.zeros(len(keys), dtype=np.int64)
            length[np.searchsorted(keys, preferred)] = chars
            before = np.cumsum(length[members]) - length[members]  # characters of the star's members before each
            blocks[members] = np.maximum(blocks[members], (before - before[begins]) // STAR_BLOCK_CHARS)
    return keys, keys[pivot_of], blocks
