"""How text reuse is looked for (ReuseParams), what a search did (ReuseStats), and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TerminalError


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
        window and is found with high probability (trials with planted
        passages: BENCHMARKS.md); a shorter one covers none, is missed more
        often, and is reported when something else makes its pair a
        candidate: every passage of a candidate pair is reported.
    query_stride: words between the starts of the overlapping query windows
        (5), so that some query window of one document lies within
        query_stride / 2 words of any indexed window of the other it shares.
        The band hashes kept (reuse_bands) number about bands / query_stride
        per word.
    num_perm: MinHash permutations per window (32).
    threshold: the Jaccard similarity of two windows' shingle sets that
        MinHashLSH is tuned for (0.5); datasketch chooses bands and rows from
        it and num_perm (8 bands of 4 for the defaults).
    min_words: the shortest run of identical whitespace-separated tokens a
        passage holds (10): a pair is reported only when its texts share one.
    max_gap: how far a passage is carried over where the two texts differ
        (8; see align): across at most max_gap tokens on each side at a time,
        and for as long as the tokens that agree outweigh those that do not by
        no less than max_gap below the best so far. OCR noise (a misread,
        split, joined or dropped word) does not cut a reprinted story into
        fragments. 0: exact passages only, each a run of identical tokens.
    min_similarity: the lowest pair similarity reported (0.0: every pair that
        shares a passage of min_words). See Alignment.similarity.
    seed: the MinHash permutation seed (1). Results are deterministic for a
        given seed, whatever the order documents come in.
    max_bucket_texts: a band hash shared by more distinct texts than this (50)
        is commonplace wording (a masthead, a legal formula, a template) and
        makes no candidate pairs: without the cap, a phrase in every document
        would make every pair a candidate, n * n alignments. Reuse between two
        documents still counts through their other, rarer windows.
    max_text_chars: the most characters of one text that reuse is looked for
        in (4,000,000: some 650,000 words, a long book). A longer text is
        searched in its first max_text_chars characters, cut at the last
        whitespace before that point (see searched_text): its band hashes and
        its passages come from that part alone, and its similarity with
        another text is measured on it. What reuse holds for one text (its
        words, band hashes, and the tokens and seeds of an alignment) grows
        with this, never with the length of the text: about 20 bytes a
        character, some 60 MiB at the default (BENCHMARKS.md, "One long
        text"). A run's reuse figures count the texts cut (texts_cut).

    All but min_words, max_gap, min_similarity, max_bucket_texts and max_text_chars
    shape the band hashes; band_scheme() names them, and hashes of different
    schemes are never compared (max_text_chars decides only how much of a
    long text has band hashes, not what they are).
    """

    shingle_words: int = 5
    window_words: int = 25
    query_stride: int = 5
    num_perm: int = 32
    threshold: float = 0.5
    min_words: int = 10
    max_gap: int = 8
    min_similarity: float = 0.0
    seed: int = 1
    max_bucket_texts: int = 50
    max_text_chars: int = 4_000_000

    def __post_init__(self):
        if self.shingle_words < 1:
            raise ValueError(f"shingle_words must be at least 1, not {self.shingle_words}")
        if self.window_words < self.shingle_words:
            raise ValueError(f"window_words ({self.window_words}) must be at least shingle_words "
                             f"({self.shingle_words})")
        if not 1 <= self.query_stride <= self.window_words:
            raise ValueError(f"query_stride must be between 1 and window_words ({self.window_words}), "
                             f"not {self.query_stride}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be at least 2, not {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.min_words < 1:
            raise ValueError(f"min_words must be at least 1, not {self.min_words}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be at least 0, not {self.max_gap}")
        if not 0.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [0, 1], not {self.min_similarity}")
        if self.max_bucket_texts < 2:
            raise ValueError(f"max_bucket_texts must be at least 2, not {self.max_bucket_texts}")
        if self.max_text_chars < 1:
            raise ValueError(f"max_text_chars must be at least 1, not {self.max_text_chars}")


STAGES = ("signatures", "lsh", "fetch", "align")


@dataclass
class ReuseStats:
    """What a reuse search did: counts and seconds per stage."""

    documents: int = 0
    identical_texts: int = 0  # documents whose text equals an earlier one's (reported as duplicates elsewhere)
    too_short: int = 0  # fewer words than a shingle: nothing to compare
    texts_cut: int = 0  # longer than max_text_chars: searched in their first max_text_chars characters
    windows_indexed: int = 0
    windows_queried: int = 0
    candidate_pairs: int = 0  # distinct texts aligned: the pairs actually compared
    pairs_derived: int = 0  # pairs of a star's members whose passages came through its pivot (stars.py)
    pairs_with_reuse: int = 0
    passages: int = 0  # distinct passages between distinct texts
    rows: int = 0  # passages times the documents that carry each text
    texts_fetched: int = 0
    fetches: int = 0  # calls to get_texts
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
