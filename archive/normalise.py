"""Text normalisation: line endings, Unicode NFC, compatibility ligatures, spacing, line-break hyphens."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# Characters dropped from the text: those that carry no text (zero-width marks,
# BOMs left inside the text, soft hyphens: a typesetter's hint, not part of the
# word), and C0/C1 controls other than tab and newline (scanning and transfer
# debris; form feeds are made paragraph breaks before).
_DROPPED = "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00-\x08\x0b-\x1f\x7f-\x9f"
# Whitespace other than the space and the newline, and not dropped (what
# str.split() splits on besides those: tabs, NBSP, the typographic spaces,
# line and paragraph separators): each becomes a space.
_SPACES = "\t\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# One character at a time: CPython's engine scans for a class faster than for a run of it.
_DROPPED_OR_SPACE = re.compile(f"[{_DROPPED}{_SPACES}]")
_SPACE = re.compile(f"[{_SPACES}]")
_SPACE_RUN = re.compile("  +")
_MANY_BLANK_LINES = re.compile(r"\n\n\n+")  # (faster than \n{3,} in CPython's engine)
# The Latin compatibility ligatures of Unicode's Alphabetic Presentation Forms (U+FB00-FB06): a typesetter's glyph
# for two or three letters, which PDFs' text layers keep ("De\ufb01nition"), so a search for the letters misses them.
# Folded as NFKC folds them, and only them: NFKC would also change superscripts, fractions and full-width forms.
LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st"}
_LIGATURE = re.compile("[\ufb00-\ufb06]")


def normalise_text(text: str) -> str:
    """The canonical form of a document's text.

    Idempotent: normalise_text(normalise_text(t)) == normalise_text(t). Paragraph
    breaks (blank lines) survive; spacing inside lines does not.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    debris, unstable = _scan(text)
    text = nfc(text, unstable)
    if not text.isascii() and _LIGATURE.search(text):
        text = text.translate(LIGATURES)
    text = text.replace("\f", "\n\n")  # page breaks become paragraph breaks
    # Within each line, any run of whitespace (tabs, NBSP...) becomes one space and lines are trimmed,
    # as "\n".join(" ".join(line.split()) for line in text.split("\n")) would once the dropped characters are
    # out, without a Python step for each line.
    if debris:
        text = _DROPPED_OR_SPACE.sub(_space_or_nothing, text)
    if "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = _dehyphenate(text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


# Below this code point each character's kind is looked up in a table (_scan);
# from it up, every character counts as both kinds.
KINDS_TABLE_LIMIT = 0x3000
UNSTABLE = 1  # NFC may change it or join it to the character before it
DEBRIS = 2  # dropped, or whitespace made a space (_DROPPED, _SPACES)


@cache
def _kinds_table():
    """The kinds (UNSTABLE | DEBRIS bits) of each code point below KINDS_TABLE_LIMIT, and a last entry for the
    rest: a numpy uint8 array.

    The characters that are not UNSTABLE (Latin, Greek, Cyrillic, Hebrew,
    Arabic, the Indic scripts, punctuation) are starters (combining class 0),
    their own NFC and never the second of a composition: the stable code points
    of Unicode's Annex 15, before any of which a text can be cut and each piece
    normalised alone. Read off this Python's unicodedata once a process (about
    15 ms), so that a newer Unicode cannot leave a new combining mark among
    them. Hangul jamo compose by rule, not by the decomposition table: all
    UNSTABLE.
    """
    import numpy as np

    seconds = set()  # characters a canonical pair ends with: they join the character before them
    for code in range(KINDS_TABLE_LIMIT):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(int(parts[1], 16))
    kinds = []
    for code in range(KINDS_TABLE_LIMIT):
        char = chr(code)
        unstable = (unicodedata.combining(char) != 0 or code in seconds or 0x1100 <= code <= 0x11FF
                    or unicodedata.normalize("NFC", char) != char)
        kinds.append(UNSTABLE * unstable | DEBRIS * bool(_DROPPED_OR_SPACE.match(char)))
    return np.array(kinds + [UNSTABLE | DEBRIS], dtype=np.uint8)


# Characters looked up at once by _scan: its arrays are a few times this many bytes, whatever the text's length.
SCAN_CHARS = 1 << 20


