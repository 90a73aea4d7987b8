"""Text normalisation (line endings, NFC, spacing, line-break hyphens) and descriptive metadata derived from the text."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
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
# One character at a time: CPython's engine scans for a class 2.5x as fast as for a run of it.
_DROPPED_OR_SPACE = re.compile(f"[{_DROPPED}{_SPACES}]")
_SPACE = re.compile(f"[{_SPACES}]")
_SPACE_RUN = re.compile("  +")
_MANY_BLANK_LINES = re.compile(r"\n\n\n+")  # (faster than \n{3,} in CPython's engine)
# A word is a whitespace-separated token with a letter or digit in it: tokens
# that are only punctuation (a dash standing alone) are not counted. In a
# normalised text the whitespace is single spaces and newlines; a pattern that
# starts with a plain character is searched for twice as fast as one that
# starts with \s, hence one pattern for each.
_PUNCTUATION_TOKEN_AFTER_SPACE = re.compile(r" [^\w\s]+(?=[ \n])")
_PUNCTUATION_TOKEN_AFTER_NEWLINE = re.compile(r"\n[^\w\s]+(?=[ \n])")


def normalise_text(text: str) -> str:
    """The canonical form of a document's text.

    Idempotent: normalise_text(normalise_text(t)) == normalise_text(t). Paragraph
    breaks (blank lines) survive; spacing inside lines does not.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kinds = _kinds(text)
    text = nfc(text, kinds)
    text = text.replace("\f", "\n\n")  # page breaks become paragraph breaks
    # Within each line, any run of whitespace (tabs, NBSP...) becomes one space and lines are trimmed,
    # as "\n".join(" ".join(line.split()) for line in text.split("\n")) would once the dropped characters are
    # out, without a Python step for each line (0.40 -> 0.10 ms a 13 KB text).
    if (kinds & DEBRIS).any():
        text = _DROPPED_OR_SPACE.sub(_space_or_nothing, text)
    if "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = _dehyphenate(text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


# Below this code point each character's kind is looked up in a table (_kinds);
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


def _kinds(text: str):
    """The kind of each character of text (see _kinds_table), one numpy lookup for all."""
    import numpy as np

    if text.isascii():
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        # (a lone surrogate, which a PDF's text may hold, is its own code point: from the limit up)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return _kinds_table().take(codes, mode="clip")


def nfc(text: str, kinds=None) -> str:
    """unicodedata.normalize("NFC", text), normalising only the pieces that need it (kinds: _kinds(text), if
    already made).

    CPython's normalize() looks every character up in its tables before it
    knows there is nothing to do (0.38 ms a 13 KB text, decomposed accents or
    not). Here the UNSTABLE characters (combining marks, singletons, CJK...)
    are found by one numpy lookup; each run of them is normalised with the
    character before it, where a mark may compose with its letter. A Latin
    text with some decomposed accents: 0.38 -> 0.10 ms.
    """
    if text.isascii():
        return text
    import numpy as np

    marked = np.flatnonzero((_kinds(text) if kinds is None else kinds) & UNSTABLE)
    if not len(marked):
        return text
    gaps = np.flatnonzero(np.diff(marked) != 1)  # a run ends where the next marked character is not adjacent
    starts = [int(marked[0]), *(marked[gaps + 1]).tolist()]
    ends = [*(marked[gaps] + 1).tolist(), int(marked[-1]) + 1]
    pieces = []
    done = 0
    for start, end in zip(starts, ends):
        start = max(start - 1, done)  # (the character before a run is stable: the run's piece starts there)
        pieces.append(text[done:start])
        pieces.append(unicodedata.normalize("NFC", text[start:end]))
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


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


_LEADING_DATE = re.compile(
    r"^\s*(?:(?:date|dated|published)\s*[:\-]?\s*)?(\d{4})-(\d{2})-(\d{2})(?![\d-])[\s,;:.\-]*", re.IGNORECASE
)
MAX_TITLE_CHARS = 200


