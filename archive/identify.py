"""Format identification from content (magic bytes and structure), never from the file name."""

from __future__ import annotations

import re
from dataclasses import dataclass

# How much of a file identification looks at: enough for magic numbers and
# an HTML prologue, small enough that identifying is cheap for any file.
SNIFF_BYTES = 8192

BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass(frozen=True)
class Format:
    media_type: str
    puid: str | None  # PRONOM persistent unique identifier, where one exists
    name: str

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith("text/")


OCTET_STREAM = Format("application/octet-stream", None, "Unidentified binary")
EMPTY = Format("application/x-empty", None, "Empty file")
PLAIN_TEXT = Format("text/plain", "x-fmt/111", "Plain Text File")

_PDF_PUIDS = {
    "1.0": "fmt/14", "1.1": "fmt/15", "1.2": "fmt/16", "1.3": "fmt/17",
    "1.4": "fmt/18", "1.5": "fmt/19", "1.6": "fmt/20", "1.7": "fmt/276",
    "2.0": "fmt/1129",
}

# (prefix, format) for formats a fixed signature at offset 0 identifies.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", Format("image/png", "fmt/11", "Portable Network Graphics")),
    (b"II*\x00", Format("image/tiff", "fmt/353", "Tagged Image File Format")),
    (b"MM\x00*", Format("image/tiff", "fmt/353", "Tagged Image File Format")),
    (b"\xff\xd8\xff", Format("image/jpeg", "fmt/43", "JPEG File Interchange Format")),
    (b"GIF87a", Format("image/gif", "fmt/3", "Graphics Interchange Format 87a")),
    (b"GIF89a", Format("image/gif", "fmt/4", "Graphics Interchange Format 89a")),
    (b"PK\x03\x04", Format("application/zip", "x-fmt/263", "ZIP Format")),
    (b"\x1f\x8b", Format("application/gzip", "x-fmt/266", "GZIP Format")),
    (b"7z\xbc\xaf\x27\x1c", Format("application/x-7z-compressed", "fmt/484", "7Zip format")),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Format("application/x-ole-storage", None, "OLE2 Compound Document")),
)

_HTML5_DOCTYPE = re.compile(rb"^<!doctype\s+html\s*>", re.I)
_HTML_DOCTYPE = re.compile(rb"^<!doctype\s+html\b", re.I)
_HTML_TAG = re.compile(rb"<(html|head|body|title|meta|p|div|article)[\s>/]", re.I)
_XML_DECL = re.compile(rb"^<\?xml\s", re.I)


def identify(data: bytes) -> Format:
    """The format of a file from its first bytes. Text formats are told apart from
    binary by their content: a text file decodes and has no stray control bytes."""
    head = data[:SNIFF_BYTES]
    if not head:
        return EMPTY
    if head.startswith(b"%PDF-"):
        version = head[5:8].decode("ascii", "replace")
        return Format("application/pdf", _PDF_PUIDS.get(version), f"Portable Document Format {version}")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return Format("image/webp", "fmt/567", "WebP")
    from . import containers

    if head.startswith(b"{\\rtf"):
        return containers.RTF
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            # A ZIP may be a format of its own: its container signature says (containers.py).
            return containers.zip_container(data) if fmt.media_type == "application/zip" else fmt
    if head[257:262] == b"ustar":
        return containers.TAR
    encoding = _text_encoding_hint(head)
    if encoding is None:
        return OCTET_STREAM
    # Markup is recognised on the decoded prologue so UTF-16 HTML counts too.
    prologue = head.decode(encoding, "replace").lstrip("\ufeff \t\r\n").encode("utf-8", "replace")
    vocabulary = containers.markup_format(prologue) or containers.mail_format(prologue)
    if vocabulary is not None:
        return vocabulary
    if _HTML5_DOCTYPE.match(prologue):
        return Format("text/html", "fmt/471", "Hypertext Markup Language 5")
    if _HTML_DOCTYPE.match(prologue) or (prologue[:1] == b"<" and _HTML_TAG.search(prologue[:2048])):
        return Format("text/html", "fmt/96", "Hypertext Markup Language")
    if _XML_DECL.match(prologue):
        return Format("application/xml", "fmt/101", "Extensible Markup Language")
    return PLAIN_TEXT


# Every byte value except the control bytes that do not occur in text: deleting
# these leaves only the suspicious controls, counted in C rather than in a loop.
_NOT_CONTROL = bytes(b for b in range(256) if not ((b < 32 and b not in (0, 9, 10, 12, 13, 27)) or b == 0x7F))


def _text_encoding_hint(head: bytes) -> str | None:
    """A codec that can read the sniffed bytes as text, or None if they look binary.

    Only a cheap structural test: the text extractor decides the real encoding.
    """
    for bom, codec in BOMS:
        if head.startswith(bom):
            return codec
    if b"\x00" in head:
        # UTF-16 without a BOM: NULs fill every other byte of Latin-script text.
        even, odd = head[0::2], head[1::2]
        if len(head) >= 4 and odd.count(0) > 0.4 * len(odd) and even.count(0) == 0:
            return "utf-16-le"
        if len(head) >= 4 and even.count(0) > 0.4 * len(even) and odd.count(0) == 0:
            return "utf-16-be"
        if head.count(0) > max(1, len(head) // 100):
            return None  # NULs throughout: a binary format
        # A handful of NULs in otherwise textual bytes: text with a fault,
        # which the text extractor reports as corrupt rather than guessing.
    control = len(head.translate(None, _NOT_CONTROL))
    if control > max(2, len(head) // 100):
        return None
    return "utf-8"
