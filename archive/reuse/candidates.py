"""Candidate pairs of texts that share an LSH bucket, and find_reuse, the whole search in memory."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from ..fixity import text_sha256
from ..timing import StageTimer
from .align import Tokenizer, aligned_pair, reuse_rows
from .params import ReuseError, ReuseParams, ReuseStats
from .sketch import _bands_of_shingles, band_scheme, searched_text, shingle_hashes


def candidate_pairs(hashes: np.ndarray, keys: np.ndarray, indexed: np.ndarray,
                    max_bucket: int | None = None) -> np.ndarray:
    """Pairs of keys (an array of shape (n, 2), each row key_a < key_b, sorted,
    no repeats) whose band rows share a hash where at least one of the two
    rows is indexed: a query window of one text falls in the same LSH bucket
    as an indexed window of the other. The rule is symmetric, so the pairs do
    not depend on the order texts come in. See candidate_codes."""
    codes = candidate_codes(hashes, keys, indexed, max_bucket)
    return np.stack([codes >> 32, codes & 0xFFFFFFFF], axis=1)


def candidate_codes(hashes: np.ndarray, keys: np.ndarray, indexed: np.ndarray,
                    max_bucket: int | None = None) -> np.ndarray:
    """The pairs of candidate_pairs as codes, key_a << 32 | key_b (int64, sorted, no repeats); keys are
    below 2 ** 31.

    Rows repeating a (hash, key) are merged. Memory: a few times the rows
    given, and the distinct pairs found: buckets of up to SMALL_BUCKET keys are
    expanded together in numpy (PAIRS_AT_ONCE pairs of rows at a time), a
    larger bucket of n keys n at a time, and the pairs found are made distinct
    whenever MERGE_PAIRS of them are held, so that a pair of texts sharing many
    buckets is held once, not once a bucket. A hash shared by very many texts
    (boilerplate) costs time, as its pairs are many, but not n * n memory at
    once. With max_bucket, a hash shared by more keys than that
    makes no pairs (see ReuseParams.max_bucket_texts).
    """
    if len(hashes) < 2:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((keys, hashes))
    h = np.asarray(hashes)[order]
    k = np.asarray(keys, dtype=np.int64)[order]
    x = np.asarray(indexed, dtype=bool)[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (h[1:] != h[:-1]) | (k[1:] != k[:-1])
    starts = np.flatnonzero(first)
    h, k, x = h[starts], k[starts], np.logical_or.reduceat(x, starts)
    group = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    size = np.diff(np.r_[group, len(h)])
    useful = (size >= 2) & np.logical_or.reduceat(x, group)
    if max_bucket is not None:
        useful &= size <= max_bucket
    found = _Distinct()
    small = useful & (size <= SMALL_BUCKET)
    for n in np.unique(size[small]).tolist():
        for a, b in _bucket_pairs(k, x, group[small & (size == n)], n):
            found.add((a << 32) | b)
    for start, n in zip(group[useful & ~small].tolist(), size[useful & ~small].tolist()):
        bucket, flags = k[start:start + n], x[start:start + n]
        for i in range(n - 1):
            partners = bucket[i + 1:] if flags[i] else bucket[i + 1:][flags[i + 1:]]
            if len(partners):
                found.add((bucket[i] << 32) | partners)
    return found.codes()


# Pair codes held before they are made distinct (8 bytes each).
MERGE_PAIRS = 1 << 21


class _Distinct:
    """Pair codes, made distinct whenever MERGE_PAIRS are held."""

    def __init__(self):
        self._held: list[np.ndarray] = []
        self._count = 0

    def add(self, codes: np.ndarray) -> None:
        self._held.append(codes)
        self._count += len(codes)
        if self._count > MERGE_PAIRS:
            self._held = [self.codes()]
            self._count = len(self._held[0])

    def codes(self) -> np.ndarray:
        if not self._held:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(self._held))


# Buckets of up to this many keys are expanded all at once, those of each size together (larger ones, n keys at a
# time); and the most pairs of places such an expansion makes at once.
SMALL_BUCKET = 64
PAIRS_AT_ONCE = 1 << 20


def _bucket_pairs(keys: np.ndarray, indexed: np.ndarray, starts: np.ndarray,
                  n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs (keys sorted within each bucket: (firsts, seconds)) of the buckets of n rows at starts: every two
    rows of a bucket of which at least one is indexed, in numpy, at most PAIRS_AT_ONCE at a time."""
    first, second = np.triu_indices(n, k=1)
    step = max(1, PAIRS_AT_ONCE // len(first))
    for at in range(0, len(starts), step):
        chunk = starts[at:at + step, None]
        a, b = (chunk + first).ravel(), (chunk + second).ravel()
        keep = indexed[a] | indexed[b]
        yield keys[a[keep]], keys[b[keep]]


# Bits of a HashFilter: 2 ** 29 bits, 64 MiB, whatever the number of hashes it holds.
FILTER_BITS = 29


class HashFilter:
    """A set of band hashes in fixed memory (2 ** bits bits, one per value of a hash's low bits): a hash added is
    always found; one not added is found as often as bits are set (about 1 - e ** (-hashes / 2 ** bits)). A
    search keeps the committed band rows a run's hashes may share with it: rows let through wrongly only go to
    the grouping (on disk), which finds no pair in them. Band hashes end in _fmix64: their low bits are evenly
    spread."""

    def __init__(self, bits: int = FILTER_BITS):
        if not 6 <= bits <= 40:
            raise ValueError(f"bits must be between 6 and 40, not {bits}")
        self.mask = np.uint64((1 << bits) - 1)
        self.words = np.zeros(1 << (bits - 6), dtype=np.uint64)
        self.added = 0

    def _slots(self, hashes: np.ndarray, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
        values = np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64) & self.mask
        if ordered:
            values.sort()
        return values >> np.uint64(6), np.left_shift(np.uint64(1), values & np.uint64(63))

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes) == 0:
            return
        words, bits = self._slots(hashes, ordered=True)
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        self.words[words[starts]] |= np.bitwise_or.reduceat(bits, starts)
        self.added += len(hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """A bool per hash: True where it may have been added, False where it surely was not."""
        words, bits = self._slots(hashes)
        return (self.words[words] & bits) != 0


class CandidateIndex:
    """Pass one, in memory: documents arrive one at a time and are cut into
    windows whose band hashes are kept (see document_bands); sorted_pairs()
    then groups them by hash (candidate_pairs). Of a text nothing else is kept
    but its sha256 (to recognise identical texts); time is linear in the words
    read, plus the candidates found.

    Memory: the hash, the text's key and the indexed flag of each distinct
    band hash of a document (about bands / query_stride of them per word),
    much less than datasketch's MinHashLSH held; for a whole archive,
    archive.reuse.search groups the same rows on disk instead.
    """

    def __init__(self, params: ReuseParams = ReuseParams(), stats: ReuseStats | None = None):
        self.params = params
        self.stats = stats if stats is not None else ReuseStats()
        band_scheme(params)  # fails early on parameters datasketch refuses
        self.doc_ids: list[str] = []  # index -> doc_id of the first document with each distinct text
        self.digests: list[bytes] = []  # index -> sha256 of that text
        self.twins: dict[int, list[str]] = {}  # index -> later doc_ids with the same text
        self._by_digest: dict[bytes, int] = {}
        self._seen: set[str] = set()
        self._hashes: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._indexed: list[np.ndarray] = []
        self._pairs: list[tuple[int, int]] | None = None

    def add(self, doc_id: str, text: str) -> int | None:
        """Sketch one document. Its index among distinct texts, or None when its
        text is too short or repeats an earlier document's."""
        if doc_id in self._seen:
            raise ReuseError(doc_id, "doc_id given twice")
        self._seen.add(doc_id)
        self.stats.documents += 1
        with StageTimer(self.stats.timings, "signatures"):
            searched = searched_text(text, self.params)
            words, shingles = shingle_hashes(searched, self.params.shingle_words)
            if words < self.params.shingle_words:
                self.stats.too_short += 1
                return None
            digest = bytes.fromhex(text_sha256(text))
            first = self._by_digest.get(digest)
            if first is not None:
                self.twins.setdefault(first, []).append(doc_id)
                self.stats.identical_texts += 1
                return None
            self.stats.texts_cut += len(text) > self.params.max_text_chars
            bands = _bands_of_shingles(words, shingles, self.params)
        index = len(self.doc_ids)
        self.doc_ids.append(doc_id)
        self.digests.append(digest)
        self._by_digest[digest] = index
        self._hashes.append(bands.hashes)
        self._keys.append(np.full(len(bands), index, dtype=np.int32))
        self._indexed.append(bands.indexed)
        self.stats.windows_indexed += bands.windows_indexed
        self.stats.windows_queried += bands.windows_queried
        self._pairs = None
        return index

    def sorted_pairs(self) -> list[tuple[int, int]]:
        if self._pairs is None:
            with StageTimer(self.stats.timings, "lsh"):
                if self._hashes:
                    pairs = candidate_pairs(np.concatenate(self._hashes), np.concatenate(self._keys),
                                            np.concatenate(self._indexed))
                else:
                    pairs = np.empty((0, 2), dtype=np.int64)
            self._pairs = [(int(a), int(b)) for a, b in pairs.tolist()]
        return self._pairs


GetTexts = Callable[[list[str]], Iterable[tuple[str, str]]]
# Texts held at once while aligning candidate pairs (and asked for in one call).
TEXTS_PER_FETCH = 1000


def find_reuse(
    documents: Iterable[tuple[str, str]],
    *,
    run_id: str,
    params: ReuseParams = ReuseParams(),
    get_texts: GetTexts | None = None,
    texts_per_fetch: int = TEXTS_PER_FETCH,
    stats: ReuseStats | None = None,
) -> Iterator[dict]:
    """Rows of the reuse dataset (schemas/reuse.schema.json), one per passage
    of at least params.min_words tokens that two documents share.

    documents: (doc_id, normalised text) pairs, read once; each text is
        sketched and dropped.
    get_texts(doc_ids): the texts of candidate pairs again, as (doc_id, text)
        pairs, asked for up to texts_per_fetch at a time so that a Parquet
        dataset answers each call with one filtered scan
        (pc.field("doc_id").isin(doc_ids)). A text must be the one indexed.
        Without get_texts every text is kept in memory: small inputs only.

    Pairs whose texts are identical (same text_sha256) are duplicates, not
    reuse, and are not reported; a document whose text repeats an earlier
    one's gets that text's rows with every other document.

    Rows come after all documents have been read, pair by pair: doc_id_a <
    doc_id_b, and within a pair by start_a. similarity is the pair's (see
    Alignment.similarity), the same on each of its rows.
    """
    if texts_per_fetch < 2:
        raise ValueError(f"texts_per_fetch must be at least 2 (one pair), not {texts_per_fetch}")
    stats = stats if stats is not None else ReuseStats()
    index = CandidateIndex(params, stats)
    kept: dict[str, str] = {}
    for doc_id, text in documents:
        if index.add(doc_id, text) is not None and get_texts is None:
            kept[doc_id] = text
    if get_texts is None:
        def get_texts(doc_ids: list[str]) -> Iterable[tuple[str, str]]:
            return ((doc_id, kept[doc_id]) for doc_id in doc_ids)
    pairs = index.sorted_pairs()
    stats.candidate_pairs = len(pairs)
    texts: dict[int, str] = {}
    tokenizer = Tokenizer()
    for chunk in _chunks(pairs, texts_per_fetch):
        needed = {i for pair in chunk for i in pair}
        texts = {i: t for i, t in texts.items() if i in needed}
        texts.update(_fetch(index, get_texts, sorted(needed - texts.keys()), stats))
        for i, j in chunk:
            yield from _pair_rows(index, run_id, params, i, texts[i], j, texts[j], stats, tokenizer)


def _chunks(pairs: list[tuple[int, int]], max_texts: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive runs of pairs that together need at most max_texts texts."""
    chunk: list[tuple[int, int]] = []
    needed: set[int] = set()
    for pair in pairs:
        if len(needed | set(pair)) > max_texts:
            yield chunk
            chunk, needed = [], set()
        chunk.append(pair)
        needed.update(pair)
    if chunk:
        yield chunk


def _fetch(index: CandidateIndex, get_texts: GetTexts, wanted: list[int], stats: ReuseStats) -> dict[int, str]:
    """Texts by index, each checked against the sha256 of the text indexed:
    offsets must point into the very text the documents dataset holds."""
    if not wanted:
        return {}
    by_id = {index.doc_ids[i]: i for i in wanted}
    found: dict[int, str] = {}
    with StageTimer(stats.timings, "fetch"):
        for doc_id, text in get_texts(list(by_id)):
            i = by_id.get(doc_id)
            if i is None:
                continue
            if bytes.fromhex(text_sha256(text)) != index.digests[i]:
                raise ReuseError(doc_id, "get_texts returned a text other than the one indexed")
            found[i] = text
    stats.fetches += 1
    stats.texts_fetched += len(found)
    if len(found) != len(wanted):
        missing = next(index.doc_ids[i] for i in wanted if i not in found)
        raise ReuseError(missing, f"get_texts returned no text for it "
                                  f"({len(wanted) - len(found)} of {len(wanted)} missing)")
    return found


def _pair_rows(index: CandidateIndex, run_id: str, params: ReuseParams, i: int, text_i: str, j: int, text_j: str,
               stats: ReuseStats, tokenizer: Tokenizer) -> Iterator[dict]:
    alignment = aligned_pair(text_i, text_j, params, stats, tokenizer)
    if alignment is None:
        return
    similarity = alignment.similarity
    for doc_i in [index.doc_ids[i], *index.twins.get(i, ())]:
        for doc_j in [index.doc_ids[j], *index.twins.get(j, ())]:
            rows = reuse_rows(run_id, doc_i, text_i, doc_j, text_j, alignment.passages, similarity)
            stats.rows += len(rows)
            yield from rows
