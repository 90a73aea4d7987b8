"""PDF: the text layer page by page with pypdf; pages that are only scanned images go to OCR.

Whatever a damaged or hostile PDF makes pypdf raise comes out as one
ExtractionError with a quarantine reason, and the work one file can cause is
bounded: a page cap, pypdf's own stream-size limits, a pixel cap on rendered
pages, and the file's budgets (budget.py): its time and its text, checked as
pypdf reads each page (pdftext.py), and the timeouts of the external commands.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import Meter
from .image import OcrSettings, Tesseract, count_of, find_tesseract
from .ocr import OcrOutput, ocr_files
from .pdftext import form_limit_lifted, page_text

MAX_PAGES = 2000
MAX_OCR_PAGES = 500
ENCRYPTED = "encrypted"  # the quarantine reason of a file that needs a password
OCR_DPI = 300


@dataclass(frozen=True)
class PdfSettings:
    max_pages: int = MAX_PAGES  # more pages than this: quarantined as too-large
    max_ocr_pages: int = MAX_OCR_PAGES  # more image-only pages than this: too-large
    ocr_dpi: int = OCR_DPI
    # None: take the scanned images embedded in the PDF instead of rendering pages.
    pdftoppm_cmd: str | None = "pdftoppm"  # rendering a page takes at most the meter's OCR budget of a page
    ocr: OcrSettings = field(default_factory=OcrSettings)


def extract(data: bytes, fmt: Format, *, settings: PdfSettings = PdfSettings(), meter: Meter | None = None
            ) -> Extracted:
    """Text of each page joined by form feeds, and the Info dictionary's title, author and date."""
    try:
        import pypdf
    except ImportError:
        raise ExtractionError("unsupported-format", "PDF extraction needs pypdf: pip install pypdf") from None

    meter = meter or Meter(size=len(data))
    notes: list[str] = []
    with _pypdf_errors(data), form_limit_lifted():
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader)
        page_count = len(reader.pages)
        if page_count > settings.max_pages:
            raise ExtractionError("too-large", f"the PDF has {page_count} pages; the limit is {settings.max_pages}")
        texts: list[str] = []
        scanned: dict[int, list[tuple[int, int]]] = {}  # page index -> sizes of its images
        overdrawn = [0]
        for index, page in enumerate(reader.pages):
            meter.check(f" at page {index + 1} of {page_count}")
            text = page_text(page, meter, index + 1, page_count, overdrawn)
            texts.append(text if text.strip() else "")
            if not text.strip():
                images = _image_sizes(page)
                if images:
                    scanned[index] = images
        metadata = _info_metadata(reader, notes)
    if overdrawn[0]:
        notes.append(f"{count_of(overdrawn[0], 'run')} of text drawn again at the same place (fake bold, shadow) "
                     "read once")
    if page_count == 0:
        raise ExtractionError("no-text", "the PDF has no pages")

    extractor, version = "pypdf", pypdf.__version__
    ocr = None
    if scanned:
        if len(scanned) > settings.max_ocr_pages:
            raise ExtractionError(
                "too-large",
                f"{len(scanned)} pages have no text layer and need OCR; the limit is {settings.max_ocr_pages}",
            )
        has_text_layer = any(texts)
        try:
            tesseract = find_tesseract(settings.ocr)
        except ExtractionError as exc:
            if not has_text_layer:
                raise ExtractionError(
                    "needs-ocr", f"no text layer on any of {count_of(page_count, 'page')}, and {exc.detail}"
                ) from None
            notes.append(f"{_pages_list(scanned)} no text layer and not OCR'd: {exc.detail}")
        else:
            ocr_texts, how, output = _ocr_pages(data, reader, scanned, tesseract, settings, meter)
            for index, text in ocr_texts.items():
                texts[index] = text
            notes.append(
                f"{_pages_list(scanned)} no text layer: {how}, OCR by Tesseract {tesseract.version} "
                f"(-l {settings.ocr.languages}{', Sauvola' if settings.ocr.cleanup else ''})"
            )
            notes.extend(output.notes())
            ocr = output.quality
            if has_text_layer:
                extractor, version = "pypdf+tesseract", f"{pypdf.__version__}+{tesseract.version}"
            else:
                extractor, version = "tesseract", tesseract.version

    text = "\f".join(texts)
    if not text.strip():
        raise ExtractionError(
            "no-text",
            f"none of {count_of(page_count, 'page')} has a text layer or a scanned image"
            if not scanned
            else f"OCR found no text on {count_of(len(scanned), 'scanned page')}",
        )
    return Extracted(
        text=text, extractor=extractor, extractor_version=version, metadata=metadata, pages=page_count, notes=notes,
        ocr=ocr,
    )


