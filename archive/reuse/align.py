"""The passages two texts share: exact seeds extended through OCR noise (chained across small gaps), and the reuse
rows of a pair's passages."""

from __future__ import annotations

import functools
import re
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
    """A passage two texts share, as character spans of each.

    Exact (max_gap 0): text_a[start_a:end_a] and text_b[start_b:end_b] hold the
    same tokens in the same order; only the whitespace between them may differ.
    Through noise (max_gap > 0): runs of identical tokens, in the same order on
    both sides, one after another across gaps of at most max_gap tokens on
    each side (a misread, split, joined or dropped word); each span starts and
    ends with a token the other has at the same place.
    """

    start_a: int
    end_a: int
    start_b: int
    end_b: int
    words: int  # tokens of text_a in the passage
    token_a: int  # index of the first token in each text
    token_b: int
    words_b: int  # tokens of text_b in the passage
    matched: int  # tokens in the identical runs (words and words_b, for an exact passage)

    def swapped(self) -> Passage:
        return Passage(self.start_b, self.end_b, self.start_a, self.end_a, self.words_b, self.token_b, self.token_a,
                       self.words, self.matched)


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
        covered_b = _covered((p.token_b, p.token_b + p.words_b) for p in self.passages)
        return max(covered_a / self.words_a, covered_b / self.words_b)


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def align(text_a: str, text_b: str, min_words: int = ReuseParams.min_words, max_gap: int = 0) -> Alignment:
    """Every maximal passage that text_a and text_b share, holding a run of at least min_words identical tokens.

    Seed and extend: each run of min_words tokens of text_b is indexed by its
    content, text_a's runs look themselves up, and each hit not already inside
    a passage on the same diagonal is extended both ways token by token. Time
    is linear in the two lengths plus the passages found; seeds repeated more
    than MAX_SEED_OCCURRENCES times within text_b are skipped (a passage made
    only of such seeds is not reported). A passage repeated in one text is
    reported once per occurrence.

    Memory: about 60 bytes a token of the two texts (each token's start, end
    and number, each seed's hash and place in a sorted index of its text's
    seeds), and the texts' distinct tokens.
    """
    tokenizer = Tokenizer()
    return align_tokens(tokenizer.tokens(text_a), tokenizer.tokens(text_b), min_words, max_gap)


def align_tokens(tokens_a: Tokens, tokens_b: Tokens, min_words: int = ReuseParams.min_words,
                 max_gap: int = 0, runs_out: list | None = None) -> Alignment:
    """align() of two texts' tokens, numbered by the same Tokenizer. With runs_out, the runs of identical tokens
    of each passage, in the order of the passages, are appended to it: each a list of (token in a, token in b,
    length), in order (stars.py derives other pairs' passages from them)."""
    if min_words < 1:
        raise ValueError(f"min_words must be at least 1, not {min_words}")
    starts_a, ends_a, a = tokens_a.starts, tokens_a.ends, tokens_a.numbers
    starts_b, ends_b, b = tokens_b.starts, tokens_b.ends, tokens_b.numbers
    n_a, n_b, m = len(a), len(b), min_words
    if n_a < m or n_b < m:
        return Alignment((), n_a, n_b)
    # Each text's seeds sorted by a hash of their tokens (equal seeds together, in their order in the text: see
    # Tokens.seeds); each seed of text_a finds the range of its hash in text_b's, and its hits are the seeds there
    # whose tokens are its own. (Searched in hash order: sorted keys are searched several times faster.)
    order_a, sorted_a = tokens_a.seeds(m)
    index, sorted_b = tokens_b.seeds(m)
    first = np.empty(len(order_a), dtype=np.intp)
    last = np.empty(len(order_a), dtype=np.intp)
    first[order_a] = np.searchsorted(sorted_b, sorted_a, side="left")
    last[order_a] = np.searchsorted(sorted_b, sorted_a, side="right")
    seeded = np.flatnonzero(last > first)
    if len(seeded) == 0:
        return Alignment((), n_a, n_b)
    lows, highs = first[seeded], last[seeded]
    # Seeds of consecutive tokens of text_a with one hit each, on the same diagonal, are a streak: once one is
    # inside a passage, so are the next ones up to the passage's end, skipped at once (run_end: the end of each
    # seed's streak, as a position in seeded).
    diagonal = np.where(highs - lows == 1, index[lows] - seeded, n_b + 1)  # (n_b + 1: no diagonal)
    streak = np.ones(len(seeded), dtype=bool)
    streak[1:] = (diagonal[1:] != diagonal[:-1]) | (seeded[1:] != seeded[:-1] + 1) | (diagonal[1:] > n_b)
    starts = np.flatnonzero(streak)
    run_end = np.repeat(np.append(starts[1:], len(seeded)), np.diff(np.append(starts, len(seeded)))).tolist()
    reversed_a, reversed_b = (a[::-1], b[::-1]) if max_gap else (a, b)

    passages = []
    reached: dict[int, int] = {}  # diagonal (j - i) -> end (in a) of the last passage found on it
    repeated: dict[int, tuple[list[int], list[int] | None]] = {}  # low -> (seed, its hits), for large ranges
    at = index.tolist()
    positions, lows, highs = seeded.tolist(), lows.tolist(), highs.tolist()
    k = 0
    while k < len(positions):
        i, low, high = positions[k], lows[k], highs[k]
        if high - low == 1:
            end_of_passage = reached.get(at[low] - i, -1)
            if i < end_of_passage:  # (the commonest case, a seed inside a passage found: no tokens compared)
                k = min(run_end[k], k + end_of_passage - i)
                continue
        k += 1
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
            end = _agree(a, b, i + m, d)
            runs = [(start, start + d, end - start)]
            if max_gap:
                backward = _chain(reversed_a, reversed_b, n_a - start, n_b - start - d, max_gap)
                runs = [(n_a - x - length, n_b - y - length, length) for x, y, length in reversed(backward)] + runs
                runs += _chain(a, b, end, end + d, max_gap)
            for x, y, length in runs:
                reached[y - x] = max(reached.get(y - x, -1), x + length)
            (first_a, first_b, _), (last_a, last_b, length) = runs[0], runs[-1]
            last_a, last_b = last_a + length - 1, last_b + length - 1
            passages.append((Passage(
                start_a=int(starts_a[first_a]), end_a=int(ends_a[last_a]), start_b=int(starts_b[first_b]),
                end_b=int(ends_b[last_b]),
                words=last_a + 1 - first_a, token_a=first_a, token_b=first_b, words_b=last_b + 1 - first_b,
                matched=sum(length for _, _, length in runs),
            ), runs))
    passages.sort(key=lambda found: (found[0].start_a, found[0].start_b))
    if runs_out is not None:
        runs_out.extend(runs for _, runs in passages)
    return Alignment(tuple(passage for passage, _ in passages), n_a, n_b)


