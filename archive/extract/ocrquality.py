"""What OCR's output says of its own quality: each page's words with their boxes and confidences, as ALTO.

Tesseract writes ALTO 3 (the Library of Congress's standard for OCR text with its layout): a String per word with
its box and its confidence (WC, 0 to 1). From it each document gets
- its mean word confidence over the OCR'd pages (`ocr_confidence`),
- the share of its words a dictionary of the OCR language knows (`dictionary_share`): wordfreq's word lists
  (Robyn Speer's; their words seen at least once in a hundred million words, Zipf 1.0 and up), a word being a run
  of two or more letters,
- and the pages below either threshold: such a document is flagged `low_ocr_quality`. A page OCR'd upside down
  measures about 0.46 and 0.58; clean and worn scans 0.88 to 0.96 and 0.98 to 1.0.

The ALTO is kept as a derived object of the document (its `ocr_key`), rewritten here so the same scan gives the
same bytes: each Page numbered as the document's page, the temporary image names replaced, and the clean-up of
each page (cleanup.py) recorded as an ALTO preProcessingStep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

MIN_CONFIDENCE = 0.70  # mean word confidence of a page below which it is low quality
MIN_DICTIONARY_SHARE = 0.60  # share of dictionary words of a page below which it is low quality...
MIN_DICTIONARY_WORDS = 10  # ...when it has at least this many words to judge by
KNOWN_ZIPF = 1.0  # wordfreq's frequency (Zipf scale) from which a word counts as known
_WORD = re.compile(r"^\W*(.*?)\W*$")

# Tesseract's language codes (ISO 639-2/T, some with a script) -> wordfreq's (ISO 639-1), for those wordfreq has.
WORDFREQ_LANGUAGES = {
    "eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por": "pt", "nld": "nl", "swe": "sv",
    "dan": "da", "nor": "nb", "fin": "fi", "pol": "pl", "ces": "cs", "slk": "sk", "hun": "hu", "ron": "ro",
    "rus": "ru", "ukr": "uk", "bul": "bg", "hrv": "hr", "srp": "sr", "slv": "sl", "ell": "el", "tur": "tr",
    "aze": "az", "lit": "lt", "lav": "lv", "cat": "ca", "eus": "eu", "glg": "gl", "isl": "is", "gle": "ga",
    "ara": "ar", "heb": "he", "fas": "fa", "hin": "hi", "ben": "bn", "ind": "id", "msa": "ms", "vie": "vi",
    "tgl": "fil", "swa": "sw", "kor": "ko", "jpn": "ja", "chi_sim": "zh", "chi_tra": "zh", "tha": "th",
}


@dataclass
class PageQuality:
    number: int  # the page's number in the document, from 1
    words: int
    confidence: float | None  # mean word confidence, 0 to 1; None on a page without words
    known: int  # words the dictionary knows...
    judged: int  # ...of the words it was asked about (two or more letters, no digits)

    @property
    def dictionary_share(self) -> float | None:
        return self.known / self.judged if self.judged else None

    def is_low(self) -> bool:
        if self.words == 0:
            return False  # a blank page says nothing wrong
        if self.confidence is not None and self.confidence < MIN_CONFIDENCE:
            return True
        share = self.dictionary_share
        return self.judged >= MIN_DICTIONARY_WORDS and share is not None and share < MIN_DICTIONARY_SHARE


@dataclass
class OcrQuality:
    """The OCR of a document's scanned pages: its ALTO and what it says of their quality."""

    alto: bytes
    pages: list[PageQuality] = field(default_factory=list)
    dictionary: str | None = None  # "wordfreq 3.1.1 (en)", or None where no dictionary of the language is had

    @property
    def confidence(self) -> float | None:
        scores = [(p.confidence, p.words) for p in self.pages if p.confidence is not None]
        words = sum(n for _, n in scores)
        return round(sum(c * n for c, n in scores) / words, 4) if words else None

    @property
    def dictionary_share(self) -> float | None:
        judged = sum(p.judged for p in self.pages)
        return round(sum(p.known for p in self.pages) / judged, 4) if judged and self.dictionary else None

    @property
    def low_pages(self) -> list[int]:
        return [p.number for p in self.pages if p.is_low()]

    def summary(self) -> str:
        """For the normalisation event: the figures and the pages below the thresholds."""
        confidence, share = self.confidence, self.dictionary_share
        parts = [f"OCR quality: mean word confidence {confidence:.3f}" if confidence is not None
                 else "OCR quality: no words"]
        if share is not None:
            parts.append(f"{share:.3f} of words in the dictionary ({self.dictionary})")
        low = self.low_pages
        if low:
            parts.append(f"low OCR quality on page{'s' if len(low) > 1 else ''} {', '.join(map(str, low[:20]))}"
                         f"{' and more' if len(low) > 20 else ''} (below word confidence {MIN_CONFIDENCE:g} or "
                         f"dictionary share {MIN_DICTIONARY_SHARE:g})")
        return ", ".join(parts)


