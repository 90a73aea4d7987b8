"""Candidate pairs aligned in worker processes: chunks of pairs, with their texts, to a pool, the answers in order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Iterable, Iterator

from .align import Passage, Tokenizer, aligned_pair
from .params import ReuseParams, ReuseStats

# Pairs per chunk a worker aligns at once, and the most texts a chunk carries (a chunk ends at either); chunks
# handed to the pool ahead of the one being written, per worker.
PAIRS_PER_CHUNK = 256
TEXTS_PER_CHUNK = 128
AHEAD_PER_WORKER = 2

_tokenizer: Tokenizer | None = None  # in each worker process: the tokens of the texts it aligned last


def align_chunk(params: ReuseParams, texts: dict[int, str],
                pairs: list[tuple[int, int]]) -> tuple[list[tuple[int, int, tuple[Passage, ...], float]], float]:
    """In a worker: ([(key_a, key_b, passages, similarity) of each pair with reuse], seconds aligning)."""
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = Tokenizer()
    stats = ReuseStats()
    found = []
    for a, b in pairs:
        alignment = aligned_pair(texts[a], texts[b], params, stats, _tokenizer)
        if alignment is not None:
            found.append((a, b, alignment.passages, alignment.similarity))
    return found, stats.timings["align"]


Keyed = tuple[int, str, str, list, int, str, str, list]  # key_a, sha_a, text_a, docs_a, key_b, sha_b, text_b, docs_b
# sha_a, text_a, docs_a, sha_b, text_b, docs_b, passages, similarity
Aligned = tuple[str, str, list, str, str, list, tuple[Passage, ...], float]


def aligned_pairs(pairs: Iterable[Keyed], params: ReuseParams, stats: ReuseStats,
                  executor: Executor | None = None, workers: int = 2) -> Iterator[Aligned]:
    """The candidate pairs that share a passage, with their passages and similarity, in the order given; counted
    in stats. Aligned here, or with executor in its workers (about workers of them): chunks of pairs and their
    texts go to it AHEAD_PER_WORKER per worker ahead of the one whose answers are given, so that memory holds
    those chunks' texts, never more."""
    if executor is None:
        tokenizer = Tokenizer()
        for _, sha_a, text_a, docs_a, _, sha_b, text_b, docs_b in pairs:
            stats.candidate_pairs += 1
            alignment = aligned_pair(text_a, text_b, params, stats, tokenizer)
            if alignment is not None:
                yield sha_a, text_a, docs_a, sha_b, text_b, docs_b, alignment.passages, alignment.similarity
        return
    window: deque = deque()
    for chunk, texts in _chunks(pairs):
        future = executor.submit(align_chunk, params, {key: text for key, (_, text) in texts.items()},
                                 [(a, b) for a, _, b, _ in chunk])
        window.append((chunk, texts, future))
        if len(window) > AHEAD_PER_WORKER * max(1, workers):
            yield from _answers(*window.popleft(), stats)
    while window:
        yield from _answers(*window.popleft(), stats)


def _chunks(pairs: Iterable[Keyed]) -> Iterator[tuple[list[tuple[int, list, int, list]], dict[int, tuple]]]:
    chunk: list[tuple[int, list, int, list]] = []
    texts: dict[int, tuple[str, str]] = {}  # key -> (text_sha256, text)
    for key_a, sha_a, text_a, docs_a, key_b, sha_b, text_b, docs_b in pairs:
        texts[key_a], texts[key_b] = (sha_a, text_a), (sha_b, text_b)
        chunk.append((key_a, docs_a, key_b, docs_b))
        if len(chunk) >= PAIRS_PER_CHUNK or len(texts) >= TEXTS_PER_CHUNK:
            yield chunk, texts
            chunk, texts = [], {}
    if chunk:
        yield chunk, texts


def _answers(chunk, texts, future, stats: ReuseStats) -> Iterator[Aligned]:
    found, seconds = future.result()
    stats.timings["align"] += seconds
    stats.candidate_pairs += len(chunk)
    by_pair = {(a, b): (passages, similarity) for a, b, passages, similarity in found}
    for key_a, docs_a, key_b, docs_b in chunk:
        hit = by_pair.get((key_a, key_b))
        if hit is not None:
            stats.pairs_with_reuse += 1
            stats.passages += len(hit[0])
            yield (*texts[key_a], docs_a, *texts[key_b], docs_b, hit[0], hit[1])
