"""Text reuse between documents: candidate pairs by MinHash LSH over word windows, then the exact passages they share."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import TerminalError
from ..timing import StageTimer

# Words for the sketches: letters and digits, joined across hyphens and apostrophes,
# lower-cased, so that case and punctuation edits do not hide a reused passage.
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
# Words for the alignment: whitespace-separated tokens compared exactly, so a
# passage is the same on both sides except for the whitespace between tokens.
_TOKEN = re.compile(r"\S+")
# A seed (min_words tokens) occurring more often than this in one document is
# repetition (tables, refrains), not reuse; skipping it keeps alignment linear.
MAX_SEED_OCCURRENCES = 64


class ReuseError(TerminalError):
    """A document's text cannot be used for reuse detection; names the doc_id and the reason."""

    def __init__(self, doc_id: str, reason: str):
        super().__init__(f"{doc_id}: {reason}")
        self._init_args = (doc_id, reason)
        self.doc_id = doc_id
        self.reason = reason


@dataclass(frozen=True)
class ReuseParams:
    """How reuse is looked for. The defaults suit news, letters and reports of a
    few hundred to a few thousand words, where reuse is a copied paragraph or
    more, often lightly edited.

    shingle_words: words per shingle in the window sketches (5). Words here are
        lower-cased word characters, so case and punctuation edits do not hide
        a copy; shorter shingles tolerate denser edits and match more
        commonplace phrases.
    window_words: words per window (25). Each document is indexed as
        non-overlapping windows of this size, plus one flush with its end. A
        passage of 2 * window_words - 1 words or more covers a whole indexed
        window and is found with high probability (in trials on 2,000
        synthetic documents: all of some 400 planted passages of 50-100 words,
        about 97% of those of 30-49 words). A shorter passage is reported when something else makes its
        pair a candidate: every passage of a candidate pair is reported.
    query_stride: words between the starts of the overlapping query windows
        (5), so that some query window of one document lies within
        query_stride / 2 words of any indexed window of the other it shares.
        The band hashes kept (reuse_bands) number about bands / query_stride
        per word: 1.7 with the defaults.
    num_perm: MinHash permutations per window (32).
    threshold: the Jaccard similarity of two windows' shingle sets that
        MinHashLSH is tuned for (0.5); datasketch chooses bands and rows from
        it and num_perm (8 bands of 4 for the defaults).
    min_words: the shortest passage reported, in whitespace-separated tokens (10).
    min_similarity: the lowest pair similarity reported (0.0: every pair that
        shares a passage of min_words). See Alignment.similarity.
    seed: the MinHash permutation seed (1). Results are deterministic for a
        given seed, whatever the order documents come in.
    max_bucket_texts: a band hash shared by more distinct texts than this (50)
        is commonplace wording (a masthead, a legal formula, a template) and
        makes no candidate pairs: without the cap, a phrase in every document
        would make every pair a candidate, n * n alignments. Reuse between two
        documents still counts through their other, rarer windows.

    All but min_words, min_similarity and max_bucket_texts shape the band hashes; band_scheme()
    names them, and hashes of different schemes are never compared.
    """

    shingle_words: int = 5
    window_words: int = 25
    query_stride: int = 5
    num_perm: int = 32
    threshold: float = 0.5
    min_words: int = 10
    min_similarity: float = 0.0
    seed: int = 1
    max_bucket_texts: int = 50

    def __post_init__(self):
        if self.shingle_words < 1:
            raise ValueError(f"shingle_words must be at least 1, not {self.shingle_words}")
        if self.window_words < self.shingle_words:
            raise ValueError(f"window_words ({self.window_words}) must be at least shingle_words ({self.shingle_words})")
        if not 1 <= self.query_stride <= self.window_words:
            raise ValueError(f"query_stride must be between 1 and window_words ({self.window_words}), not {self.query_stride}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be at least 2, not {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.min_words < 1:
            raise ValueError(f"min_words must be at least 1, not {self.min_words}")
        if not 0.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [0, 1], not {self.min_similarity}")
        if self.max_bucket_texts < 2:
            raise ValueError(f"max_bucket_texts must be at least 2, not {self.max_bucket_texts}")


STAGES = ("signatures", "lsh", "fetch", "align")


@dataclass
class ReuseStats:
    """What a reuse search did: counts and seconds per stage."""

    documents: int = 0
    identical_texts: int = 0  # documents whose text equals an earlier one's (reported as duplicates elsewhere)
    too_short: int = 0  # fewer words than a shingle: nothing to compare
    windows_indexed: int = 0
    windows_queried: int = 0
    candidate_pairs: int = 0  # distinct texts aligned: the pairs actually compared
    pairs_with_reuse: int = 0
    passages: int = 0  # distinct passages between distinct texts
    rows: int = 0  # passages times the documents that carry each text
    texts_fetched: int = 0
    fetches: int = 0  # calls to get_texts
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


# -- exact passages ----------------------------------------------------------


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


# -- band hashes -------------------------------------------------------------

# Recorded in manifests with the parameters that shape the bands (see band_scheme):
# band hashes are only ever compared with hashes of the same scheme.
BANDS_VERSION = "lsh1"
_BAND_PERSON = b"archive-lsh1"  # blake2b personalisation: these hashes mean nothing elsewhere

@dataclass(frozen=True, eq=False)
class BandScheme:
    """How a window becomes LSH band hashes: datasketch's MinHash (affine32
    permutations from params.seed) over the window's shingles, cut into the
    bands x rows that datasketch's MinHashLSH chooses for params.threshold and
    params.num_perm, each band hashed with blake2b (8 bytes, little-endian
    signed: an int64). name says all of it, so that hashes made under other
    parameters (or other permutations) are never compared with these."""

    params: ReuseParams
    bands: int
    rows: int
    a: np.ndarray  # the permutations, uint32
    b: np.ndarray
    name: str


@functools.cache
def band_scheme(params: ReuseParams = ReuseParams()) -> BandScheme:
    # datasketch pulls in scipy (most of a second): loaded only when reuse is searched.
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    sketch = MinHash(num_perm=params.num_perm, seed=params.seed, hashfunc=_identity)
    if sketch.scheme != "affine32":
        raise ReuseError("-", f"datasketch MinHash uses scheme {sketch.scheme!r}; the band hashes are defined for affine32")
    a, b = (np.ascontiguousarray(values, dtype=np.uint32) for values in sketch.permutations)
    permutations = hashlib.blake2b(a.tobytes() + b.tobytes(), digest_size=4).hexdigest()
    name = (f"{BANDS_VERSION}:shingle{params.shingle_words}:window{params.window_words}:stride{params.query_stride}"
            f":perm{params.num_perm}:bands{lsh.b}x{lsh.r}:seed{params.seed}:{permutations}")
    return BandScheme(params, lsh.b, lsh.r, a, b, name)


@dataclass(frozen=True)
class DocumentBands:
    """A text's band hashes: one entry per distinct hash, flagged when an
    indexed window (not only a query window) gives it."""

    hashes: np.ndarray  # int64
    bands: np.ndarray  # int16
    indexed: np.ndarray  # bool
    windows_indexed: int
    windows_queried: int

    def __len__(self) -> int:
        return len(self.hashes)


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer, as datasketch applies it before its affine32 permutations."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def _sketch_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def document_bands(text: str, params: ReuseParams = ReuseParams()) -> DocumentBands | None:
    """The band hashes of a text's windows, or None when it has fewer words than a shingle.

    Windows as CandidateIndex has always cut them: indexed windows of
    window_words words every window_words words, query windows every
    query_stride words, each set ending with one flush with the text's end;
    here every indexed window is also a query window. A window's sketch is
    exactly datasketch's MinHash.update_batch over its shingles (sha1_hash32
    of five lower-cased words), computed for all windows at once.
    """
    return _bands_of_words(_sketch_words(text), params)


def _bands_of_words(words: list[str], params: ReuseParams) -> DocumentBands | None:
    from datasketch.hashfunc import sha1_hash32

    k = params.shingle_words
    if len(words) < k:
        return None
    scheme = band_scheme(params)
    count = len(words) - k + 1
    shingles = np.fromiter((sha1_hash32(" ".join(words[i:i + k]).encode("utf-8")) for i in range(count)),
                           dtype=np.uint32, count=count)
    permuted = _fmix32(shingles)[:, None] * scheme.a + scheme.b  # uint32 arithmetic wraps, as datasketch's does
    index_starts = _window_starts(len(words), params.window_words, params.window_words)
    starts = sorted(set(index_starts) | set(_window_starts(len(words), params.window_words, params.query_stride)))
    span = params.window_words - k + 1
    if count <= span:  # one window: the whole text
        sketches = permuted.min(axis=0, keepdims=True)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(permuted, span, axis=0)  # (count - span + 1, num_perm, span)
        sketches = windows[starts].min(axis=2)
    bands, rows = scheme.bands, scheme.rows
    raw = np.ascontiguousarray(sketches[:, :bands * rows], dtype="<u4").tobytes()
    size = 4 * rows
    prefixes = [band.to_bytes(2, "little") for band in range(bands)]
    digests = b"".join(
        hashlib.blake2b(prefixes[offset % bands] + raw[offset * size:(offset + 1) * size], digest_size=8,
                        person=_BAND_PERSON).digest()
        for offset in range(len(starts) * bands))
    hashes = np.frombuffer(digests, dtype="<i8")
    indexed_set = set(index_starts)
    flags = np.repeat(np.array([start in indexed_set for start in starts]), bands)
    unique, inverse = np.unique(hashes, return_inverse=True)
    indexed = np.zeros(len(unique), dtype=bool)
    np.logical_or.at(indexed, inverse, flags)
    band_of = np.empty(len(unique), dtype=np.int16)
    band_of[inverse] = np.tile(np.arange(bands, dtype=np.int16), len(starts))
    return DocumentBands(unique.astype(np.int64), band_of, indexed, len(index_starts), len(starts))


def candidate_pairs(hashes: np.ndarray, keys: np.ndarray, indexed: np.ndarray,
                    max_bucket: int | None = None) -> np.ndarray:
    """Pairs of keys (an array of shape (n, 2), each row key_a < key_b, sorted,
    no repeats) whose band rows share a hash where at least one of the two
    rows is indexed: a query window of one text falls in the same LSH bucket
    as an indexed window of the other. The rule is symmetric, so the pairs do
    not depend on the order texts come in.

    Rows repeating a (hash, key) are merged. Memory: a few times the rows
    given; a bucket of n keys is expanded n at a time, so a hash shared by
    very many texts (boilerplate) costs time, as its pairs are many, but not
    n * n memory at once. With max_bucket, a hash shared by more keys than that
    makes no pairs (see ReuseParams.max_bucket_texts).
    """
    empty = np.empty((0, 2), dtype=np.int64)
    if len(hashes) < 2:
        return empty
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
    found = []
    two = group[useful & (size == 2)]
    found.append(np.stack([k[two], k[two + 1]], axis=1))  # keys are sorted within a bucket
    for start, n in zip(group[useful & (size > 2)].tolist(), size[useful & (size > 2)].tolist()):
        bucket, flags = k[start:start + n], x[start:start + n]
        for i in range(n - 1):
            partners = bucket[i + 1:] if flags[i] else bucket[i + 1:][flags[i + 1:]]
            if len(partners):
                found.append(np.stack([np.full(len(partners), bucket[i]), partners], axis=1))
    pairs = np.concatenate(found) if found else empty
    return np.unique(pairs, axis=0) if len(pairs) else empty


# -- candidate pairs ---------------------------------------------------------


def _window_starts(words: int, size: int, stride: int) -> list[int]:
    """Starts of windows of size words every stride words, the last one flush with the end."""
    if words <= size:
        return [0]
    starts = list(range(0, words - size + 1, stride))
    if starts[-1] != words - size:
        starts.append(words - size)
    return starts


def _identity(value: int) -> int:
    return value


class CandidateIndex:
    """Pass one, in memory: documents arrive one at a time and are cut into
    windows whose band hashes are kept (see document_bands); sorted_pairs()
    then groups them by hash (candidate_pairs). Of a text nothing else is kept
    but its sha256 (to recognise identical texts); time is linear in the words
    read, plus the candidates found.

    Memory: 11 bytes per distinct band hash of a document (about 1.7 per word
    with the defaults: 8 bands of the query windows every 5 words), so some
    20 KB per 1,000 words, a fifth of what datasketch's MinHashLSH held; for a
    whole archive, reuse_run groups the same rows on disk instead.
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
            words = _sketch_words(text)
            if len(words) < self.params.shingle_words:
                self.stats.too_short += 1
                return None
            digest = hashlib.sha256(text.encode("utf-8")).digest()
            first = self._by_digest.get(digest)
            if first is not None:
                self.twins.setdefault(first, []).append(doc_id)
                self.stats.identical_texts += 1
                return None
            bands = _bands_of_words(words, self.params)
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


# -- the search --------------------------------------------------------------

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
    for chunk in _chunks(pairs, texts_per_fetch):
        needed = {i for pair in chunk for i in pair}
        texts = {i: t for i, t in texts.items() if i in needed}
        texts.update(_fetch(index, get_texts, sorted(needed - texts.keys()), stats))
        for i, j in chunk:
            yield from _pair_rows(index, run_id, params, i, texts[i], j, texts[j], stats)


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
            if hashlib.sha256(text.encode("utf-8")).digest() != index.digests[i]:
                raise ReuseError(doc_id, "get_texts returned a text other than the one indexed")
            found[i] = text
    stats.fetches += 1
    stats.texts_fetched += len(found)
    if len(found) != len(wanted):
        missing = next(index.doc_ids[i] for i in wanted if i not in found)
        raise ReuseError(missing, f"get_texts returned no text for it ({len(wanted) - len(found)} of {len(wanted)} missing)")
    return found


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


def _pair_rows(index: CandidateIndex, run_id: str, params: ReuseParams, i: int, text_i: str, j: int, text_j: str,
               stats: ReuseStats) -> Iterator[dict]:
    alignment = aligned_pair(text_i, text_j, params, stats)
    if alignment is None:
        return
    similarity = alignment.similarity
    for doc_i in [index.doc_ids[i], *index.twins.get(i, ())]:
        for doc_j in [index.doc_ids[j], *index.twins.get(j, ())]:
            rows = reuse_rows(run_id, doc_i, text_i, doc_j, text_j, alignment.passages, similarity)
            stats.rows += len(rows)
            yield from rows


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
