"""Scanned images: optical character recognition with the Tesseract command, guarded by Pillow.

Pillow opens the image first, only as the format identification named, and
refuses decompression bombs (by its own MAX_IMAGE_PIXELS check and by ours,
which holds even where a caller has switched Pillow's off) and corrupt bytes
before any pixel reaches the OCR engine; each page is then handed to Tesseract
as a normalised greyscale PNG.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..identify import Format
from . import Extracted, ExtractionError
from .budget import Meter
from .ocr import ocr_files

if TYPE_CHECKING:
    from PIL.Image import Image

# Pillow's own warning threshold (about 9,459 x 9,459): a 600 dpi newspaper
# page fits, a crafted image claiming billions of pixels does not.
MAX_IMAGE_PIXELS = 89_478_485
MAX_PAGES = 2000

# Pillow format names an identified media type may be opened as; Pillow is
# never left to guess, so a PNG cannot smuggle in one of its exotic decoders.
PILLOW_FORMATS = {
    "image/png": ("PNG",),
    "image/tiff": ("TIFF",),
    "image/jpeg": ("JPEG",),
    "image/gif": ("GIF",),
    "image/webp": ("WEBP",),
}

INSTALL_HINT = "install the tesseract-ocr and tesseract-ocr-{lang} packages and re-run the batch"


@dataclass(frozen=True)
class OcrSettings:
    """How OCR runs and the bounds on the work one file may cause."""

    tesseract_cmd: str = "tesseract"
    languages: str = "eng"  # Tesseract's -l argument, e.g. "eng+deu"
    max_pixels: int = MAX_IMAGE_PIXELS  # per page
    max_pages: int = MAX_PAGES
    # Tesseract's OpenMP threads fight each other when batches run side by
    # side; one thread per process gives more pages per second overall.
    threads: int = 1
    # Each page turned upright, straightened and denoised where it needs it, and binarised by Sauvola's method
    # (cleanup.py); False: the page as it is, to Tesseract's defaults.
    cleanup: bool = True


@dataclass(frozen=True)
class Tesseract:
    path: str
    version: str
    languages: frozenset[str]


def find_tesseract(settings: OcrSettings) -> Tesseract:
    """The Tesseract to use, or ExtractionError("needs-ocr") saying what is missing."""
    path = shutil.which(settings.tesseract_cmd)
    lang_hint = settings.languages.split("+")[0]
    if path is None:
        raise ExtractionError(
            "needs-ocr",
            f"Tesseract is not installed (no {settings.tesseract_cmd!r} command found); "
            + INSTALL_HINT.format(lang=lang_hint),
        )
    tesseract = _probe(path)
    missing = [lang for lang in settings.languages.split("+") if lang not in tesseract.languages]
    if missing:
        raise ExtractionError(
            "needs-ocr",
            f"Tesseract {tesseract.version} has no language data for {', '.join(missing)}; "
            + INSTALL_HINT.format(lang=missing[0]),
        )
    return tesseract


@cache
def _probe(path: str) -> Tesseract:
    try:
        version = subprocess.run([path, "--version"], capture_output=True, timeout=30, check=False)
        langs = subprocess.run([path, "--list-langs"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExtractionError("needs-ocr", f"Tesseract at {path} does not run: {exc}") from None
    # Tesseract 3 printed its version on stderr, later versions on stdout.
    banner = (version.stdout + version.stderr).decode("utf-8", "replace")
    match = re.search(r"tesseract\s+v?(\d[\w.\-]*)", banner, re.I)
    listed = langs.stdout.decode("utf-8", "replace").splitlines()[1:]
    return Tesseract(
        path=path,
        version=match.group(1) if match else "unknown",
        languages=frozenset(line.strip() for line in listed if line.strip()),
    )


def extract(data: bytes, fmt: Format, *, settings: OcrSettings = OcrSettings(), meter: Meter | None = None
            ) -> Extracted:
    """The OCR text of an image; the pages of a multi-page TIFF are separated by form feeds."""
    meter = meter or Meter(size=len(data))
    tesseract = find_tesseract(settings)
    resolutions: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="archive-ocr-") as workdir:
        pages: list[Path] = []
        for number, (page, dpi) in enumerate(_pages(data, fmt, settings), start=1):
            meter.check(f" decoding page {number}")
            path = Path(workdir) / f"page-{number:05d}.png"
            page.save(path, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
            pages.append(path)
            resolutions.add(f"{dpi} dpi" if dpi else "resolution unknown (estimated by Tesseract)")
        output = ocr_files(pages, tesseract, settings, meter)
    texts = output.texts
    text = "\f".join(texts)
    if not text.strip():
        raise ExtractionError(
            "no-text",
            f"Tesseract {tesseract.version} found no text in {count_of(len(texts), 'page')} of this {fmt.name}",
        )
    return Extracted(
        text=text,
        extractor="tesseract",
        extractor_version=tesseract.version,
        pages=len(texts),
        notes=[
            f"OCR by Tesseract {tesseract.version} (-l {settings.languages}{', Sauvola' if settings.cleanup else ''})"
            f" of {count_of(len(texts), 'page')}, " + ", ".join(sorted(resolutions)),
            *output.notes(),
        ],
        ocr=output.quality,
    )


def _pages(data: bytes, fmt: Format, settings: OcrSettings) -> Iterator[tuple[Image, int | None]]:
    """Each frame of the image as a greyscale page and its resolution, checked and decoded by Pillow."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ExtractionError("unsupported-format", "reading images needs Pillow: pip install pillow") from None

    formats = PILLOW_FORMATS.get(fmt.media_type)
    if formats is None:
        raise ExtractionError(
            "unsupported-format", f"{fmt.name} ({fmt.media_type}) is not an image format this extractor reads"
        )
    with pillow_errors(fmt):
        image = Image.open(io.BytesIO(data), formats=list(formats))
        frames = getattr(image, "n_frames", 1)
        if frames > settings.max_pages:
            raise ExtractionError("too-large", f"{fmt.name} has {frames} pages; the limit is {settings.max_pages}")
        for index in range(frames):
            image.seek(index)
            _check_size(image.size, settings, f"page {index + 1} of {frames}" if frames > 1 else "the image")
            image.load()
            # Cameras and some scanners store pages sideways with an orientation tag.
            yield greyscale_page(ImageOps.exif_transpose(image)), _dpi(image)


