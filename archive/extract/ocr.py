"""OCR of page images by the Tesseract command: each page cleaned first (cleanup.py), then one Tesseract run over
them all, which writes the text and the ALTO of every page (word boxes and confidences, ocrquality.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import ExtractionError
from .budget import Meter
from .cleanup import clean_page
from .ocrquality import OcrQuality, assess

if TYPE_CHECKING:
    from .image import OcrSettings, Tesseract

# Tesseract's binarisation by Sauvola's adaptive threshold (Leptonica's) instead of its global Otsu default.
SAUVOLA = ("-c", "thresholding_method=2")


@dataclass
class OcrOutput:
    texts: list[str]  # each page's text, in order
    quality: OcrQuality
    steps: list[list[str]] = field(default_factory=list)  # each page's clean-up, with its parameters

    def notes(self) -> list[str]:
        """The clean-up of the pages that had any, and the quality, for the normalisation event."""
        cleaned = [f"page {number}: {', '.join(steps)}" for number, steps in
                   zip((p.number for p in self.quality.pages), self.steps) if steps]
        return ([f"clean-up before OCR ({'; '.join(cleaned)})"] if cleaned else []) + [self.quality.summary()]


def ocr_files(paths: list[Path], tesseract: Tesseract, settings: OcrSettings, meter: Meter,
              numbers: list[int] | None = None) -> OcrOutput:
    """The text and ALTO of each page image (PNG), in order, within the OCR budget of as many pages (or the file's
    time left); numbers: each image's page number in the document (1, 2... when None). The images are cleaned
    in place first where settings.cleanup says so."""
    numbers = numbers or list(range(1, len(paths) + 1))
    if not paths:
        return OcrOutput([], OcrQuality(b""))
    steps = [_clean(path, tesseract, settings, meter) if settings.cleanup else [] for path in paths]
    work = paths[0].parent
    listing = work / "pages.txt"
    listing.write_text("".join(f"{path.name}\n" for path in paths), encoding="utf-8")
    # Tesseract writes a form feed after each page, so n pages give n parts.
    text, alto = _run_tesseract(listing.name, work, len(paths), tesseract, settings, meter)
    parts = text.split("\f")
    if parts and not parts[-1].strip() and len(parts) == len(paths) + 1:
        parts.pop()
    if len(parts) != len(paths):
        # Not the output shape this Tesseract version is known for: page by page instead.
        runs = [_run_tesseract(path.name, work, 1, tesseract, settings, meter) for path in paths]
        parts = [t.replace("\f", "") for t, _ in runs]
        alto = _join_alto([a for _, a in runs])
    quality = assess(alto, numbers, settings.languages, steps)
    return OcrOutput([part.rstrip() for part in parts], quality, steps)


def _clean(path: Path, tesseract: Tesseract, settings: OcrSettings, meter: Meter) -> list[str]:
    from PIL import Image

    meter.check(f" cleaning {path.name} for OCR")
    with Image.open(path) as opened:
        dpi = opened.info.get("dpi")
        opened.load()
        page = opened.copy()
    cleaned, done = clean_page(page, path.parent, path.stem, tesseract.path, meter)
    steps = done.steps()
    if done.rotated or done.skew or done.denoised:
        cleaned.save(path, format="PNG", **({"dpi": dpi} if dpi else {}))
    return steps


def _run_tesseract(source: str, work: Path, pages: int, tesseract: Tesseract, settings: OcrSettings, meter: Meter
                   ) -> tuple[str, bytes]:
    """(text, ALTO) of the image or list of images source (a name in work)."""
    timeout = meter.command_timeout(pages, f" before OCR of {_count(pages, 'page')}")
    env = dict(os.environ)
    env.setdefault("OMP_THREAD_LIMIT", str(settings.threads))
    base = work / "ocr-output"
    command = [tesseract.path, source, base.name, "-l", settings.languages,
               *(SAUVOLA if settings.cleanup else ()), "txt", "alto"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, env=env, cwd=work, check=False)
    except subprocess.TimeoutExpired:
        raise meter.overran(f"OCR by Tesseract of {_count(pages, 'page')}", pages, timeout) from None
    except OSError as exc:
        raise ExtractionError("needs-ocr", f"Tesseract at {tesseract.path} does not run: {exc}") from None
    text_file, alto_file = base.with_suffix(".txt"), base.with_suffix(".xml")
    if result.returncode != 0 or not text_file.exists() or not alto_file.exists():
        stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ExtractionError(
            "needs-ocr", f"Tesseract {tesseract.version} failed (exit {result.returncode}): {' / '.join(stderr[-3:])}"
        )
    text, alto = text_file.read_bytes().decode("utf-8", "replace"), alto_file.read_bytes()
    text_file.unlink()
    alto_file.unlink()
    return text, alto


def _join_alto(documents: list[bytes]) -> bytes:
    """One ALTO of the Pages of several (each of one page), in order."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    first = etree.fromstring(documents[0], parser)
    layout = next(element for element in first.iter() if etree.QName(element).localname == "Layout")
    for document in documents[1:]:
        tree = etree.fromstring(document, parser)
        for page in [element for element in tree.iter() if etree.QName(element).localname == "Page"]:
            layout.append(page)
    return etree.tostring(first, xml_declaration=True, encoding="UTF-8")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
