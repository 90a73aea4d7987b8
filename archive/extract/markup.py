"""XML text formats read with lxml: TEI (the text without its markup, the header as metadata), and the OCR a
vendor delivers as ALTO, hOCR or PAGE XML (the text it read, its word confidences kept as the document's OCR
quality, ocrquality.py).
"""

from __future__ import annotations

from typing import Any

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import Meter
from .ocrquality import OcrQuality, PageQuality, assess, dictionary_of

TEI_NS = "http://www.tei-c.org/ns/1.0"
# TEI elements that make a paragraph of their own.
_TEI_BLOCKS = {"p", "head", "l", "lg", "ab", "item", "opener", "closer", "salute", "signed", "dateline", "byline",
               "docTitle", "titlePart", "quote", "sp", "speaker", "stage", "note", "trailer", "epigraph", "postscript",
               "address", "addrLine", "label", "row", "cell", "list", "table", "div", "argument", "castItem"}
_TEI_LEAVE_OUT = {"teiHeader", "facsimile", "standOff"}
OCR_LANGUAGES = "eng"  # the dictionary a vendor's OCR is checked against (its language is not known here)


def _parse(data: bytes, fmt: Format):
    from lxml import etree

    try:
        return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise ExtractionError("corrupt", f"{fmt.name} is not well-formed XML: {exc}") from None


def _local(element: Any) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""


def _lxml_version() -> str:
    from lxml import __version__

    return __version__


# -- TEI -------------------------------------------------------------------------------------------


