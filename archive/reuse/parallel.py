"""A reuse search's work in worker processes: partitions of band rows grouped into candidate pairs, and chunks of
pairs aligned with their texts; sent to a pool, the answers in order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from typing import Iterable, Iterator

import numpy as np

from ..timing import StageTimer
from .align import Passage, Tokenizer, aligned_pair
from .candidates import candidate_codes
from .params import ReuseParams, ReuseStats
from .stars import align_star

# Pairs per chunk a worker aligns at once, and the most texts a chunk carries (a chunk ends at either); chunks
# handed to the pool ahead of the one being written, per worker.
PAIRS_PER_CHUNK = 256
TEXTS_PER_CHUNK = 128
AHEAD_PER_WORKER = 2

_tokenizer: Tokenizer | None = None  # in each worker process: the tokens of the texts it aligned last


def align_chunk(params: ReuseParams, texts: dict[int, str], pairs: list[tuple[int, int]],
                pivot: int | None = None) -> tuple[list[tuple[int, int, tuple[Passage, ...], float]], dict]:
    """In a worker: ([(key_a, key_b, passages, similarity) of each pair with reuse], {seconds aligning, pairs
    derived}). With pivot, the pairs are a star's (stars.align_star); else each is aligned."""
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = Tokenizer()
    stats = ReuseStats()
    found = []
    if pivot is not None:
        with StageTimer(stats.timings, "align"):
            aligned = align_star(texts, pivot, pairs, params, stats, _tokenizer)
        found = [(a, b, alignment.passages, alignment.similarity) for a, b, alignment in aligned]
    else:
        for a, b in pairs:
            alignment = aligned_pair(texts[a], texts[b], params, stats, _tokenizer)
            if alignment is not None:
                found.append((a, b, alignment.passages, alignment.similarity))
    return found, {"seconds": stats.timings["align"], "derived": stats.pairs_derived}


# key_a, sha_a, text_a, docs_a, key_b, sha_b, text_b, docs_b, and the pair's star: None, or (its task, the pivot's
# key, text_sha256 and text), the pairs of one task aligned together (see _Search.text_pairs)
Keyed = tuple[int, str, str, list, int, str, str, list, "tuple | None"]
# sha_a, text_a, docs_a, sha_b, text_b, docs_b, passages, similarity
Aligned = tuple[str, str, list, str, str, list, tuple[Passage, ...], float]


def aligned_pairs(pairs: Iterable[Keyed], params: ReuseParams, stats: ReuseStats,
                  executor: Executor | None = None, workers: int = 2) -> Iterator[Aligned]:
    """The candidate pairs that share a passage, with their passages and similarity, in the order given; counted
    in stats. Aligned here, or with executor in its workers (about workers of them): chunks of pairs and their
    texts (a star's task is one chunk) go to it AHEAD_PER_WORKER per worker ahead of the one whose answers are
    given, so that memory holds those chunks' texts, never more."""
    work = (((chunk, texts), (params, {key: text for key, (_, text) in texts.items()},
                               [(a, b) for a, _, b, _ in chunk], pivot))
            for chunk, texts, pivot in _chunks(pairs))
    for (chunk, texts), answer in _in_order(executor, align_chunk, work, AHEAD_PER_WORKER * max(1, workers) + 1):
        yield from _answers(chunk, texts, answer, stats)


def _in_order(executor: Executor | None, function, work: Iterable[tuple[object, tuple]],
              held: int) -> Iterator[tuple[object, object]]:
    """(context, function(*arguments)) of each (context, arguments) of work, in order: here without executor,
    else in its processes, at most held calls submitted and not yet answered when an answer is awaited (so that
    memory holds their arguments, never more)."""
    if executor is None:
        for context, arguments in work:
            yield context, function(*arguments)
        return
    window: deque = deque()
    for context, arguments in work:
        window.append((context, executor.submit(function, *arguments)))
        if len(window) >= held:
            context, future = window.popleft()
            yield context, future.result()
    while window:
        context, future = window.popleft()
        yield context, future.result()


def _chunks(pairs: Iterable[Keyed]) -> Iterator[tuple[list[tuple[int, list, int, list]], dict[int, tuple],
                                                      int | None]]:
    """(pairs, their texts, the pivot of a star's task or None): a star's task whole, other pairs by
    PAIRS_PER_CHUNK or TEXTS_PER_CHUNK."""
    chunk: list[tuple[int, list, int, list]] = []
    texts: dict[int, tuple[str, str]] = {}  # key -> (text_sha256, text)
    task = pivot = None
    for key_a, sha_a, text_a, docs_a, key_b, sha_b, text_b, docs_b, star in pairs:
        this_task = star[0] if star is not None else None
        if chunk and (this_task != task or (task is None and (len(chunk) >= PAIRS_PER_CHUNK
                                                              or len(texts) >= TEXTS_PER_CHUNK))):
            yield chunk, texts, pivot
            chunk, texts = [], {}
        task, pivot = this_task, None
        if star is not None:
            _, pivot, sha_p, text_p = star
            texts[pivot] = (sha_p, text_p)
        texts[key_a], texts[key_b] = (sha_a, text_a), (sha_b, text_b)
        chunk.append((key_a, docs_a, key_b, docs_b))
    if chunk:
        yield chunk, texts, pivot


def _answers(chunk, texts, answer, stats: ReuseStats) -> Iterator[Aligned]:
    found, figures = answer
    stats.timings["align"] += figures["seconds"]
    stats.pairs_derived += figures["derived"]
    stats.candidate_pairs += len(chunk)
    by_pair = {(a, b): (passages, similarity) for a, b, passages, similarity in found}
    for key_a, docs_a, key_b, docs_b in chunk:
        hit = by_pair.get((key_a, key_b))
        if hit is not None:
            stats.pairs_with_reuse += 1
            stats.passages += len(hit[0])
            yield (*texts[key_a], docs_a, *texts[key_b], docs_b, hit[0], hit[1])


def partition_codes(rows: np.ndarray, max_bucket: int | None) -> np.ndarray:
    """In a worker: candidate_codes of one partition's band rows."""
    return candidate_codes(rows["hash"], rows["key"], rows["indexed"], max_bucket)


def grouped(groups: Iterator[np.ndarray], max_bucket: int | None, executor: Executor | None,
            workers: int) -> Iterator[np.ndarray]:
    """partition_codes of each group, here or in executor's processes (2 groups a worker ahead), in order."""
    work = ((None, (rows, max_bucket)) for rows in groups)
    for _, codes in _in_order(executor, partition_codes, work, 2 * max(1, workers)):
        yield codes
