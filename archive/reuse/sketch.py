"""The band hashes of a text: MinHash sketches of its word windows, cut into LSH bands under a named scheme."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from .params import ReuseError, ReuseParams

# Words for the sketches: letters and digits, joined across hyphens and apostrophes,
# lower-cased, so that case and punctuation edits do not hide a reused passage.
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")

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
    # datasketch pulls in scipy, slow to import: loaded only when reuse is searched.
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    sketch = MinHash(num_perm=params.num_perm, seed=params.seed, hashfunc=_identity)
    if sketch.scheme != "affine32":
        raise ReuseError("-", f"datasketch MinHash uses scheme {sketch.scheme!r}; "
                              "the band hashes are defined for affine32")
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


# Characters of a text whose words are made at once while it is sketched; windows whose band hashes are computed
# at once. Memory while sketching: these, and a few bytes for each word of the text (see document_bands).
SKETCH_CHARS = 1 << 20
WINDOWS_AT_ONCE = 4096
# How far back from max_text_chars a long text's cut looks for whitespace (searched_text).
CUT_LOOKBACK = 4096
_WHITESPACE = re.compile(r"\s")


def _sketch_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def searched_text(text: str, params: ReuseParams = ReuseParams()) -> str:
    """What reuse is looked for in: the whole text, or for a text of more than params.max_text_chars characters
    its first max_text_chars, cut at the last whitespace within CUT_LOOKBACK characters of that point, so that no
    word or token is cut (a text without any there is cut at max_text_chars). Offsets in it are the text's own.

    Only the first max_text_chars + 1 characters of text are read: given those, the answer is the same."""
    limit = params.max_text_chars
    if len(text) <= limit:
        return text
    for at in range(limit, max(limit - CUT_LOOKBACK, 0) - 1, -1):
        if text[at].isspace():
            return text[:at]
    return text[:limit]


def document_bands(text: str, params: ReuseParams = ReuseParams()) -> DocumentBands | None:
    """The band hashes of a text's windows (of its searched_text), or None when it has fewer words than a shingle.

    Windows as CandidateIndex has always cut them: indexed windows of
    window_words words every window_words words, query windows every
    query_stride words, each set ending with one flush with the text's end;
    here every indexed window is also a query window. A window's sketch is
    exactly datasketch's MinHash.update_batch over its shingles (sha1_hash32
    of five lower-cased words).

    Memory: the words of SKETCH_CHARS characters at a time, 4 bytes a word
    for its shingle's hash, the permuted hashes of WINDOWS_AT_ONCE windows at
    a time, and the band hashes (bands / query_stride a word, with their
    flags and the arrays that make them distinct): a few tens of bytes a word
    of the searched text, whatever the text's length.
    """
    return _bands_of_shingles(*shingle_hashes(searched_text(text, params), params.shingle_words), params)


def shingle_hashes(text: str, k: int) -> tuple[int, np.ndarray]:
    """(the number of words of text, the sha1_hash32 of each shingle of k words: a uint32 array), the words
    made SKETCH_CHARS characters at a time."""
    hashes = []
    carry: list[str] = []  # the words of the pieces before whose shingles need words of the next
    words = 0
    for piece in _pieces(text, SKETCH_CHARS):
        found = carry + _sketch_words(piece)
        words += len(found) - len(carry)
        count = len(found) - k + 1
        if count > 0:
            # datasketch's sha1_hash32: the first 4 bytes of the SHA-1, little-endian (made here in one list, read
            # as one array: no Python int a shingle).
            sha1 = hashlib.sha1
            digests = b"".join([sha1(" ".join(found[i:i + k]).encode("utf-8")).digest()[:4] for i in range(count)])
            hashes.append(np.frombuffer(digests, dtype="<u4").astype(np.uint32))
            carry = found[count:]
        else:
            carry = found
    return words, np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint32)


def _pieces(text: str, size: int):
    """text in consecutive pieces of about size characters, each but the last ending before whitespace (which no
    word holds: the words of the pieces are the text's)."""
    start = 0
    while len(text) - start > size:
        cut = _WHITESPACE.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.start()]
        start = cut.start()
    yield text[start:]


def _bands_of_shingles(words: int, shingles: np.ndarray, params: ReuseParams) -> DocumentBands | None:
    k = params.shingle_words
    if words < k:
        return None
    scheme = band_scheme(params)
    count = len(shingles)
    index_starts = _window_starts(words, params.window_words, params.window_words)
    starts = sorted(set(index_starts) | set(_window_starts(words, params.window_words, params.query_stride)))
    span = params.window_words - k + 1
    if count <= span:  # one window: the whole text
        hashes = _band_hashes((_fmix32(shingles)[:, None] * scheme.a + scheme.b).min(axis=0, keepdims=True), scheme)
    else:
        found = []
        at = np.array(starts, dtype=np.int64)
        for first in range(0, len(at), WINDOWS_AT_ONCE):
            chunk = at[first:first + WINDOWS_AT_ONCE]
            low, high = int(chunk[0]), int(chunk[-1]) + span
            # uint32 arithmetic wraps, as datasketch's does
            permuted = _fmix32(shingles[low:high])[:, None] * scheme.a + scheme.b
            windows = np.lib.stride_tricks.sliding_window_view(permuted, span, axis=0)  # (windows, num_perm, span)
            found.append(_band_hashes(windows[chunk - low].min(axis=2), scheme))
        hashes = np.concatenate(found)
    bands = scheme.bands
    indexed_set = set(index_starts)
    flags = np.repeat(np.array([start in indexed_set for start in starts]), bands)
    unique, inverse = np.unique(hashes, return_inverse=True)
    indexed = np.zeros(len(unique), dtype=bool)
    np.logical_or.at(indexed, inverse, flags)
    band_of = np.empty(len(unique), dtype=np.int16)
    band_of[inverse] = np.tile(np.arange(bands, dtype=np.int16), len(starts))
    return DocumentBands(unique.astype(np.int64), band_of, indexed, len(index_starts), len(starts))


def _band_hashes(sketches: np.ndarray, scheme: BandScheme) -> np.ndarray:
    """The band hashes of windows' sketches (windows x num_perm), window by window, band by band: int64."""
    bands, rows = scheme.bands, scheme.rows
    raw = np.ascontiguousarray(sketches[:, :bands * rows], dtype="<u4").tobytes()
    size = 4 * rows
    started = _band_starts(bands)  # (a copy of a hash fed the band number: 2.5 times faster than a new one)
    digests = []
    for offset in range(len(sketches) * bands):
        digest = started[offset % bands].copy()
        digest.update(raw[offset * size:(offset + 1) * size])
        digests.append(digest.digest())
    return np.frombuffer(b"".join(digests), dtype="<i8")


@functools.cache
def _band_starts(bands: int) -> tuple:
    """For each band, blake2b (8 bytes, person _BAND_PERSON) fed its number (2 bytes, little-endian)."""
    return tuple(hashlib.blake2b(band.to_bytes(2, "little"), digest_size=8, person=_BAND_PERSON)
                 for band in range(bands))


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
