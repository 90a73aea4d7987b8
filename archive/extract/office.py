"""Word-processor documents and e-books: DOCX (python-docx), ODT (odfpy), RTF (striprtf), EPUB (its OPF spine read
with zipfile and lxml: EbookLib, the usual library, is AGPL).

Each is read in document order, a paragraph a line, tables a row a line; the format's own title, author and date
are its metadata. The ZIP-based formats are checked before a library opens them: at most MAX_MEMBERS entries,
MAX_EXPANDED bytes once expanded, and no entry expanding more than MAX_RATIO times (a ZIP bomb dressed as a
document is too-large, never expanded).
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from typing import Any

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import Meter

MAX_MEMBERS = 10_000
MAX_EXPANDED = 512 << 20
MAX_RATIO = 1_000


def check_zip(data: bytes, fmt: Format) -> None:
    """ExtractionError (too-large, corrupt) for a ZIP a library should not open."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ExtractionError("corrupt", f"{fmt.name}: its ZIP container cannot be read: {exc}") from None
    if len(members) > MAX_MEMBERS:
        raise ExtractionError("too-large", f"{fmt.name} has {len(members):,} ZIP entries; the limit is {MAX_MEMBERS:,}")
    expanded = sum(member.file_size for member in members)
    if expanded > MAX_EXPANDED:
        raise ExtractionError("too-large", f"{fmt.name} expands to {expanded:,} bytes; the limit is {MAX_EXPANDED:,}")
    for member in members:
        if member.file_size > 1 << 20 and member.file_size > MAX_RATIO * max(1, member.compress_size):
            raise ExtractionError("too-large", f"{fmt.name}: entry {member.filename!r} expands {member.compress_size:,}"
                                               f" bytes to {member.file_size:,} (a ZIP bomb)")
        if member.flag_bits & 0x1:
            raise ExtractionError("encrypted", f"{fmt.name}: entry {member.filename!r} is encrypted")


