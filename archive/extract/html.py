"""HTML: the article text only (no navigation, banners, scripts or footers) and the page's own metadata, by trafilatura.

The bytes are decoded here, not by trafilatura, so the charset the page
declares (byte-order mark, then <meta charset>) is honoured and recorded.
The page is parsed here too, as trafilatura would but without libxml2's
default nesting limit of 256 elements, which old pages' unclosed <font> tags
reach: the parser stops there and drops the rest of the page without an
error. A page deeper than the parser goes even so (2,048) is quarantined
too-costly, never published cut short.
"""

from __future__ import annotations

import codecs
import re
from datetime import date
from typing import TYPE_CHECKING, Any

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import TOO_COSTLY, Meter
from .text import decode_text

if TYPE_CHECKING:
    from lxml.html import HtmlElement

MAX_BYTES = 20_000_000  # trafilatura's own default ceiling for one page
EARLIEST_DATE = "1800-01-01"

# The WHATWG encoding sniffing algorithm looks for a declaration in the first 1024 bytes.
PRESCAN_BYTES = 1024
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""", re.I)

# Labels that mean another codec on the web than in Python (WHATWG Encoding Standard).
_WEB_LABELS = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "latin5": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    # A page that got as far as an ASCII <meta> cannot be UTF-16 (the standard reads it as UTF-8).
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
}

# Page furniture that is never article text, removed before trafilatura looks
# for the article: its own heuristics catch most of it, but on a page with no
# article at all its fallback extractors would return a cookie banner or menu.
_LOWER = "translate(@{attr},'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')"
PRUNE_XPATH = [
    "//nav",
    "//footer",
    "//aside",
    "//header[not(ancestor::article) and not(.//h1)]",  # (a header holding the page's title is the article's)
    "//*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='complementary']",
    # A consent banner, but not the <body class="cookie-banner-open"> or the
    # page wrapper some sites mark the same way while the banner shows.
    "//*[not(self::html or self::body or self::main or self::article) and not(.//article or .//main)"
    " and count(.//p) <= 3 and ("
    + " or ".join(
        f"contains({_LOWER.format(attr=attr)},'{word}')"
        for attr in ("id", "class")
        for word in ("cookie", "consent", "gdpr")
    )
    + ")]",
]

# BCP 47 as archives use it: a 2-3 letter language, optional script, region and variants.
_BCP47 = re.compile(
    r"^([A-Za-z]{2,3})(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?((?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$"
)


def extract(data: bytes, fmt: Format, *, max_bytes: int = MAX_BYTES, meter: Meter | None = None) -> Extracted:
    try:
        import trafilatura
    except ImportError:
        raise ExtractionError(
            "unsupported-format", "HTML extraction needs trafilatura: pip install trafilatura lxml_html_clean"
        ) from None

    if len(data) > max_bytes:
        raise ExtractionError("too-large", f"HTML page of {len(data):,} bytes; the limit is {max_bytes:,}")
    meter = meter or Meter(size=len(data))
    markup, encoding, notes = decode_html(data)
    try:
        tree = parse_html(markup)
        protected = tree is not None and AMPERSAND_STANDIN not in markup
        if protected:
            _protect_ampersands(tree)
        meter.check(" (parsing the page)")
        # (with no tree, not HTML trafilatura reads: it finds no document either)
        document = None if tree is None else trafilatura.bare_extraction(
            tree,
            with_metadata=True,
            include_comments=False,
            include_tables=True,
            prune_xpath=PRUNE_XPATH,
            # Dates only from the markup (meta tags, <time>, JSON-LD): a date
            # guessed from the article's prose would be a claim nobody made.
            # htmldate's default floor, 1995, is the web's birth; archived and
            # digitised pages declare older dates on purpose.
            date_extraction_params={
                "extensive_search": False,
                "original_date": True,
                "outputformat": "%Y-%m-%d",
                "min_date": EARLIEST_DATE,
            },
        )
    except RecursionError:
        raise ExtractionError(TOO_COSTLY, "the page nests elements too deeply for trafilatura (RecursionError)"
                              ) from None
    # trafilatura cannot be stopped halfway; MAX_BYTES bounds its work, and its time counts against the file's.
    meter.check(" (trafilatura)")
    text = (document.text or "") if document is not None else ""
    if not text.strip():
        raise ExtractionError(
            "no-text", f"trafilatura {trafilatura.__version__} found no article text in this {fmt.name} page"
        )
    metadata = _metadata(document, markup, notes)
    if protected:
        text = text.replace(AMPERSAND_STANDIN, "&")
        metadata = {key: value.replace(AMPERSAND_STANDIN, "&") for key, value in metadata.items()}
    return Extracted(
        text=text,
        extractor="trafilatura",
        extractor_version=trafilatura.__version__,
        encoding=encoding,
        metadata=metadata,
        notes=notes,
    )


def parse_html(markup: str) -> HtmlElement | None:
    """The page's tree as trafilatura.load_html makes it (or None where it finds no HTML), by a parser without
    libxml2's default limits (huge_tree); ExtractionError(too-costly) where the parser's own limit cut it."""
    from lxml.html import HTMLParser, fromstring
    from trafilatura.utils import is_dubious_html, repair_faulty_html

    beginning = markup[:50].lower()
    markup = repair_faulty_html(markup, beginning)
    parser = HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True,
                        remove_pis=True, huge_tree=True)
    tree = None
    try:
        tree = fromstring(markup, parser=parser)
    except Exception:  # noqa: BLE001 - as trafilatura: tried again as bytes (ValueError: a str declaring a charset)
        pass
    if tree is None or len(tree) < 1:
        try:
            tree = fromstring(markup.encode("utf-8", "surrogatepass"), parser=parser)
        except Exception:  # noqa: BLE001 - as trafilatura: a page lxml cannot parse has no article text
            return None
    _check_not_cut(parser.error_log)
    if is_dubious_html(beginning) and len(tree) < 2:
        return None
    return tree


def _check_not_cut(error_log: Any) -> None:
    """ExtractionError(too-costly) if the parser stopped at one of its resource limits (the nesting depth):
    libxml2 then drops the rest of the page and says so only in its error log."""
    errors = list(error_log)
    if error_log.last_error is not None:
        errors.append(error_log.last_error)
    for error in errors:
        # (libxml2 before 2.11 reported the depth limit as an internal error)
        if error.type_name == "ERR_RESOURCE_LIMIT" or "Excessive depth" in error.message:
            message = error.message.split(", use XML_PARSE_HUGE")[0]  # (it is in use: this is the higher limit)
            raise ExtractionError(
                TOO_COSTLY,
                f"the HTML parser (libxml2) stopped at line {error.line}, column {error.column}: {message}, its "
                "limit; the page's text after that point would be lost",
            )


# trafilatura runs html.unescape over the text it has already parsed, so a
# page that shows a literal "&lt;" or "&amp;" would lose it; every "&" in the
# parsed tree is replaced by this rare character until extraction is done
# (not when the page itself uses it). It must be printable: trafilatura drops
# the rest.
AMPERSAND_STANDIN = "\u2042"  # ASTERISM


def _protect_ampersands(tree) -> None:
    for element in tree.iter():
        if isinstance(element.tag, str):
            if element.text and "&" in element.text:
                element.text = element.text.replace("&", AMPERSAND_STANDIN)
            for name, value in element.attrib.items():
                if "&" in value:
                    element.attrib[name] = value.replace("&", AMPERSAND_STANDIN)
        if element.tail and "&" in element.tail:
            element.tail = element.tail.replace("&", AMPERSAND_STANDIN)


def decode_html(data: bytes) -> tuple[str, str, list[str]]:
    """(markup, encoding, notes): a byte-order mark decides, then the declared charset, then detection."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return decode_text(data)
    declared = _declared_charset(data[:PRESCAN_BYTES])
    if declared is None:
        markup, encoding, notes = decode_text(data)
        return markup, encoding, ["no charset declared; " + (notes[0] if notes else f"read as {encoding}")] + notes[1:]
    label, codec = declared
    if codec is None:
        markup, encoding, notes = decode_text(data)
        return markup, encoding, [f"declared charset {label!r} is not one Python knows; read as {encoding}"] + notes
    try:
        markup = data.decode(codec)
    except UnicodeDecodeError as exc:
        markup, encoding, notes = decode_text(data)
        return (
            markup,
            encoding,
            [f"declared charset {label!r}, but byte {exc.start} is not valid {codec}; read as {encoding}"] + notes,
        )
    if label in _WEB_LABELS:
        return markup, codec, [f"declared charset {label!r} read as {codec}, as browsers do"]
    return markup, codec, []


