"""The extractors for digitised formats (HTML, PDF, scanned images), by media type, with their work limits.

Importing this module is cheap: trafilatura, pypdf and Pillow are imported by
the extractor functions on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from . import Extractor, html, image, pdf
from .image import OcrSettings
from .pdf import PdfSettings


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one file may cause; beyond them a file is quarantined as too-large."""

    html_max_bytes: int = html.MAX_BYTES
    pdf: PdfSettings = field(default_factory=PdfSettings)  # its own .ocr is replaced by ocr below
    ocr: OcrSettings = field(default_factory=OcrSettings)


IMAGE_TYPES = tuple(image.PILLOW_FORMATS)


def make_extractors(limits: Limits | None = None) -> dict[str, Extractor]:
    """Extractor by media type, bound to limits (the defaults when None)."""
    limits = limits or Limits()
    extractors: dict[str, Extractor] = {
        "text/html": partial(html.extract, max_bytes=limits.html_max_bytes),
        "application/pdf": partial(pdf.extract, settings=replace(limits.pdf, ocr=limits.ocr)),
    }
    for media_type in IMAGE_TYPES:
        extractors[media_type] = partial(image.extract, settings=limits.ocr)
    return extractors


EXTRACTORS: dict[str, Extractor] = make_extractors()
