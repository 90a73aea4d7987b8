"""The exact passages two texts share: seed-and-extend alignment, and the reuse rows of a pair's passages."""

from __future__ import annotations

import functools
import re
from array import array
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..timing import StageTimer
from .params import ReuseParams, ReuseStats
from .sketch import searched_text

# Words for the alignment: whitespace-separated tokens compared exactly, so a
# passage is the same on both sides except for the whitespace between tokens.
_TOKEN = re.compile(r"\S+")
# A seed (min_words tokens) occurring more often than this in one document is
# repetition (tables, refrains), not reuse; skipping it keeps alignment linear.
MAX_SEED_OCCURRENCES = 64


@dataclass(frozen=True)
class Passage:
    """A maximal run of identical tokens in two texts, as character spans of each.

    text_a[start_a:end_a] and text_b[start_b:end_b] hold the same tokens in the
    same order; only the whitespace between them may differ.
    """

    start_a: int
    end_a: int
    start_b: int
    end_b: int
    words: int
    token_a: int  # index of the first token in each text
    token_b: int

    def swapped(self) -> Passage:
        return Passage(self.start_b, self.end_b, self.start_a, self.end_a, self.words, self.token_b, self.token_a)


@dataclass(frozen=True)
class Alignment:
    """The passages two texts share and how much of each they cover."""

    passages: tuple[Passage, ...]
    words_a: int
    words_b: int

    @functools.cached_property
    def similarity(self) -> float:
        """The larger of the two coverages: the fraction of a text's tokens that
        lie in passages shared with the other. 1.0 when one text is wholly
        contained in the other; 0.0 when nothing is shared."""
        if not self.passages:
            return 0.0
        covered_a = _covered((p.token_a, p.token_a + p.words) for p in self.passages)
        covered_b = _covered((p.token_b, p.token_b + p.words) for p in self.passages)
        return max(covered_a / self.words_a, covered_b / self.words_b)


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def align(text_a: str, text_b: str, min_words: int = ReuseParams.min_words) -> Alignment:
    """Every maximal passage of at least min_words tokens that text_a and text_b share.

    Seed and extend: each run of min_words tokens of text_b is indexed by its
    content, text_a's runs look themselves up, and each hit not already inside
    a passage on the same diagonal is extended both ways token by token. Time
    is linear in the two lengths plus the passages found; seeds repeated more
    than MAX_SEED_OCCURRENCES times within text_b are skipped (a passage made
    only of such seeds is not reported). A passage repeated in one text is
    reported once per occurrence.

    Memory: about 50 bytes a token of the two texts (each token's start and
    number, each seed's hash and place in a sorted index of text_b's seeds),
    and the texts' distinct tokens.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be at least 1, not {min_words}")
    vocabulary: dict[str, int] = {}
    starts_a, a = _tokens(text_a, vocabulary)
    starts_b, b = _tokens(text_b, vocabulary)
    n_a, n_b, m = len(a), len(b), min_words
    if n_a < m or n_b < m:
        return Alignment((), n_a, n_b)
    lengths = [len(token) for token in vocabulary]  # (a dict keeps its keys in the order of their numbers)
    del vocabulary
    # text_b's seeds, sorted by a hash of their tokens (equal seeds together, in their order in text_b); each seed
    # of text_a finds the range of its hash, and its hits are the seeds there whose tokens are its own.
    hashes_b = _seed_hashes(b, m)
    index = np.argsort(hashes_b, kind="stable")
    sorted_b = hashes_b[index]
    del hashes_b
    hashes_a = _seed_hashes(a, m)
    first = np.searchsorted(sorted_b, hashes_a, side="left")
    last = np.searchsorted(sorted_b, hashes_a, side="right")
    del hashes_a, sorted_b
    seeded = np.flatnonzero(last > first)

    passages = []
    reached: dict[int, int] = {}  # diagonal (j - i) -> end (in a) of the last passage found on it
    repeated: dict[int, tuple[list[int], list[int] | None]] = {}  # low -> (seed, its hits), for large ranges
    for i, low, high in zip(seeded.tolist(), first[seeded].tolist(), last[seeded].tolist()):
        seed = a[i:i + m]
        if high - low > MAX_SEED_OCCURRENCES:  # (a seed text_a repeats too: checked once, not at each repeat)
            known = repeated.get(low)
            if known is None or known[0] != seed:
                known = repeated[low] = (seed, _hits(seed, b, m, index, low, high))
            hits = known[1]
        else:
            hits = _hits(seed, b, m, index, low, high)
        if hits is None:
            continue
        for j in hits:
            d = j - i
            if i < reached.get(d, -1):
                continue
            start = i
            while start > 0 and start + d > 0 and a[start - 1] == b[start - 1 + d]:
                start -= 1
            end = i + m
            while end < n_a and end + d < n_b and a[end] == b[end + d]:
                end += 1
            reached[d] = end
            passages.append(Passage(
                start_a=starts_a[start], end_a=starts_a[end - 1] + lengths[a[end - 1]],
                start_b=starts_b[start + d], end_b=starts_b[end - 1 + d] + lengths[b[end - 1 + d]],
                words=end - start, token_a=start, token_b=start + d,
            ))
    passages.sort(key=lambda p: (p.start_a, p.start_b))
    return Alignment(tuple(passages), n_a, n_b)


def _tokens(text: str, vocabulary: dict[str, int]) -> tuple[array, list[int]]:
    """(the character offset where each whitespace-separated token of text starts, each token's number in
    vocabulary, which gives new tokens the next numbers)."""
    starts = array("q")
    numbers = []
    for match in _TOKEN.finditer(text):
        starts.append(match.start())
        numbers.append(vocabulary.setdefault(match.group(), len(vocabulary)))
    return starts, numbers


# The multipliers of a seed's tokens in its hash (odd 64-bit constants; arithmetic wraps, modulo 2 ** 64).
_MIX = np.uint64(0x9E3779B97F4A7C15)
_STEP = np.uint64(0xBF58476D1CE4E5B9)


def _seed_hashes(numbers: list[int], m: int) -> np.ndarray:
    """A 64-bit hash of each run of m tokens (by number): equal runs have equal hashes, and unequal runs
    rarely do; hits are checked against the tokens themselves."""
    tokens = np.array(numbers, dtype=np.uint64) * _MIX
    count = len(numbers) - m + 1
    hashes = tokens[:count].copy()
    for offset in range(1, m):
        hashes *= _STEP
        hashes += tokens[offset:offset + count]
    return hashes


def _hits(seed: list[int], b: list[int], m: int, index: np.ndarray, low: int, high: int) -> list[int] | None:
    """Where in b the tokens of seed run (index[low:high]: the seeds of b with its hash), in order; None where
    they run more than MAX_SEED_OCCURRENCES times."""
    hits = []
    for start in range(low, high, 256):
        for j in index[start:min(high, start + 256)].tolist():
            if b[j:j + m] == seed:
                hits.append(j)
                if len(hits) > MAX_SEED_OCCURRENCES:
                    return None
    return hits


def aligned_pair(text_a: str, text_b: str, params: ReuseParams, stats: ReuseStats) -> Alignment | None:
    """The alignment of a candidate pair of texts (of their searched_text: a long text's first
    params.max_text_chars characters), or None when they share no passage of params.min_words or
    fall under params.min_similarity; counted in stats."""
    with StageTimer(stats.timings, "align"):
        alignment = align(searched_text(text_a, params), searched_text(text_b, params), params.min_words)
    if not alignment.passages or alignment.similarity < params.min_similarity:
        return None
    stats.pairs_with_reuse += 1
    stats.passages += len(alignment.passages)
    return alignment


def reuse_rows(run_id: str, doc_id_a: str, text_a: str, doc_id_b: str, text_b: str,
               passages: Iterable[Passage], similarity: float, sha_a: str | None = None,
               sha_b: str | None = None) -> list[dict]:
    """Rows for one pair's passages, sides ordered so that doc_id_a < doc_id_b; sha_a and sha_b, the text_sha256
    of the texts aligned."""
    if doc_id_b < doc_id_a:
        doc_id_a, text_a, sha_a, doc_id_b, text_b, sha_b = doc_id_b, text_b, sha_b, doc_id_a, text_a, sha_a
        passages = [p.swapped() for p in passages]
    rows = [{
        "run_id": run_id,
        "doc_id_a": doc_id_a,
        "doc_id_b": doc_id_b,
        "text_sha256_a": sha_a,
        "text_sha256_b": sha_b,
        "start_a": p.start_a,
        "end_a": p.end_a,
        "start_b": p.start_b,
        "end_b": p.end_b,
        "passage_words": p.words,
        "passage_text": text_a[p.start_a:p.end_a],
        "similarity": similarity,
    } for p in passages]
    rows.sort(key=lambda r: (r["start_a"], r["start_b"]))
    return rows
