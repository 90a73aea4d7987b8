"""Plain text: find the character encoding and decode, refusing bytes that are not text."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

import charset_normalizer

from ..identify import BOMS, Format
from . import Extracted, ExtractionError

if TYPE_CHECKING:
    from .budget import Meter

# Codecs charset-normalizer may propose for Western text that real files in
# these archives almost never use; Windows-1252 reads the same bytes and is
# what a "Latin-1" label means on the web (WHATWG Encoding Standard).
_AS_CP1252 = {"latin_1", "iso8859_1", "iso8859_15", "cp1250", "cp1254", "cp1257", "mac_roman", "mac_latin2"}
# Control characters that have no business in text (tab, newlines, form feeds excepted).
_STRAY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


@cache
def _version() -> str:
    return charset_normalizer.__version__


def decode_text(data: bytes) -> tuple[str, str, list[str]]:
    """(text, encoding, notes) for text bytes; ExtractionError when they are not text.

    Order: a byte-order mark decides; then strict UTF-8 (most files, and the
    only choice when it succeeds); then charset-normalizer's best guess.
    """
    notes: list[str] = []
    for bom, codec in BOMS:
        if data.startswith(bom):
            try:
                return str(memoryview(data)[len(bom):], codec), codec, notes  # (no copy of the bytes after the mark)
            except UnicodeDecodeError as exc:
                raise ExtractionError(
                    "corrupt",
                    f"starts with a {codec} byte-order mark but byte {exc.start + len(bom)} is not valid {codec}"
                ) from None
    if _looks_utf16(data):
        codec = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
        try:
            return data.decode(codec), codec, ["no byte-order mark; NUL pattern says " + codec]
        except UnicodeDecodeError as exc:
            raise ExtractionError("corrupt", f"looks like {codec} without a byte-order mark, but byte {exc.start} "
                                             f"is not valid {codec}") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ExtractionError(
            "corrupt", f"text contains {data.count(0)} NUL byte(s), first at byte {nul}: a transfer or scanning fault"
        )
    try:
        return data.decode("utf-8"), "utf-8", notes
    except UnicodeDecodeError as exc:
        # (the position, not the exception: kept in this frame, the exception would hold the frame and, through its
        # callers' frames, the whole batch in a reference cycle until Python's cycle collector came by)
        utf8_error_at = exc.start
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise ExtractionError(
            "no-text",
            f"not decodable as text: invalid UTF-8 at byte {utf8_error_at} and no other encoding fits",
        )
    encoding = best.encoding
    if encoding != "cp1252":
        # Western archives are mostly Windows-1252; the detector's other
        # single-byte guesses (cp850, cp1250...) read its curly quotes as
        # accented letters. Take cp1252 unless it reads the bytes worse.
        alternative = charset_normalizer.from_bytes(data, cp_isolation=["cp1252"]).best()
        if alternative is not None and (encoding in _AS_CP1252 or alternative.chaos <= best.chaos):
            notes.append(f"detector proposed {encoding}; read as cp1252, which decodes the bytes as well or better")
            return str(alternative), "cp1252", notes
        if encoding in _AS_CP1252:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                pass
            else:
                notes.append(f"detector proposed {encoding}; read as cp1252, which decodes the same bytes")
                return text, "cp1252", notes
    return str(best), encoding, notes


# The stray controls below U+0080, as the bytes that are those characters in UTF-8.
_STRAY_CONTROL_BYTES = bytes(code for code in range(0x80) if _STRAY_CONTROLS.match(chr(code)))


# Characters of a text counted at once by stray_controls (its copies are a few times this many bytes).
CONTROLS_CHARS = 1 << 22


def stray_controls(text: str) -> int:
    """How many characters of text _STRAY_CONTROLS finds, CONTROLS_CHARS characters at a time."""
    return sum(_stray_controls(text[start:start + CONTROLS_CHARS]) for start in range(0, len(text), CONTROLS_CHARS))


def _stray_controls(text: str) -> int:
    """Counted in its UTF-8 bytes by a deletion, where no C1 control can be (no byte 0xC2, which starts every
    character from U+0080 to U+00BF), faster than the pattern; by the pattern otherwise."""
    data = text.encode("utf-8", "surrogatepass")
    if b"\xc2" in data:
        return sum(1 for _ in _STRAY_CONTROLS.finditer(text))
    return len(data) - len(data.translate(None, _STRAY_CONTROL_BYTES))


def _looks_utf16(data: bytes) -> bool:
    head = data[:4096]
    return len(head) >= 4 and max(head[0::2].count(0), head[1::2].count(0)) > 0.4 * (len(head) // 2)


def extract(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    # Decoding gives at most a character a byte: within any output budget; extract() checks the time after.
    text, encoding, notes = decode_text(data)
    controls = stray_controls(text)
    if controls > max(2, len(text) // 100):
        raise ExtractionError(
            "no-text",
            f"decoded as {encoding} but {controls} of {len(text)} characters are control characters: binary, not text"
        )
    return Extracted(text=text, extractor="charset-normalizer", extractor_version=_version(), encoding=encoding,
                     notes=notes)