def assess(alto: bytes, numbers: list[int], languages: str, steps: list[list[str]]) -> OcrQuality:
    """The quality of the OCR in alto (Tesseract's, one Page per image in order), whose pages are the document's
    pages numbers; steps: the clean-up done to each page. The ALTO is rewritten as the module says."""
    from lxml import etree

    root = etree.fromstring(alto, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    namespace = root.nsmap.get(None, "")
    ns = {"a": namespace} if namespace else {}
    tag = (lambda name: f"a:{name}") if namespace else (lambda name: name)
    known = dictionary_of(languages)
    pages = []
    for page, number in zip(root.iterfind(f".//{tag('Page')}", ns), numbers):
        page.set("ID", f"page_{number}")
        page.set("PHYSICAL_IMG_NR", str(number))
        confidences, judged, found = [], 0, 0
        for string in page.iterfind(f".//{tag('String')}", ns):
            try:
                confidences.append(float(string.get("WC", "")))
            except ValueError:
                pass
            word = _WORD.match(string.get("CONTENT", "")).group(1).lower()
            if known is not None and len(word) >= 2 and word.isalpha():
                judged += 1
                found += word in known
        words = len(confidences)
        pages.append(PageQuality(number, words, sum(confidences) / words if words else None, found, judged))
    for name in root.iterfind(f".//{tag('fileName')}", ns):
        name.text = f"page {numbers[0]}" if numbers else ""
    _record_steps(root, tag, ns, numbers, steps)
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return OcrQuality(data, pages, f"wordfreq {_wordfreq_version()} ({', '.join(_codes(languages))})"
                      if known is not None else None)


def _record_steps(root, tag, ns, numbers: list[int], steps: list[list[str]]) -> None:
    from lxml import etree

    processing = root.find(f".//{tag('OCRProcessing')}", ns)
    done = [f"page {number}: {'; '.join(page)}" for number, page in zip(numbers, steps) if page]
    if processing is None or not done:
        return
    namespace = root.nsmap.get(None)
    qualified = (lambda name: f"{{{namespace}}}{name}") if namespace else (lambda name: name)
    step = etree.Element(qualified("preProcessingStep"))
    etree.SubElement(step, qualified("processingStepDescription")).text = "page clean-up before OCR"
    etree.SubElement(step, qualified("processingStepSettings")).text = "\n".join(done)
    software = etree.SubElement(step, qualified("processingSoftware"))
    etree.SubElement(software, qualified("softwareName")).text = "archive.extract.cleanup (OpenCV, Tesseract OSD)"
    processing.insert(0, step)


def _codes(languages: str) -> list[str]:
    return sorted({WORDFREQ_LANGUAGES[lang] for lang in languages.split("+") if lang in WORDFREQ_LANGUAGES})


@cache
def dictionary_of(languages: str) -> frozenset[str] | None:
    """The words wordfreq knows (Zipf KNOWN_ZIPF and up) in any of Tesseract's languages ("eng+deu"); None where
    wordfreq is missing or has none of them."""
    codes = _codes(languages)
    try:
        import wordfreq
    except ImportError:
        return None
    words: set[str] = set()
    floor = 10 ** (KNOWN_ZIPF - 9)  # Zipf z is a frequency of 10^(z - 9)
    for code in codes:
        try:
            frequencies = wordfreq.get_frequency_dict(code, wordlist="best")
        except LookupError:
            continue
        words.update(word for word, frequency in frequencies.items() if frequency >= floor)
    return frozenset(words) if words else None


@cache
def _wordfreq_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wordfreq")
    except PackageNotFoundError:
        return "unknown"
