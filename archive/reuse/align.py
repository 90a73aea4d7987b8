"""The exact passages two texts share: seed-and-extend alignment, and the reuse rows of a pair's passages."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

from ..timing import StageTimer
from .params import ReuseParams, ReuseStats

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
    """
    if min_words < 1:
        raise ValueError(f"min_words must be at least 1, not {min_words}")
    spans_a = [m.span() for m in _TOKEN.finditer(text_a)]
    spans_b = [m.span() for m in _TOKEN.finditer(text_b)]
    n_a, n_b, m = len(spans_a), len(spans_b), min_words
    if n_a < m or n_b < m:
        return Alignment((), n_a, n_b)
    ids: dict[str, int] = {}
    a = [ids.setdefault(text_a[s:e], len(ids)) for s, e in spans_a]
    b = [ids.setdefault(text_b[s:e], len(ids)) for s, e in spans_b]
    seeds: dict[tuple[int, ...], list[int]] = {}
    for j in range(n_b - m + 1):
        seeds.setdefault(tuple(b[j:j + m]), []).append(j)

    passages = []
    reached: dict[int, int] = {}  # diagonal (j - i) -> end (in a) of the last passage found on it
    for i in range(n_a - m + 1):
        hits = seeds.get(tuple(a[i:i + m]))
        if hits is None or len(hits) > MAX_SEED_OCCURRENCES:
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
                start_a=spans_a[start][0], end_a=spans_a[end - 1][1],
                start_b=spans_b[start + d][0], end_b=spans_b[end - 1 + d][1],
                words=end - start, token_a=start, token_b=start + d,
            ))
    passages.sort(key=lambda p: (p.start_a, p.start_b))
    return Alignment(tuple(passages), n_a, n_b)


def aligned_pair(text_a: str, text_b: str, params: ReuseParams, stats: ReuseStats) -> Alignment | None:
    """The alignment of a candidate pair of texts, or None when they share no passage of
    params.min_words or fall under params.min_similarity; counted in stats."""
    with StageTimer(stats.timings, "align"):
        alignment = align(text_a, text_b, params.min_words)
    if not alignment.passages or alignment.similarity < params.min_similarity:
        return None
    stats.pairs_with_reuse += 1
    stats.passages += len(alignment.passages)
    return alignment


def reuse_rows(run_id: str, doc_id_a: str, text_a: str, doc_id_b: str, text_b: str,
               passages: Iterable[Passage], similarity: float) -> list[dict]:
    """Rows for one pair's passages, sides ordered so that doc_id_a < doc_id_b."""
    if doc_id_b < doc_id_a:
        doc_id_a, text_a, doc_id_b, text_b = doc_id_b, text_b, doc_id_a, text_a
        passages = [p.swapped() for p in passages]
    rows = [{
        "run_id": run_id,
        "doc_id_a": doc_id_a,
        "doc_id_b": doc_id_b,
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