def _chain(a: list[int], b: list[int], i: int, j: int, max_gap: int) -> list[tuple[int, int, int]]:
    """The runs of identical tokens that carry a passage on from a[i], b[j] (the first tokens after it): each
    (start in a, start in b, length), in order; an X-drop extension, as local alignments extend their hits.

    From the end of a run, the next is the nearest pair of equal tokens within max_gap tokens on each side
    (fewest tokens skipped on both sides, then on either), extended as far as the tokens agree. Each run scores
    its length, each gap the tokens skipped on the side that skips more. The passage goes on while its score
    stays within max_gap of the best it reached, and ends where that best was."""
    n_a, n_b = len(a), len(b)
    runs: list[tuple[int, int, int]] = []
    pending: list[tuple[int, int, int]] = []
    score = best = 0
    offsets = _gap_offsets(max_gap)
    while True:
        for x, y, cost in offsets:
            ia, jb = i + x, j + y
            if ia < n_a and jb < n_b and a[ia] == b[jb]:
                score -= cost
                break
        else:
            return runs
        if score < best - max_gap:
            return runs
        end = _agree(a, b, ia + 1, jb - ia)
        pending.append((ia, jb, end - ia))
        score += end - ia
        if score > best:
            best = score
            runs.extend(pending)
            pending = []
        i, j = end, end - ia + jb


@functools.cache
def _gap_offsets(max_gap: int) -> tuple[tuple[int, int, int], ...]:
    """The places _chain looks for the next pair of equal tokens, nearest first: (tokens skipped in a, in b, the
    larger of the two), fewest tokens skipped on both sides first (1 to 2 * max_gap: a[i] != b[j], skipping
    nothing finds nothing), then fewest in a."""
    return tuple((x, skipped - x, max(x, skipped - x)) for skipped in range(1, 2 * max_gap + 1)
                 for x in range(max(0, skipped - max_gap), min(skipped, max_gap) + 1))


# Tokens compared at once (as list slices) while a run of identical tokens is extended, before one at a time.
AGREE_STEP = 8


def _agree(a: list[int], b: list[int], i: int, d: int) -> int:
    """The end of the run of identical tokens a[k] == b[k + d] from k = i on (i itself when a[i] != b[i + d])."""
    limit = min(len(a), len(b) - d)
    step = AGREE_STEP
    while i + step <= limit and a[i:i + step] == b[i + d:i + d + step]:
        i += step
    while i < limit and a[i] == b[i + d]:
        i += 1
    return i


