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
BANDS_VERSION = "lsh2"
_PERSON = b"archive-lsh2"  # blake2b personalisation of the scheme's tables and seeds

@dataclass(frozen=True, eq=False)
class BandScheme:
    """How a window becomes LSH band hashes: datasketch's MinHash (affine32
    permutations from params.seed) over the 32-bit hashes of the window's
    shingles (shingle_hashes), cut into the bands x rows that datasketch's
    MinHashLSH chooses for params.threshold and params.num_perm, each band's
    values mixed with its band number into an int64 (_band_hashes). name says
    all of it, so that hashes made under other parameters (or other
    permutations, or another hashing: BANDS_VERSION) are never compared with
    these."""

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


# Characters of a text whose words are made and hashed at once while it is sketched (some 40 bytes a byte of their
# UTF-8 while hashed); windows whose band hashes are computed at once. Memory while sketching: these, and a few
# bytes for each word of the text (see document_bands).
SKETCH_CHARS = 1 << 18
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
    exactly datasketch's MinHash.update_batch over its shingles' hashes
    (shingle_hashes: of five lower-cased words).

    Memory: the words of SKETCH_CHARS characters at a time (and some 40
    bytes a byte of them while they are hashed), 4 bytes a word for its
    shingle's hash, the permuted hashes of WINDOWS_AT_ONCE windows at a time,
    and the band hashes (bands / query_stride a word, with their flags and
    the arrays that make them distinct): a few tens of bytes a word of the
    searched text, whatever the text's length.
    """
    return _bands_of_shingles(*shingle_hashes(searched_text(text, params), params.shingle_words), params)


def shingle_hashes(text: str, k: int) -> tuple[int, np.ndarray]:
    """(the number of words of text, the 32-bit hash of each shingle of k words: a uint32 array), the words
    made SKETCH_CHARS characters at a time. A shingle's hash is the top half of fmix64 of its words' hashes
    (_word_hashes) combined in order (each step: times an odd constant, plus the next word's), all in numpy."""
    hashes = []
    carry = np.empty(0, dtype=np.uint64)  # the word hashes of the pieces before whose shingles need words of the next
    words = 0
    for piece in _pieces(text, SKETCH_CHARS):
        found = np.concatenate([carry, _word_hashes(_WORD.findall(piece))])
        words += len(found) - len(carry)
        count = len(found) - k + 1
        if count > 0:
            combined = found[:count].copy()
            for offset in range(1, k):
                combined *= _SHINGLE_STEP
                combined += found[offset:offset + count]
            hashes.append((_fmix64(combined) >> np.uint64(32)).astype(np.uint32))
            carry = found[count:]
        else:
            carry = found
    return words, np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint32)


# uint64 arithmetic wraps (modulo 2 ** 64): odd multipliers are bijections.
_SHINGLE_STEP = np.uint64(0x9E3779B97F4A7C15)
_LENGTH_STEP = np.uint64(0xBF58476D1CE4E5B9)
# A word's hash: simple tabulation over its UTF-8 bytes, one random 64-bit value for each (position in the word
# modulo _POSITIONS, byte value), XORed; _SEPARATOR (in no word) between the words of a piece.
_POSITIONS = 64
_SEPARATOR = 10  # "\n"


def _word_hashes(words: list[str]) -> np.ndarray:
    """A 64-bit hash of each word, lower-cased (uint64): the XOR of _byte_table()[position % _POSITIONS, byte] over
    its UTF-8 bytes, with its length in bytes times _LENGTH_STEP. The words are lower-cased and encoded as one
    string (str.lower maps each word as it would alone: a word ends at the separator) and hashed in numpy."""
    if not words:
        return np.empty(0, dtype=np.uint64)
    data = np.frombuffer("\n".join(words).lower().encode("utf-8", "surrogatepass"), dtype=np.uint8)
    separators = data == _SEPARATOR
    starts = np.empty(len(words), dtype=np.intp)
    starts[0] = 0
    starts[1:] = np.flatnonzero(separators) + 1
    word_of = np.cumsum(separators) - separators  # (a separator counts with the word before it)
    values = _byte_table()[(np.arange(len(data)) - starts[word_of]) % _POSITIONS, data]
    values[separators] = 0
    lengths = np.diff(np.append(starts, len(data) + 1)) - 1
    return np.bitwise_xor.reduceat(values, starts) ^ (lengths.astype(np.uint64) * _LENGTH_STEP)