def _scan(text: str) -> tuple[bool, list[tuple[int, int]]]:
    """(whether text has a DEBRIS character, the runs of UNSTABLE characters as (start, end) offsets), from the
    kind of each character (see _kinds_table): a numpy lookup a slice of SCAN_CHARS characters at a time."""
    import numpy as np

    table = _kinds_table()
    debris = False
    runs: list[tuple[int, int]] = []
    for offset in range(0, len(text), SCAN_CHARS):
        piece = text[offset:offset + SCAN_CHARS]
        if piece.isascii():
            codes = np.frombuffer(piece.encode("ascii"), dtype=np.uint8)
        else:
            # (a lone surrogate, which a PDF's text may hold, is its own code point: from the limit up)
            codes = np.frombuffer(piece.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        kinds = table.take(codes, mode="clip")
        debris = debris or bool((kinds & DEBRIS).any())
        marked = np.flatnonzero(kinds & UNSTABLE)
        if not len(marked):
            continue
        gaps = np.flatnonzero(np.diff(marked) != 1)  # a run ends where the next marked character is not adjacent
        starts = (marked[np.r_[0, gaps + 1]] + offset).tolist()
        ends = (marked[np.r_[gaps, len(marked) - 1]] + offset + 1).tolist()
        if runs and runs[-1][1] == starts[0]:  # a run the slice's edge cut in two
            starts[0] = runs.pop()[0]
        runs.extend(zip(starts, ends))
    return debris, runs


def nfc(text: str, unstable: list[tuple[int, int]] | None = None) -> str:
    """unicodedata.normalize("NFC", text), normalising only the pieces that need it (unstable: the runs of
    UNSTABLE characters, as _scan(text) gives them, if already found).

    CPython's normalize() looks every character up in its tables before it
    knows there is nothing to do, decomposed accents or not. Here the UNSTABLE
    characters (combining marks, singletons, CJK...)
    are found by numpy lookups; each run of them is normalised with the
    character before it, where a mark may compose with its letter.
    """
    if text.isascii():
        return text
    if unstable is None:
        unstable = _scan(text)[1]
    if not unstable:
        return text
    pieces = []
    done = 0
    for start, end in unstable:
        start = max(start - 1, done)  # (the character before a run is stable: the run's piece starts there)
        pieces.append(text[done:start])
        pieces.append(unicodedata.normalize("NFC", text[start:end]))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def ligature_count(text: str) -> int:
    """How many compatibility ligatures normalise_text folds in text."""
    return 0 if text.isascii() else len(_LIGATURE.findall(text))


def _space_or_nothing(char: re.Match) -> str:
    return " " if _SPACE.match(char.group()) else ""


def _dehyphenate(text: str) -> str:
    """Join words split by a line-break hyphen, keeping real hyphenated words.

    The document is its own dictionary: if it also spells the word with the
    hyphen elsewhere ("well-known"), the hyphen is kept; otherwise a split
    into a lower-case continuation is joined ("Azer-\\nbaijan" -> "Azerbaijan").
    """
    if "-\n" not in text:
        return text
    lowered = compounds = None  # the text's hyphenated words, and the text in lower case: made on first need
    parts = text.split("-\n")
    pieces = [parts[0]]
    for right in parts[1:]:
        left = pieces[-1]  # the text since the previous break: the broken word's head ends it
        i = len(left)
        while i > 0 and left[i - 1].isalpha():
            i -= 1
        j = 0
        while j < len(right) and right[j].isalpha():
            j += 1
        head, tail = left[i:], right[:j]
        if not head or not tail:
            glue = "-\n"  # not a word broken across lines
        elif tail[0].isupper():
            glue = "-"  # a compound of names: Soviet-Armenian
        else:
            if compounds is None:
                compounds = _hyphenated_words(text)
            compound = f"{head}-{tail}".lower()
            if compound.replace("-", "").isalpha():
                spelled = compound in compounds
            else:  # (lower() made a letter into a letter and a mark: the search of the whole text)
                lowered = text.lower() if lowered is None else lowered
                spelled = _spells(lowered, compound)
            if spelled:
                lowered = text.lower() if lowered is None else lowered
                spelled = not _spells(lowered, f"{head}{tail}".lower())
            glue = "-" if spelled else ""
        pieces.append(glue)
        pieces.append(right)
    return "".join(pieces)


def _hyphenated_words(text: str) -> set[str]:
    """Every word of two parts joined by a hyphen on one line, in lower case ("well-known"; not "of-the" in
    "state-of-the-art").

    One pass over the text's hyphens, instead of a search of the whole text for
    each break; only the words are put in lower case, not the text.
    """
    found = set()
    end = len(text)
    at = text.find("-")
    while at >= 0:
        j = at + 1
        while j < end and text[j].isalpha():
            j += 1
        if j > at + 1 and (j == end or text[j] != "-"):
            i = at
            while i > 0 and text[i - 1].isalpha():
                i -= 1
            if i < at and (i == 0 or text[i - 1] != "-"):
                found.add(text[i:j].lower())
        at = text.find("-", at + 1)
    return found


def _spells(lowered: str, word: str) -> bool:
    """Whether the text has word as a whole word on one line (not inside a longer word)."""
    start = lowered.find(word)
    while start >= 0:
        end = start + len(word)
        before = lowered[start - 1] if start else " "
        after = lowered[end] if end < len(lowered) else " "
        if not (before.isalpha() or before == "-") and not (after.isalpha() or after == "-"):
            return True
        start = lowered.find(word, start + 1)
    return False