@dataclass(frozen=True)
class Description:
    """Descriptive metadata read off a normalised text."""

    title: str | None
    date: str | None  # ISO 8601 calendar date stated at the start of the text
    language: str | None  # ISO 639-1 code, or None when too little text to tell
    char_count: int
    word_count: int
    notes: tuple[str, ...] = ()


def describe_text(text: str) -> Description:
    """Title, date, language and counts of a normalised text.

    The date is one the text states at its very start ("date 2021-01-20 ...",
    or a first line "2021-01-21"); a date-shaped string that is not a real date
    is reported in notes, never published. The title is the first line after
    any such date, when it is short enough to be a heading.
    """
    return _describe(text, detect_language(text))


def describe_texts(texts: Sequence[str]) -> list[Description]:
    """describe_text of each text, the same answers, in one loop over them.

    For an ingest, which normalises a few dozen documents and then describes
    them together: language identification walks tables of tens of megabytes
    with many small numpy steps, which run about three times as fast one text
    after another (the tables and numpy's code stay in the processor's caches)
    as between the reads, hashes, writes and Parquet of each file (measured in
    the library loop over 10,000 files: 0.28 ms a text between other work,
    0.10 ms one after another).
    """
    languages = [detect_language(text) for text in texts]
    return [_describe(text, language) for text, language in zip(texts, languages)]


def _describe(text: str, language: str | None) -> Description:
    notes: list[str] = []
    date = None
    rest = text
    match = _LEADING_DATE.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        try:
            date = dt.date(year, month, day).isoformat()
            rest = text[match.end():]
        except ValueError:
            notes.append(f"the text starts with {match.group(0).strip()!r}, which is not a real date")
    first_line = rest.lstrip().split("\n", 1)[0].strip()
    title = first_line if 0 < len(first_line) <= MAX_TITLE_CHARS and not _ends_like_prose(first_line) else None
    return Description(
        title=title,
        date=date,
        language=language,
        char_count=len(text),
        word_count=count_words(text),
        notes=tuple(notes),
    )


def count_words(text: str) -> int:
    """The words of a normalised text (see normalise_text: one space between words, lines trimmed, at most one
    blank line in a row), counted without splitting it (0.16 -> 0.09 ms a 13 KB text)."""
    if not text:
        return 0
    tokens = text.count(" ") + text.count("\n") - text.count("\n\n") + 1
    padded = f" {text} "
    return (tokens - len(_PUNCTUATION_TOKEN_AFTER_SPACE.findall(padded))
            - len(_PUNCTUATION_TOKEN_AFTER_NEWLINE.findall(padded)))


def _ends_like_prose(line: str) -> bool:
    # A heading rarely ends in a full stop; a first sentence of body text does.
    return line.endswith((".", ",", ";", ":")) and len(line) > 80


MIN_LANGUAGE_CHARS = 40
# py3langid's cost grows with the sample; the opening of a text says its language.
LANGUAGE_SAMPLE_CHARS = 600


@cache
def _language_identifier():
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # The model's feature weights come as float16, which numpy has no BLAS for:
    # each text's rows were converted to float32 before the product. Converted
    # once (28 MB more a process), the same scores (float16 -> float32 is
    # exact) in a quarter of the time: 0.11 -> 0.04 ms a text.
    return LanguageIdentifier(np.asarray(model.nb_ptc, dtype=np.float32), model.nb_pc, model.nb_classes,
                              model.tk_nextmove, model.tk_output, norm_probs=True, tk_row=model.tk_row)


# The deepest state of py3langid's byte automaton lies this many bytes from its
# start (its longest n-gram); see _automaton_states.
AUTOMATON_WINDOW = 6