def extract_docx(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    check_zip(data, fmt)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    lines.append("\t".join(cell.text for cell in row.cells))
            else:
                lines.append(block.text)
            lines.append("")
        properties = document.core_properties
        metadata = _metadata(properties.title, properties.author, properties.created)
    except (KeyError, ValueError, AttributeError, TypeError) as exc:
        raise ExtractionError("corrupt", f"{fmt.name} cannot be read: python-docx {type(exc).__name__}: "
                                         f"{exc}") from None
    return Extracted(text="\n".join(lines), extractor="python-docx", extractor_version=_version("python-docx"),
                     metadata=metadata)


def extract_odt(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    check_zip(data, fmt)
    from odf import dc, teletype
    from odf.opendocument import load

    try:
        document = load(io.BytesIO(data))
        lines: list[str] = []
        _odf_blocks(document.text, lines, teletype)
        meta = {name: _odf_first(document.meta, kind) for name, kind in
                (("title", dc.Title), ("creator", dc.Creator), ("date", dc.Date))}
    except (KeyError, ValueError, AttributeError, TypeError) as exc:
        raise ExtractionError("corrupt", f"{fmt.name} cannot be read: odfpy {type(exc).__name__}: {exc}") from None
    return Extracted(text="\n\n".join(lines), extractor="odfpy", extractor_version=_version("odfpy"),
                     metadata=_metadata(meta["title"], meta["creator"], meta["date"]))


_ODF_BLOCKS = {"p", "h"}


def _odf_blocks(element: Any, lines: list[str], teletype: Any) -> None:
    """Each paragraph and heading under element in document order (a list's or a table's too)."""
    for child in element.childNodes:
        if getattr(child, "qname", (None, None))[1] in _ODF_BLOCKS:
            lines.append(teletype.extractText(child))
        elif getattr(child, "childNodes", None):
            _odf_blocks(child, lines, teletype)


def _odf_first(meta: Any, kind: Any) -> str | None:
    found = meta.getElementsByType(kind) if meta is not None else []
    return str(found[0]) if found else None


def extract_rtf(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    from striprtf.striprtf import rtf_to_text

    codepage = re.search(rb"\\ansicpg(\d+)", data[:4096])
    encoding = f"cp{int(codepage.group(1))}" if codepage else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    try:
        text = rtf_to_text(data.decode("latin-1"), encoding=encoding, errors="replace")
    except (ValueError, IndexError, RecursionError) as exc:
        raise ExtractionError("corrupt", f"{fmt.name} cannot be read: striprtf {type(exc).__name__}: {exc}") from None
    return Extracted(text=text, extractor="striprtf", extractor_version=_version("striprtf"), encoding=encoding)


# -- EPUB ------------------------------------------------------------------------------------------


_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container", "opf": "http://www.idpf.org/2007/opf",
       "dc": "http://purl.org/dc/elements/1.1/"}


def extract_epub(data: bytes, fmt: Format, *, meter: Meter | None = None) -> Extracted:
    """The text of each document of the EPUB's spine, in reading order (its OPF package, as the specification
    says to find it: META-INF/container.xml names it)."""
    import posixpath
    import zipfile

    from lxml import etree

    check_zip(data, fmt)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            container = etree.fromstring(archive.read("META-INF/container.xml"), parser)
            package_path = container.find(".//c:rootfile", _NS).get("full-path")
            package = etree.fromstring(archive.read(package_path), parser)
            base = posixpath.dirname(package_path)
            items = {item.get("id"): item for item in package.iterfind(".//opf:manifest/opf:item", _NS)}
            chapters = []
            for reference in package.iterfind(".//opf:spine/opf:itemref", _NS):
                item = items.get(reference.get("idref"))
                if item is None or "html" not in (item.get("media-type") or ""):
                    continue
                if meter is not None:
                    meter.check(f" reading {item.get('href')}")
                chapters.append(html_text(archive.read(posixpath.normpath(posixpath.join(base, item.get("href"))))))
    except (KeyError, AttributeError, TypeError, etree.XMLSyntaxError, zipfile.BadZipFile) as exc:
        raise ExtractionError("corrupt", f"{fmt.name} cannot be read: {type(exc).__name__}: {exc}") from None

    def first(name: str) -> str | None:
        element = package.find(f".//opf:metadata/dc:{name}", _NS)
        return element.text if element is not None and element.text else None

    from lxml import __version__ as lxml_version

    return Extracted(text="\n\n".join(chapters), extractor="lxml", extractor_version=lxml_version,
                     metadata=_metadata(first("title"), first("creator"), first("date")),
                     notes=[f"{len(chapters)} spine document{'s' if len(chapters) != 1 else ''} of the EPUB package "
                            f"{package_path}"])


_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "tr", "br", "section",
           "article", "header", "footer", "aside", "figcaption", "dt", "dd", "table", "ul", "ol"}


def html_text(markup: bytes) -> str:
    """The text of an (X)HTML document, a block element a paragraph; scripts and styles dropped."""
    import lxml.html

    root = lxml.html.fromstring(markup)
    for element in root.iter("script", "style", "head"):
        element.drop_tree()
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        if tag in _BLOCKS:
            element.tail = "\n\n" + (element.tail or "")
    return root.text_content()


def _metadata(title: Any, creator: Any, date: Any) -> dict[str, str]:
    metadata = {}
    if isinstance(title, str) and title.strip():
        metadata["title"] = " ".join(title.split())
    if isinstance(creator, str) and creator.strip():
        metadata["creator"] = " ".join(creator.split())
    if isinstance(date, datetime):
        metadata["date"] = date.date().isoformat()
    elif isinstance(date, str) and re.match(r"^\d{4}(-\d{2}(-\d{2})?)?", date.strip()):
        metadata["date"] = re.match(r"^\d{4}(-\d{2}(-\d{2})?)?", date.strip()).group(0)
    return metadata


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