def extract_tei(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    root = _parse(data, fmt)
    texts = [element for element in root.iter() if _local(element) == "text"
             and not any(_local(parent) in _TEI_LEAVE_OUT for parent in element.iterancestors())]
    body = texts[0] if texts else root
    pieces: list[str] = []
    _tei_text(body, pieces)
    return Extracted(text="".join(pieces), extractor="lxml", extractor_version=_lxml_version(),
                     metadata=_tei_metadata(root))


def _tei_text(element: Any, pieces: list[str]) -> None:
    name = _local(element)
    if name in _TEI_LEAVE_OUT or not isinstance(element.tag, str):
        if element.tail:
            pieces.append(element.tail)
        return
    block = name in _TEI_BLOCKS
    if block:
        pieces.append("\n\n")
    if name == "lb" and element.get("break") != "no":  # (break="no": the word goes on over the line break)
        pieces.append("\n")
    if element.text:
        pieces.append(element.text)
    for child in element:
        _tei_text(child, pieces)
    if block:
        pieces.append("\n\n")
    if element.tail:
        pieces.append(element.tail)


def _tei_metadata(root: Any) -> dict[str, str]:
    header = next((e for e in root.iter() if _local(e) == "teiHeader"), None)
    if header is None:
        return {}
    found: dict[str, str] = {}
    for element in header.iter():
        name = _local(element)
        if name == "title" and "title" not in found and any(_local(p) == "titleStmt" for p in element.iterancestors()):
            found["title"] = " ".join("".join(element.itertext()).split())
        elif name == "author" and "creator" not in found:
            found["creator"] = " ".join("".join(element.itertext()).split())
        elif name == "date" and "date" not in found:
            when = element.get("when") or element.get("notBefore") or ""
            if when[:4].isdigit():
                found["date"] = when[:10]
    return {name: value for name, value in found.items() if value}


# -- the OCR a vendor delivers ---------------------------------------------------------------------


def extract_alto(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    """Each page's TextBlocks as paragraphs, TextLines as lines, the Strings' CONTENT; hyphens (HYP) at line ends."""
    root = _parse(data, fmt)
    pages: list[str] = []
    for page in (e for e in root.iter() if _local(e) == "Page"):
        blocks = []
        for block in (e for e in page.iter() if _local(e) == "TextBlock"):
            lines = []
            for line in (e for e in block.iter() if _local(e) == "TextLine"):
                words = []
                for item in line:
                    if _local(item) == "String":
                        words.append(item.get("CONTENT", ""))
                    elif _local(item) == "HYP":
                        words.append(item.get("CONTENT", "-") + "\x00")
                lines.append(" ".join(words).replace(" \x00", "").replace("\x00", ""))
            blocks.append("\n".join(lines))
        pages.append("\n\n".join(blocks))
    quality = assess(data, list(range(1, len(pages) + 1)), OCR_LANGUAGES, [])
    quality.alto = b""  # the original is the ALTO: nothing derived to keep
    return Extracted(text="\f".join(pages), extractor="lxml", extractor_version=_lxml_version(), pages=len(pages),
                     notes=[f"text of the ALTO's {len(pages)} page{'s' if len(pages) != 1 else ''}", quality.summary()],
                     ocr=quality)


def extract_hocr(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    """Each ocr_page's lines (ocr_line, ocrx_word), its paragraphs (ocr_par) apart; x_wconf as the confidence."""
    import lxml.html

    root = lxml.html.fromstring(data)
    pages, qualities = [], []
    known = dictionary_of(OCR_LANGUAGES)
    page_elements = root.find_class("ocr_page") or [root]
    for number, page in enumerate(page_elements, start=1):
        paragraphs, confidences, judged, found = [], [], 0, 0
        for paragraph in page.find_class("ocr_par") or [page]:
            lines = []
            for line in paragraph.find_class("ocr_line") or [paragraph]:
                words = []
                for word in line.find_class("ocrx_word"):
                    text = " ".join(word.text_content().split())
                    words.append(text)
                    confidence = _title_value(word.get("title", ""), "x_wconf")
                    if confidence is not None:
                        confidences.append(confidence / 100)
                    bare = text.strip(".,;:!?\"'()[]").lower()
                    if known is not None and len(bare) >= 2 and bare.isalpha():
                        judged += 1
                        found += bare in known
                lines.append(" ".join(words) if words else " ".join(line.text_content().split()))
            paragraphs.append("\n".join(lines))
        pages.append("\n\n".join(paragraphs))
        qualities.append(PageQuality(number, len(confidences), sum(confidences) / len(confidences)
                                     if confidences else None, found, judged))
    quality = OcrQuality(b"", qualities, f"wordfreq ({OCR_LANGUAGES})" if known is not None else None)
    return Extracted(text="\f".join(pages), extractor="lxml", extractor_version=_lxml_version(), pages=len(pages),
                     notes=[f"text of the hOCR's {len(pages)} page{'s' if len(pages) != 1 else ''}", quality.summary()],
                     ocr=quality)


def _title_value(title: str, key: str) -> float | None:
    for part in title.split(";"):
        fields = part.split()
        if len(fields) == 2 and fields[0] == key:
            try:
                return float(fields[1])
            except ValueError:
                return None
    return None


def extract_page(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    """PAGE XML: each TextRegion's lines (TextLine/TextEquiv/Unicode) as a paragraph; TextEquiv's conf kept."""
    root = _parse(data, fmt)
    paragraphs, confidences = [], []
    for region in (e for e in root.iter() if _local(e) == "TextRegion"):
        lines = []
        for line in (e for e in region if _local(e) == "TextLine"):
            equiv = next((e for e in line if _local(e) == "TextEquiv"), None)
            unicode = next((e for e in equiv if _local(e) == "Unicode"), None) if equiv is not None else None
            if unicode is not None and unicode.text:
                lines.append(unicode.text)
                if equiv.get("conf"):
                    confidences.append(float(equiv.get("conf")))
        if lines:
            paragraphs.append("\n".join(lines))
    quality = OcrQuality(b"", [PageQuality(1, len(confidences), sum(confidences) / len(confidences)
                                           if confidences else None, 0, 0)])
    return Extracted(text="\n\n".join(paragraphs), extractor="lxml", extractor_version=_lxml_version(), pages=1,
                     notes=["text of the PAGE XML's text lines", quality.summary()],
                     ocr=quality if confidences else None)