@contextmanager
def _pypdf_errors(data: bytes | None = None) -> Iterator[None]:
    """pypdf's exceptions, and the stray ones its parser lets through on bad input, as quarantine reasons."""
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    try:
        yield
    except ExtractionError:
        raise
    except LimitReachedError as exc:
        raise ExtractionError("too-large", f"pypdf LimitReachedError: {exc}") from None
    except MemoryError:
        raise ExtractionError("too-large", "not enough memory to parse the PDF") from None
    except (FileNotDecryptedError, DependencyError) as exc:
        raise ExtractionError(ENCRYPTED if isinstance(exc, FileNotDecryptedError) else "unsupported-format",
                              f"encrypted PDF: pypdf {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise ExtractionError("corrupt", "pypdf RecursionError: the PDF's object graph nests without end") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any parser error means unreadable
        # On damaged input pypdf raises its own PdfReadError family but also
        # KeyError, ValueError, TypeError, struct.error, zlib.error...: all of
        # them mean these bytes are not a PDF that can be read.
        raise ExtractionError("corrupt", f"pypdf {type(exc).__name__}: {exc}{_truncation_hint(data)}") from None


def _truncation_hint(data: bytes | None) -> str:
    if data is None or b"%%EOF" in data[-2048:]:
        return ""
    return " (no %%EOF marker at the end: the file looks truncated)"


def _decrypt(reader: Any) -> None:
    from pypdf import PasswordType

    # Many PDFs are "encrypted" only to set permissions and open with an empty password.
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ExtractionError(ENCRYPTED, "encrypted PDF that needs a password to open: ingest a copy saved without "
                                         "the password, or one the depositor opens")


def _image_sizes(page: Any) -> list[tuple[int, int]]:
    """(width, height) of each image XObject the page uses, through nested forms, without decoding any."""
    from pypdf.generic import DictionaryObject, StreamObject

    sizes: list[tuple[int, int]] = []
    seen: set[int] = set()

    def walk(holder: Any, depth: int) -> None:
        resources = holder.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        if not isinstance(resources, DictionaryObject) or depth > 8:
            return
        xobjects = resources.get("/XObject")
        xobjects = xobjects.get_object() if xobjects is not None else None
        if not isinstance(xobjects, DictionaryObject):
            return
        for reference in xobjects.values():
            xobject = reference.get_object()
            if not isinstance(xobject, StreamObject) or id(xobject) in seen:
                continue
            seen.add(id(xobject))
            if xobject.get("/Subtype") == "/Image":
                sizes.append((_number(xobject.get("/Width")), _number(xobject.get("/Height"))))
            elif xobject.get("/Subtype") == "/Form":
                walk(xobject, depth + 1)

    walk(page, 0)
    return sizes


def _number(value: Any) -> int:
    value = value.get_object() if hasattr(value, "get_object") else value
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _ocr_pages(
    data: bytes, reader: Any, scanned: dict[int, list[tuple[int, int]]], tesseract: Tesseract, settings: PdfSettings,
    meter: Meter,
) -> tuple[dict[int, str], str, OcrOutput]:
    """OCR text of the image-only pages, how they were had (rendered by pdftoppm where it is installed, else their
    embedded images) and the OCR's output."""
    pdftoppm = shutil.which(settings.pdftoppm_cmd) if settings.pdftoppm_cmd else None
    with tempfile.TemporaryDirectory(prefix="archive-pdf-ocr-") as workdir:
        work = Path(workdir)
        if pdftoppm:
            images = _render(data, reader, sorted(scanned), pdftoppm, work, settings, meter)
            how = f"rendered at up to {settings.ocr_dpi} dpi by pdftoppm {_pdftoppm_version(pdftoppm)}"
        else:
            images = _embedded_images(reader, scanned, work, settings, meter)
            how = "embedded images (pdftoppm not installed)"
        output = ocr_files([path for _, path in images], tesseract, settings.ocr, meter,
                           [index + 1 for index, _ in images])
    by_page: dict[int, list[str]] = {}
    for (index, _), text in zip(images, output.texts):
        by_page.setdefault(index, []).append(text)
    return {index: "\n\n".join(parts) for index, parts in by_page.items()}, how, output


def _render(
    data: bytes, reader: Any, pages: list[int], pdftoppm: str, work: Path, settings: PdfSettings, meter: Meter
) -> list[tuple[int, Path]]:
    source = work / "source.pdf"
    source.write_bytes(data)
    rendered: list[tuple[int, Path]] = []
    for index in pages:
        with _pypdf_errors():
            box = reader.pages[index].cropbox
            width_in, height_in = abs(float(box.width)) / 72, abs(float(box.height)) / 72
        # A page may declare any size: lower the resolution so no render
        # exceeds the pixel cap, rather than let a 200-inch page fill memory.
        area = max(width_in * height_in, 1e-6)
        dpi = min(settings.ocr_dpi, int(math.sqrt(settings.ocr.max_pixels / area)))
        if dpi < 50:
            raise ExtractionError(
                "too-large", f"page {index + 1} is {width_in:.0f} x {height_in:.0f} inches: too large to render for OCR"
            )
        prefix = work / f"page-{index + 1:05d}"
        command = [
            pdftoppm,
            "-r",
            str(dpi),
            "-gray",
            "-png",
            "-singlefile",
            "-f",
            str(index + 1),
            "-l",
            str(index + 1),
            str(source),
            str(prefix),
        ]
        timeout = meter.command_timeout(1, f" before rendering page {index + 1} for OCR")
        try:
            result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise meter.overran(f"pdftoppm rendering page {index + 1}", 1, timeout) from None
        output = prefix.with_suffix(".png")
        if result.returncode != 0 or not output.exists():
            stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ExtractionError(
                "corrupt",
                f"pdftoppm cannot render page {index + 1} (exit {result.returncode}): {' / '.join(stderr[-3:])}",
            )
        rendered.append((index, output))
    return rendered


def _embedded_images(
    reader: Any, scanned: dict[int, list[tuple[int, int]]], work: Path, settings: PdfSettings, meter: Meter
) -> list[tuple[int, Path]]:
    from .image import greyscale_page, pillow_errors

    found: list[tuple[int, Path]] = []
    for index, sizes in sorted(scanned.items()):
        meter.check(f" taking the images of page {index + 1}")
        for width, height in sizes:
            if width * height > settings.ocr.max_pixels:
                raise ExtractionError(
                    "too-large",
                    f"page {index + 1} embeds a {width} x {height} image; the limit is "
                    f"{settings.ocr.max_pixels:,} pixels",
                )
        with _pypdf_errors():
            images = list(reader.pages[index].images)
        for number, embedded in enumerate(images, start=1):
            with _pypdf_errors():
                picture = embedded.image
            if picture is None:
                continue
            path = work / f"page-{index + 1:05d}-{number:03d}.png"
            with pillow_errors(_PDF_IMAGE):
                greyscale_page(picture).save(path, format="PNG")
            found.append((index, path))
    return found


_PDF_IMAGE = Format("application/pdf", None, "image embedded in a PDF")


@cache
def _pdftoppm_version(path: str) -> str:
    try:
        result = subprocess.run([path, "-v"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"version\s+(\S+)", (result.stdout + result.stderr).decode("utf-8", "replace"))
    return match.group(1) if match else "unknown"


def _info_metadata(reader: Any, notes: list[str]) -> dict[str, str]:
    """Title, creator and date from the document Info dictionary, where they say something."""
    info = reader.metadata
    if not info:
        return {}
    metadata: dict[str, str] = {}
    for key, name in (("/Title", "title"), ("/Author", "creator")):
        value = info.get(key)
        value = value.get_object() if hasattr(value, "get_object") else value
        if (
            isinstance(value, str)
            and value.strip()
            and value.strip().lower() not in ("untitled", "unknown", "anonymous")
        ):
            metadata[name] = " ".join(value.split())
    raw_date = info.get("/CreationDate")
    raw_date = raw_date.get_object() if hasattr(raw_date, "get_object") else raw_date
    if isinstance(raw_date, str) and raw_date.strip():
        parsed = pdf_date(raw_date)
        if parsed:
            metadata["date"] = parsed
        else:
            notes.append(f"Info /CreationDate {raw_date[:40]!r} is not a date; not used")
    return metadata


_PDF_DATE = re.compile(r"^\s*(?:D:)?(\d{4})(?:(\d{2})(\d{2})?)?")
_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{2})(?:-(\d{2}))?")


def pdf_date(value: str) -> str | None:
    """ISO 8601 (yyyy-mm-dd, or shorter when the PDF says less) from a PDF date string "D:YYYYMMDDHHmmSS..."."""
    match = _ISO_DATE.match(value) or _PDF_DATE.match(value)
    if not match:
        return None
    year, month, day = (int(part) if part else None for part in match.groups())
    try:
        date(year, month or 1, day or 1)
    except ValueError:
        return None
    if year < 1000:
        return None
    if month is None:
        return f"{year:04d}"
    if day is None:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _pages_list(pages: dict[int, Any]) -> str:
    """ "page 3 has" or "pages 1, 2 and 5 have", the subject of a note."""
    numbers = sorted(index + 1 for index in pages)
    if len(numbers) == 1:
        return f"page {numbers[0]} has"
    shown = ", ".join(str(n) for n in numbers[:20])
    more = f" and {len(numbers) - 20} more" if len(numbers) > 20 else ""
    return f"pages {shown}{more} have"
