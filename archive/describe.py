"""Descriptive metadata derived from a normalised text: title, date, language, counts."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

# A word is a whitespace-separated token with a letter or digit in it: tokens
# that are only punctuation (a dash standing alone) are not counted. In a
# normalised text the whitespace is single spaces and newlines; a pattern that
# starts with a plain character is searched for twice as fast as one that
# starts with \s, hence one pattern for each, and one for the text's first token.
_PUNCTUATION_TOKEN_AFTER_SPACE = re.compile(r" [^\w\s]+(?=[ \n]|\Z)")
_PUNCTUATION_TOKEN_AFTER_NEWLINE = re.compile(r"\n[^\w\s]+(?=[ \n]|\Z)")
_PUNCTUATION_TOKEN_FIRST = re.compile(r"[^\w\s]+(?=[ \n]|\Z)")

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
    with many small numpy steps, which run faster one text after another (the
    tables and numpy's code stay in the processor's caches) than between the
    reads, hashes, writes and Parquet of each file.
    """
    languages = [detect_language(text) for text in texts]
    return [_describe(text, language) for text, language in zip(texts, languages)]


def _describe(text: str, language: str | None) -> Description:
    notes: list[str] = []
    date = None
    rest = 0  # where the text after any date starts
    match = _LEADING_DATE.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        try:
            date = dt.date(year, month, day).isoformat()
            rest = match.end()
        except ValueError:
            notes.append(f"the text starts with {match.group(0).strip()!r}, which is not a real date")
    first_line = _first_line(text, rest)
    title = first_line if 0 < len(first_line) <= MAX_TITLE_CHARS and not _ends_like_prose(first_line) else None
    return Description(
        title=title,
        date=date,
        language=language,
        char_count=len(text),
        word_count=count_words(text),
        notes=tuple(notes),
    )


def _first_line(text: str, start: int) -> str:
    """text[start:].lstrip().split("\n", 1)[0].strip(), without copying the rest of the text: the first line
    that is not blank from start, trimmed; "" if it is longer than MAX_TITLE_CHARS (no title, whatever it says)."""
    end = len(text)
    while start < end and text[start].isspace():
        start += 1
    stop = text.find("\n", start)
    stop = end if stop < 0 else stop
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    return text[start:stop] if stop - start <= MAX_TITLE_CHARS else ""


def count_words(text: str) -> int:
    """The words of a normalised text (see normalise_text: one space between words, lines trimmed, at most one
    blank line in a row), counted without splitting it (no list of words is made)."""
    if not text:
        return 0
    tokens = text.count(" ") + text.count("\n") - text.count("\n\n") + 1
    punctuation = sum(1 for _ in _PUNCTUATION_TOKEN_AFTER_SPACE.finditer(text))
    punctuation += sum(1 for _ in _PUNCTUATION_TOKEN_AFTER_NEWLINE.finditer(text))
    return tokens - punctuation - bool(_PUNCTUATION_TOKEN_FIRST.match(text))


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
    # once (a few tens of megabytes more a process), the same scores (float16 to
    # float32 is exact) in a fraction of the time.
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
    # The transitions (tens of megabytes) are viewed where the model holds them (a stdlib array of unsigned
    # ints), not copied.
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

    That walk is a Python loop, a step a byte. In an automaton of n-grams no
    longer than AUTOMATON_WINDOW bytes, the state after a byte is the one a walk
    over the last AUTOMATON_WINDOW bytes reaches, which numpy does for all
    positions at once. Not taken on trust: the states are kept
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
    # (counted only until there are enough: prose has them in its first words)
    if sum(1 for _ in itertools.islice(filter(str.isalpha, sample), MIN_LANGUAGE_CHARS)) < MIN_LANGUAGE_CHARS:
        return None
    language, probability = _classify(sample)
    return language if probability >= 0.5 else None


@cache
def language_tool_version() -> str:
    from importlib.metadata import version

    return version("py3langid")