class Tokens:
    """A text's whitespace-separated tokens: where each starts and ends (integer arrays), and its number (its
    Tokenizer's); and, once asked for, its seeds (runs of m tokens) in the order of their hashes."""

    __slots__ = ("starts", "ends", "numbers", "_seeds")

    def __init__(self, starts: np.ndarray, ends: np.ndarray, numbers: list[int]):
        self.starts, self.ends, self.numbers = starts, ends, numbers
        self._seeds: tuple[int, np.ndarray, np.ndarray] | None = None

    def seeds(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(where each seed of m tokens starts, sorted by hash, equal hashes in their order in the text; those
        hashes, sorted): made once for a text aligned with many others."""
        if self._seeds is None or self._seeds[0] != m:
            hashes = _seed_hashes(self.numbers, m)
            order = np.argsort(hashes, kind="stable")
            self._seeds = (m, order, hashes[order])
        return self._seeds[1], self._seeds[2]


# The tokens a Tokenizer keeps, of the texts it was asked for last; the distinct tokens it numbers before it
# starts again (forgetting the texts it kept), at the start of an alignment. Some 60 and 100 bytes each: a
# worker's memory for them is bounded by these, whatever the run (a star's texts are aligned together).
CACHED_TOKENS = 500_000
MAX_VOCABULARY = 200_000
# Whether each code point up to U+3000 is whitespace (str.isspace, as str.split and the \s of re have it); the
# one after it stands for every code point above (none is whitespace).
_SPACE = np.array([chr(c).isspace() for c in range(0x3001)] + [False])


class Tokenizer:
    """Numbers tokens for align_tokens, the same token the same number, and keeps the tokens of the texts it
    was asked for last (up to CACHED_TOKENS), with their seeds once aligned: a search aligns each text with many
    others, and cuts it into tokens and seeds once. Memory: some 60 bytes a token kept, and the distinct tokens
    (up to MAX_VOCABULARY)."""

    def __init__(self, cached_tokens: int = CACHED_TOKENS):
        self.cached_tokens = cached_tokens
        self.vocabulary: dict[str, int] = {}
        self._kept: dict[str, Tokens] = {}
        self._kept_tokens = 0

    def start(self) -> None:
        """Before the texts of one alignment (or of a star's): the numbers start again once MAX_VOCABULARY
        tokens are numbered. Never between the texts of one alignment, whose numbers are compared."""
        if len(self.vocabulary) > MAX_VOCABULARY:
            self.vocabulary, self._kept, self._kept_tokens = {}, {}, 0

    def tokens(self, text: str) -> Tokens:
        found = self._kept.get(text)
        if found is not None:
            return found
        words = text.split()  # (the tokens of _TOKEN: str.split and re's \S share str.isspace)
        vocabulary = self.vocabulary
        new = [word for word in dict.fromkeys(words) if word not in vocabulary]
        vocabulary.update(zip(new, range(len(vocabulary), len(vocabulary) + len(new))))
        numbers = list(map(vocabulary.__getitem__, words))
        found = Tokens(*_spans(text, len(words)), numbers)
        while self._kept and self._kept_tokens + len(numbers) > self.cached_tokens:  # the oldest go first
            self._kept_tokens -= len(self._kept.pop(next(iter(self._kept))).numbers)
        if len(numbers) <= self.cached_tokens:
            self._kept[text] = found
            self._kept_tokens += len(numbers)
        return found


def _spans(text: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the count whitespace-separated tokens of text starts and ends (int32 arrays, for a text of
    fewer than 2 ** 31 characters; else int64), from its code points in numpy: a token starts where whitespace
    (or the text's start) gives way to the rest, and ends where whitespace (or the text's end) comes back."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    space = _SPACE[np.minimum(points, len(_SPACE) - 1)].view(np.int8)
    edges = np.diff(space, prepend=np.int8(1), append=np.int8(1))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    if len(starts) != count:  # (not expected: the two definitions of whitespace agree)
        spans = np.array([match.span() for match in _TOKEN.finditer(text)], dtype=np.int64).reshape(-1, 2)
        starts, ends = spans[:, 0], spans[:, 1]
    offsets = np.int32 if len(text) < 1 << 31 else np.int64
    return starts.astype(offsets), ends.astype(offsets)


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


def aligned_pair(text_a: str, text_b: str, params: ReuseParams, stats: ReuseStats,
                 tokenizer: Tokenizer | None = None) -> Alignment | None:
    """The alignment of a candidate pair of texts (of their searched_text: a long text's first
    params.max_text_chars characters), or None when they share no passage of params.min_words or
    fall under params.min_similarity; counted in stats. A tokenizer given keeps the tokens of texts
    aligned again."""
    tokenizer = tokenizer or Tokenizer()
    tokenizer.start()
    with StageTimer(stats.timings, "align"):
        alignment = align_tokens(tokenizer.tokens(searched_text(text_a, params)),
                                 tokenizer.tokens(searched_text(text_b, params)), params.min_words, params.max_gap)
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