@functools.cache
def _byte_table() -> np.ndarray:
    """The tabulation of _word_hashes: _POSITIONS x 256 uint64, from blake2b (person _PERSON) of their row
    numbers: the same on every machine, whatever numpy's random generators do."""
    raw = b"".join(hashlib.blake2b(block.to_bytes(2, "little"), digest_size=64, person=_PERSON).digest()
                   for block in range(_POSITIONS * 256 // 8))
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(_POSITIONS, 256)


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: every bit of the result depends on every bit of the value."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


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
    index_starts = _window_starts(words, params.window_words, params.window_words)
    starts = np.union1d(index_starts, _window_starts(words, params.window_words, params.query_stride))
    span = params.window_words - k + 1
    if len(shingles) <= span:  # one window: the whole text
        hashes = _band_hashes((_fmix32(shingles)[:, None] * scheme.a + scheme.b).min(axis=0, keepdims=True), scheme)
    else:
        hashes = np.concatenate([_band_hashes(sketches, scheme)
                                 for sketches in _window_sketches(shingles, starts, span, params.query_stride, scheme)])
    bands = scheme.bands
    flags = np.repeat(np.isin(starts, index_starts), bands)
    unique, inverse = np.unique(hashes, return_inverse=True)
    indexed = np.zeros(len(unique), dtype=bool)
    indexed[inverse[flags]] = True
    band_of = np.empty(len(unique), dtype=np.int16)
    band_of[inverse] = np.tile(np.arange(bands, dtype=np.int16), len(starts))
    return DocumentBands(unique.astype(np.int64), band_of, indexed, len(index_starts), len(starts))


def _window_sketches(shingles: np.ndarray, starts: np.ndarray, span: int, stride: int, scheme: BandScheme):
    """The MinHash sketch (num_perm minima of the permuted shingle hashes) of each window of span shingles at
    starts, WINDOWS_AT_ONCE windows at a time. A window starting at a multiple of stride is the minimum of the
    minima of the stride-shingle blocks it covers and of the shingles after its last whole block; the others
    (the window flush with the text's end) are taken whole."""
    for first in range(0, len(starts), WINDOWS_AT_ONCE):
        chunk = starts[first:first + WINDOWS_AT_ONCE]
        low, high = int(chunk[0]), int(chunk[-1]) + span
        # uint32 arithmetic wraps, as datasketch's does
        permuted = _fmix32(shingles[low:high])[:, None] * scheme.a + scheme.b
        at = chunk - low
        sketches = np.empty((len(chunk), len(scheme.a)), dtype=np.uint32)
        aligned = (chunk % stride == 0) & (low % stride == 0)
        whole, rest = divmod(span, stride)
        if aligned.any() and whole:
            blocks = len(permuted) // stride
            block_min = permuted[:blocks * stride].reshape(blocks, stride, -1).min(axis=1)
            first_block = at[aligned] // stride
            found = block_min[first_block]
            for step in range(1, whole):
                np.minimum(found, block_min[first_block + step], out=found)
            for extra in range(rest):
                np.minimum(found, permuted[at[aligned] + whole * stride + extra], out=found)
            sketches[aligned] = found
        others = ~aligned if whole else np.ones(len(chunk), dtype=bool)
        if others.any():
            windows = np.lib.stride_tricks.sliding_window_view(permuted, span, axis=0)  # (windows, num_perm, span)
            sketches[others] = windows[at[others]].min(axis=2)
        yield sketches


def _band_hashes(sketches: np.ndarray, scheme: BandScheme) -> np.ndarray:
    """The band hashes of windows' sketches (windows x num_perm), window by window, band by band: int64. A band's
    hash starts from its band's seed (_band_seeds) and takes in its rows' values one at a time, each XORed in and
    mixed by _fmix64, in numpy."""
    bands, rows = scheme.bands, scheme.rows
    values = np.ascontiguousarray(sketches[:, :bands * rows], dtype=np.uint32).reshape(len(sketches), bands, rows)
    hashes = np.repeat(_band_seeds(bands)[None, :], len(sketches), axis=0)
    for row in range(rows):
        hashes = _fmix64(hashes ^ values[:, :, row].astype(np.uint64))
    return hashes.reshape(-1).view(np.int64)


@functools.cache
def _band_seeds(bands: int) -> np.ndarray:
    """For each band, blake2b (8 bytes, person _PERSON) of its number (2 bytes, little-endian), as a uint64."""
    raw = b"".join(hashlib.blake2b(band.to_bytes(2, "little"), digest_size=8, person=_PERSON).digest()
                   for band in range(bands))
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


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