@contextmanager
def pillow_errors(fmt: Format) -> Iterator[None]:
    """Turns whatever Pillow raises on hostile or damaged bytes into a quarantine reason."""
    from PIL import Image

    try:
        yield
    except ExtractionError:
        raise
    except Image.DecompressionBombError as exc:
        raise ExtractionError("too-large", f"{fmt.name}: {exc}") from None
    except MemoryError:
        raise ExtractionError("too-large", f"{fmt.name}: not enough memory to decode the image") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any decoder error means corrupt
        # Decoders of untrusted bytes raise many types (OSError, SyntaxError,
        # ValueError, struct.error, EOFError...); each means the same thing here.
        raise ExtractionError("corrupt", f"{fmt.name} cannot be decoded: Pillow {type(exc).__name__}: {exc}") from None


def _check_size(size: tuple[int, int], settings: OcrSettings, what: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ExtractionError("corrupt", f"{what} claims a size of {width} x {height} pixels")
    if width * height > settings.max_pixels:
        raise ExtractionError(
            "too-large",
            f"{what} is {width} x {height} = {width * height:,} pixels; the limit is {settings.max_pixels:,} "
            "(a decompression bomb, or a scan too large to OCR in one piece)",
        )


def greyscale_page(image: Image) -> Image:
    """The page as Tesseract reads it best: 1-bit or 8-bit grey, transparency flattened onto white."""
    from PIL import Image as PILImage

    if image.mode in ("1", "L"):
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's I -> L conversion clips at 255 instead of scaling 16-bit samples.
        wide = image.convert("I")
        highest = wide.getextrema()[1]
        return (wide.point(lambda value: value * 255 / highest) if highest > 255 else wide).convert("L")
    if image.mode == "F":
        return image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("L")
    return image.convert("RGB").convert("L")


def _dpi(image: Image) -> int | None:
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        return None
    # Scanners write 1 or 72 when they do not know; Tesseract estimates better then.
    return value if 100 <= value <= 2400 else None


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
