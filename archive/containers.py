"""Formats inside other formats, told apart by content as PRONOM's container signatures tell them (DROID, Siegfried
and FIDO read its container signature file): a ZIP whose `mimetype` entry says OpenDocument or EPUB, or that holds
`[Content_Types].xml` and `word/document.xml`, is that format, not a ZIP; an XML document is TEI, ALTO or PAGE by
its root element, whether or not it starts with an XML declaration; an HTML page whose elements are hOCR's is
hOCR; a text that starts with an Internet message's header fields is an e-mail.

Only the ZIP's central directory and the few small entries the signatures name are read, never its members.
"""

from __future__ import annotations

import io
import re

from .identify import Format

ZIP = Format("application/zip", "x-fmt/263", "ZIP Format")
TAR = Format("application/x-tar", "x-fmt/265", "Tape Archive Format")
DOCX = Format("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "fmt/412",
              "Microsoft Word for Windows 2007 onwards")
EPUB = Format("application/epub+zip", "fmt/483", "ePub")
# OpenDocument Text by the office:version its content states (PRONOM: 1.0 fmt/136, 1.1 fmt/290, 1.2 fmt/291,
# 1.3 fmt/1756).
_ODT_PUIDS = {"1.0": "fmt/136", "1.1": "fmt/290", "1.2": "fmt/291", "1.3": "fmt/1756"}
ODT_TYPE = "application/vnd.oasis.opendocument.text"
TEI = Format("application/tei+xml", None, "Text Encoding Initiative XML")
ALTO = Format("application/alto+xml", None, "ALTO XML (Analyzed Layout and Text Object)")
PAGE = Format("application/vnd.prima.page+xml", None, "PAGE XML (Page Analysis and Ground-truth Elements)")
HOCR = Format("text/vnd.hocr+html", None, "hOCR")
EML = Format("message/rfc822", "fmt/278", "Internet Message Format")
MBOX = Format("application/mbox", None, "mbox mailbox")
# RTF's versions (PRONOM fmt/45, 50, 52, 53, 355) are not told apart here: every RTF is read as the last
# specification, 1.9.1, which every earlier version is valid under.
RTF = Format("application/rtf", "fmt/355", "Rich Text Format")

MAX_SIGNATURE_ENTRY = 4096  # bytes of a ZIP entry a signature may read (mimetype, [Content_Types].xml...)

_XML_ROOT = re.compile(
    rb"^\s*(?:<\?xml[^>]*\?>\s*)?(?:(?:<!--.*?-->|<\?[^>]*\?>|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)\s*)*"
    rb"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)[\s>/]", re.S)
_HOCR = re.compile(rb"""class\s*=\s*["'][^"']*\bocr_(?:page|line|carea|par)\b""", re.I)
_HEADER = re.compile(rb"^([A-Za-z][A-Za-z0-9-]*):[ \t]", re.M)
_MAIL_HEADERS = {b"from", b"to", b"subject", b"date", b"message-id", b"received", b"return-path", b"mime-version",
                 b"delivered-to", b"reply-to", b"cc", b"sender", b"content-type"}
_ODF_VERSION = re.compile(rb'office:version\s*=\s*["\']([0-9.]+)["\']')


def zip_container(data: bytes) -> Format:
    """The format of a ZIP by its container signature; ZIP itself when none fits or the ZIP cannot be read."""
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return ZIP
    with archive:
        names = set(archive.namelist())
        mimetype = _small_entry(archive, "mimetype").strip()
        if mimetype == b"application/epub+zip":
            return EPUB
        if mimetype == ODT_TYPE.encode():
            version = _ODF_VERSION.search(_small_entry(archive, "meta.xml", 16384)
                                          or _small_entry(archive, "content.xml", 16384))
            number = version.group(1).decode() if version else None
            return Format(ODT_TYPE, _ODT_PUIDS.get(number or ""),
                          f"OpenDocument Text{' ' + number if number else ''}")
        if "[Content_Types].xml" in names and "word/document.xml" in names:
            return DOCX
    return ZIP


def _small_entry(archive, name: str, limit: int = MAX_SIGNATURE_ENTRY) -> bytes:
    """The first limit bytes of a ZIP entry, or b"" where there is none or it cannot be read."""
    import zipfile

    try:
        with archive.open(name) as entry:
            return entry.read(limit)
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, ValueError):
        return b""


def markup_format(prologue: bytes) -> Format | None:
    """TEI, ALTO or PAGE by the root element of an XML prologue, hOCR by its classes; None for other markup."""
    match = _XML_ROOT.match(prologue)
    if match is not None:
        root = match.group(2)
        if root in (b"TEI", b"teiCorpus", b"TEI.2"):
            return TEI
        if root == b"alto":
            return ALTO
        if root == b"PcGts":
            return PAGE
        if root.lower() == b"html" and _HOCR.search(prologue):
            return HOCR
    return None


def is_hocr(prologue: bytes) -> bool:
    return _HOCR.search(prologue) is not None and b"ocr-system" in prologue


def mail_format(prologue: bytes) -> Format | None:
    """An Internet message (RFC 5322) or an mbox of them, by the header fields they start with."""
    head = prologue.lstrip(b"\r\n")
    mbox = head.startswith(b"From ")
    if mbox:
        head = head.split(b"\n", 1)[1] if b"\n" in head else b""
    block = head.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    lines = [line for line in block.splitlines() if line and not line[:1].isspace()]
    if not lines:
        return None
    fields = [_HEADER.match(line) for line in lines]
    if not all(fields):
        return None
    known = {field.group(1).lower() for field in fields} & _MAIL_HEADERS
    if len(known) < 3 or not known & {b"from", b"received", b"message-id", b"date"}:
        return None
    return MBOX if mbox else EML
