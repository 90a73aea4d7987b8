"""The extractors for digitised formats (HTML, PDF, scanned images), office documents and e-books (DOCX, ODT,
RTF, EPUB), e-mail, TEI and the OCR vendors deliver (ALTO, hOCR, PAGE), by media type, with their work limits.

Importing this module is cheap: trafilatura, pypdf, Pillow, python-docx, odfpy, striprtf and lxml are imported by
the extractor functions on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from .. import containers
from . import Extractor, html, image, mail, markup, office, pdf
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
    extractors.update({
        containers.DOCX.media_type: office.extract_docx,
        containers.ODT_TYPE: office.extract_odt,
        containers.RTF.media_type: office.extract_rtf,
        containers.EPUB.media_type: office.extract_epub,
        containers.EML.media_type: mail.extract_eml,
        containers.TEI.media_type: markup.extract_tei,
        containers.ALTO.media_type: markup.extract_alto,
        containers.HOCR.media_type: markup.extract_hocr,
        containers.PAGE.media_type: markup.extract_page,
    })
    return extractors


EXTRACTORS: dict[str, Extractor] = make_extractors()
