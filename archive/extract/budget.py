"""The work one file's extraction may cost: time (a file, and a page of OCR) and output (characters of text).

A Meter keeps one file's account from the moment its extraction starts. Extractors consult it where their work
is: between pages, at every form XObject and every 64 operators of a PDF content stream, before and after each
external command (Tesseract, pdftoppm, whose timeouts it sets), and once more on the text they return. Over a
budget the file is quarantined `too-costly`, and the detail names the budget and the setting that raises it.

Defaults, and why:
- 600 s a file: about a hundred scanned pages at the ~5.7 s a page Tesseract takes at 300 dpi on one core; a
  longer scanned book needs a larger --extract-seconds, and says so.
- 60 s a page of OCR (Tesseract, pdftoppm): ten times what a dense 300 dpi page takes, for a busy machine.
- 100 characters of text a byte of the file, and 100,000 (some 30 pages) whatever its size: real text layers
  hold a few characters a byte (compressed text and its fonts), plain text and HTML at most one; a PDF of 2 KB
  that reuses one compressed form 200 times would give ten thousand a byte. Reaching the budget costs pypdf at
  most about 10 us a character: 2 to 3 s for such a file, against minutes for its 20 million characters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigurationError
from . import ExtractionError

TOO_COSTLY = "too-costly"
EXTRACT_SECONDS = 600.0
OCR_PAGE_SECONDS = 60.0
TEXT_PER_BYTE = 100.0
MIN_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Budgets:
    """What one file's extraction may cost; the settings of a run (CLI flags and flow parameters)."""

    seconds: float = EXTRACT_SECONDS  # --extract-seconds: wall-clock seconds a file, OCR included
    ocr_page_seconds: float = OCR_PAGE_SECONDS  # --ocr-page-seconds: a page's OCR or rendering
    text_per_byte: float = TEXT_PER_BYTE  # --text-per-byte: characters of text a byte of the file...
    min_text_chars: int = MIN_TEXT_CHARS  # ...and this many whatever the file's size

    def __post_init__(self):
        for name in ("seconds", "ocr_page_seconds", "text_per_byte", "min_text_chars"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"extraction budget {name} must be a number above 0, not {value!r}")

    def parameters(self) -> dict[str, float]:
        """The budgets as the run's parameters name them (the flow's arguments)."""
        return {"extract_seconds": self.seconds, "ocr_page_seconds": self.ocr_page_seconds,
                "text_per_byte": self.text_per_byte}


class Meter:
    """One file's account against its budgets: time from its creation, characters as the extractor counts them."""

    def __init__(self, budgets: Budgets | None = None, size: int = 0, *,
                 clock: Callable[[], float] = time.monotonic):
        self.budgets = budgets or Budgets()
        self.size = size
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + self.budgets.seconds
        self.max_chars = max(self.budgets.min_text_chars, int(self.budgets.text_per_byte * size))
        self.chars = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def check(self, where: str = "") -> None:
        """ExtractionError(too-costly) once the file's time budget is spent; where: e.g. " at page 3 of 9"."""
        if self.clock() > self.deadline:
            raise self.out_of_time(where)

    def count(self, chars: int, where: str = "") -> None:
        """Adds chars of text to the file's; ExtractionError(too-costly) once they are over its output budget."""
        self.chars += chars
        if self.chars > self.max_chars:
            raise self.out_of_text(self.chars, where)

    def finish(self, text: str) -> None:
        """The last word on the text an extractor returns, whatever it counted on the way."""
        if len(text) > self.max_chars:
            raise self.out_of_text(len(text), "")
        self.check()

    def command_timeout(self, pages: int, where: str = "") -> float:
        """The seconds an external command working on this many pages may run: their OCR budget, or the file's
        time left if that is less."""
        left = self.deadline - self.clock()
        if left <= 0:
            raise self.out_of_time(where)
        return min(self.budgets.ocr_page_seconds * pages, left)

    def overran(self, what: str, pages: int, timeout: float) -> ExtractionError:
        """The error for a command stopped at timeout (from command_timeout): whichever budget set it."""
        if timeout < self.budgets.ocr_page_seconds * pages:
            return self.out_of_time(f" ({what})")
        seconds = self.budgets.ocr_page_seconds
        return ExtractionError(
            TOO_COSTLY,
            f"{what} did not finish within {timeout:g} s: over the OCR budget of {seconds:g} s a page "
            f"(--ocr-page-seconds {seconds:g})",
        )

    def out_of_time(self, where: str) -> ExtractionError:
        seconds = self.budgets.seconds
        return ExtractionError(
            TOO_COSTLY,
            f"text extraction stopped after {self.elapsed():.1f} s{where}: over the time budget of {seconds:g} s "
            f"a file (--extract-seconds {seconds:g})",
        )

    def out_of_text(self, chars: int, where: str) -> ExtractionError:
        per_byte, least = self.budgets.text_per_byte, self.budgets.min_text_chars
        return ExtractionError(
            TOO_COSTLY,
            f"text extraction stopped at {chars:,} characters{where}: over the output budget of "
            f"{self.max_chars:,} characters for a file of {self.size:,} bytes ({per_byte:g} a byte, at least "
            f"{least:,}; --text-per-byte {per_byte:g})",
        )