@cache
def _automaton():
    """py3langid's tokenising automaton as numpy arrays: next state, row offset and feature of each state."""
    import numpy as np

    model = _language_identifier()
    # The transitions (39 MB) are viewed where the model holds them (a stdlib array of unsigned ints), not copied.
    nextmove = np.frombuffer(model.tk_nextmove, dtype=f"u{model.tk_nextmove.itemsize}")
    return nextmove, np.asarray(model.tk_row, dtype=np.int32) << 8, np.asarray(model.tk_output, dtype=np.int32)


def _window_states(codes, window: int):
    """For each byte of codes (a numpy uint8 array), the automaton's state after a walk from its start over the
    last window bytes."""
    import numpy as np

    nextmove, rowbase, _ = _automaton()
    n = len(codes)
    states = np.zeros(n, dtype=np.int32)
    for back in range(min(window, n) - 1, -1, -1):
        # All positions at once: position i takes byte i - back (positions before back have not started yet).
        # (ndarray.take: the same gather as indexing with an array, at three quarters of its cost on these sizes)
        states[back:] = nextmove.take(rowbase.take(states[back:]) + codes[:n - back])
    return states


def _automaton_states(data: bytes):
    """The automaton's state after each byte of data, as py3langid's byte-by-byte walk reaches them, or None.

    That walk is a Python loop (0.12 ms a 600-byte sample). In an automaton of
    n-grams no longer than AUTOMATON_WINDOW bytes, the state after a byte is the
    one a walk over the last AUTOMATON_WINDOW bytes reaches, which numpy does
    for all positions at once (0.05 ms). Not taken on trust: the states are kept
    only if each is the transition of the one before on its byte (then, by
    induction from the first, they are exactly the walk's); otherwise None, and
    the caller leaves the walk to py3langid.
    """
    import numpy as np

    nextmove, rowbase, _ = _automaton()
    codes = np.frombuffer(data, dtype=np.uint8)
    states = _window_states(codes, AUTOMATON_WINDOW)
    if len(codes) > 1 and not np.array_equal(nextmove.take(rowbase.take(states[:-1]) + codes[1:]), states[1:]):
        return None
    return states


def _classify(sample: str) -> tuple[str, float]:
    """py3langid's classify(sample) (normalised probabilities), with its byte walk done by _automaton_states.

    The scoring is py3langid 0.4's (LanguageIdentifier._decide, the version
    constraints.txt pins); tests/test_normalise.py holds the answers to its own.
    """
    import numpy as np

    model = _language_identifier()
    data = model._encode(sample)
    states = _automaton_states(data)
    if states is None:  # (an automaton deeper than the window: py3langid's own walk)
        return model.classify(sample)
    features = _automaton()[2].take(states)
    features, counts = np.unique(features[features >= 0], return_counts=True)
    if len(features):
        scores = np.log1p(counts.astype(np.float32)) @ model.nb_ptc.take(features, axis=0) + model.nb_pc
    else:
        scores = np.zeros(len(model.nb_classes), dtype=np.float32)  # (py3langid's scores for featureless input)
    scores *= 1.0 / math.sqrt(len(data) or 1)
    np.exp(scores - scores.max(), out=scores)
    scores /= scores.sum()
    for first, alias in model._alias_pairs:  # one label under two columns (srl -> sr): the first takes both
        scores[first] += scores[alias]
        scores[alias] = 0.0
    best = int(scores.argmax())
    return model.nb_classes[best], float(scores[best])


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None when it cannot be told."""
    sample = text[:LANGUAGE_SAMPLE_CHARS]
    # (counted only until there are enough: 0.03 -> 0.003 ms for a sample of prose)
    if sum(1 for _ in itertools.islice(filter(str.isalpha, sample), MIN_LANGUAGE_CHARS)) < MIN_LANGUAGE_CHARS:
        return None
    language, probability = _classify(sample)
    return language if probability >= 0.5 else None


@cache
def language_tool_version() -> str:
    from importlib.metadata import version

    return version("py3langid")
