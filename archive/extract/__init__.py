"""Text out of each supported format; a format with no extractor is quarantined, not guessed at.

Every extractor is a function ``(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted`` that
raises ExtractionError with a quarantine reason code when it cannot produce text, too-costly among them when
the file's work goes over its budgets (budget.py), which the extractor checks on its meter as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..errors import TerminalError
from ..identify import Format

if TYPE_CHECKING:
    from .budget import Budgets
    from .ocrquality import OcrQuality


@dataclass
class Extracted:
    text: str  # raw extracted text, before normalise_text
    extractor: str  # the tool that produced the text, e.g. "charset-normalizer"
    extractor_version: str
    encoding: str | None = None  # the character encoding read, for text formats
    # Descriptive metadata the format itself states (HTML <title>, PDF Info),
    # keyed by Dublin Core element name without the "dc." prefix.
    metadata: dict[str, str] = field(default_factory=dict)
    pages: int | None = None
    # Human-readable notes for the normalization event (e.g. "decoded as cp1252").
    notes: list[str] = field(default_factory=list)
    # Where pages were OCR'd: their ALTO (word boxes and confidences) and what it says of their quality.
    ocr: OcrQuality | None = None


class ExtractionError(TerminalError):
    """Text cannot be had from these bytes; reason is a quarantine reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self._init_args = (reason, detail)
        self.reason = reason
        self.detail = detail


Extractor = Callable[..., Extracted]  # (data, fmt, *, meter=None)


def _registry() -> dict[str, Extractor]:
    from . import text

    registry: dict[str, Extractor] = {"text/plain": text.extract}
    # Optional formats register themselves only when their module imports;
    # see extract/formats.py.
    try:
        from .formats import EXTRACTORS
    except ImportError:
        EXTRACTORS = {}
    registry.update(EXTRACTORS)
    return registry


_EXTRACTORS: dict[str, Extractor] | None = None


def extractor_for(fmt: Format) -> Extractor | None:
    global _EXTRACTORS
    if _EXTRACTORS is None:
        _EXTRACTORS = _registry()
    return _EXTRACTORS.get(fmt.media_type)


def extract(data: bytes, fmt: Format, budgets: Budgets | None = None) -> Extracted:
    """The text of data, by the extractor for its identified format, within budgets (the defaults when None)."""
    from .budget import Meter

    extractor = extractor_for(fmt)
    if extractor is None:
        raise ExtractionError(
            "unsupported-format",
            f"{fmt.name} ({fmt.media_type}{', ' + fmt.puid if fmt.puid else ''}): no text extractor for this format",
        )
    meter = Meter(budgets, len(data))
    extracted = extractor(data, fmt, meter=meter)
    meter.finish(extracted.text)
    return extracted