def _declared_charset(head: bytes) -> tuple[str, str | None] | None:
    """(label, Python codec or None) the page declares in its first bytes, or None if it declares none."""
    match = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    if not match:
        return None
    label = match.group(1).decode("ascii").lower()
    try:
        codec = _WEB_LABELS.get(label) or codecs.lookup(label).name
    except LookupError:
        return label, None
    return label, codec


def _metadata(document, markup: str, notes: list[str]) -> dict[str, str]:
    """Dublin Core elements (without the dc. prefix) from what trafilatura read in the page's head."""
    metadata: dict[str, str] = {}
    if document.title and document.title.strip():
        metadata["title"] = " ".join(document.title.split())
    if document.author and document.author.strip():
        metadata["creator"] = " ".join(document.author.split())
    if document.date:
        try:
            metadata["date"] = date.fromisoformat(document.date).isoformat()
        except ValueError:
            notes.append(f"page date {document.date!r} is not an ISO date; not used")
    if document.url and document.url.startswith(("http://", "https://")):
        metadata["source"] = document.url
    language = _language(markup)
    if language:
        tag = bcp47(language)
        if tag:
            metadata["language"] = tag
        else:
            notes.append(f"page language {language[:40]!r} is not a BCP 47 tag; not used")
    return metadata


_HTML_LANG = re.compile(r"""<html\b[^>]*?\blang\s*=\s*["']?\s*([^"'\s>]+)""", re.I)
_META_LANG = re.compile(
    r"""<meta\b(?=[^>]*\b(?:http-equiv|name)\s*=\s*["']?(?:content-language|dc\.language|language)["'\s>])[^>]*\bcontent\s*=\s*["']\s*([^"',;\s>]+)""",
    re.I,
)


def _language(markup: str) -> str | None:
    """The language the page declares: <html lang>, else a Content-Language or DC.language meta tag."""
    head = markup[:65536]
    match = _HTML_LANG.search(head) or _META_LANG.search(head)
    return match.group(1) if match else None


def bcp47(value: str) -> str | None:
    """value as a canonical-case BCP 47 tag ("en_gb" -> "en-GB"), or None if it is not one."""
    match = _BCP47.match(value.strip().replace("_", "-"))
    if not match:
        return None
    language, script, region, variants = match.groups()
    tag = language.lower()
    if script:
        tag += "-" + script[1:].title()
    if region:
        tag += "-" + region[1:].upper()
    return tag + (variants or "").lower()
