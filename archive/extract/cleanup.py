"""A scanned page made ready for OCR: turned the right way up, straightened and, where it is noisy, denoised.

Each step is measured on the page and done only where it helps, and says what it did with its parameters (the
normalisation event carries them):

- orientation: Tesseract's own orientation and script detection (OSD, `--psm 0`) on the page; a page it finds
  turned by 90, 180 or 270 degrees with a confidence of at least MIN_OSD_CONFIDENCE is turned back. An upside-down
  page read as it is gives garbage (a character error rate of 0.82 on Tesseract's phototest page).
- skew: the angle, within MAX_SKEW degrees, at which the page's ink makes the sharpest horizontal profile (lines
  of text fall in few rows), as Leptonica's pixFindSkew measures it: on a copy at about 1,600 pixels, coarse to
  fine in 0.05 degree steps. A page more than MIN_SKEW degrees off is rotated back (bicubic, white fill).
  Tesseract follows lines only to about a degree: a page 3 degrees off reads at a character error rate of 0.40.
- noise: the noise in the page's flat areas (Immerkaer's estimator, taken as a robust median): a page noisier
  than NOISY (grey levels) has a 3x3 median filter, which takes paper grain and speckle off before Tesseract
  binarises it. Clean and bitonal scans measure 0 and are left as they are.

Binarisation itself is Tesseract's, by Sauvola's adaptive method (Leptonica's, `-c thresholding_method=2`,
image.py), which holds on yellowed and unevenly lit paper where its default global Otsu threshold turns the page
black. What was measured, and why these choices: BENCHMARKS.md ("OCR of page scans").
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import ExtractionError

if TYPE_CHECKING:
    from PIL.Image import Image

    from .budget import Meter

MIN_OSD_CONFIDENCE = 5.0  # Tesseract's orientation confidence; upright pages it turned measured 9 and above
MAX_SKEW = 15.0  # degrees either way searched for the skew of a page
MIN_SKEW = 0.3  # degrees: less than this is left to Tesseract
NOISY = 2.5  # grey levels of noise above which a page is median-filtered
SKEW_PIXELS = 1600  # the longer side of the copy the skew is measured on
_ROTATE = re.compile(rb"Rotate:\s*(\d+)")
_CONFIDENCE = re.compile(rb"Orientation confidence:\s*([0-9.]+)")


@dataclass
class Cleanup:
    """What was done to one page, with the measurements that decided it."""

    rotated: int = 0  # degrees clockwise the page was turned (0, 90, 180, 270)
    osd_confidence: float | None = None  # Tesseract's orientation confidence, None where it could not tell
    skew: float = 0.0  # degrees the page was rotated to straighten it (positive: anticlockwise)
    noise: float = 0.0  # estimated noise, grey levels
    denoised: bool = False
    notes: list[str] = field(default_factory=list)  # why a step was not done, where that is news

    def steps(self) -> list[str]:
        """The steps done, each with its parameters, for the event's detail."""
        done = []
        if self.rotated:
            done.append(f"turned {self.rotated} degrees clockwise (Tesseract OSD, confidence "
                        f"{self.osd_confidence:.1f})")
        if self.skew:
            done.append(f"deskewed by {self.skew:+.2f} degrees (projection profile)")
        if self.denoised:
            done.append(f"3x3 median filter (noise {self.noise:.1f} grey levels)")
        return done + self.notes


def clean_page(page: Image, work: Path, name: str, tesseract_path: str, meter: Meter, *, orientation: bool = True
               ) -> tuple[Image, Cleanup]:
    """The greyscale page ("L" or "1") cleaned for OCR, and what was done to it."""
    import numpy as np

    done = Cleanup()
    grey = page if page.mode == "L" else page.convert("L")
    pixels = np.asarray(grey)
    if page.mode == "L":
        done.noise = noise_level(pixels)
        if done.noise > NOISY:
            import cv2

            pixels = cv2.medianBlur(pixels, 3)
            done.denoised = True
            grey = _image(pixels)
    if orientation:
        turn, confidence, why = detect_orientation(grey, work / f"{name}-osd.png", tesseract_path, meter)
        done.osd_confidence = confidence
        if why:
            done.notes.append(why)
        elif turn and confidence is not None and confidence >= MIN_OSD_CONFIDENCE:
            grey = grey.rotate(-turn, expand=True)  # (Pillow turns anticlockwise)
            pixels = np.asarray(grey)
            done.rotated = turn
        elif turn:
            done.notes.append(f"Tesseract OSD says turned {turn} degrees with confidence {confidence:.1f}, below "
                              f"{MIN_OSD_CONFIDENCE:g}: not turned")
    angle = find_skew(pixels)
    if abs(angle) >= MIN_SKEW:
        from PIL import Image as PILImage

        grey = grey.rotate(angle, resample=PILImage.Resampling.BICUBIC, expand=True, fillcolor=255)
        done.skew = round(angle, 2)
    return grey, done


def _image(pixels) -> Image:
    from PIL import Image as PILImage

    return PILImage.fromarray(pixels, mode="L")


def noise_level(pixels) -> float:
    """The standard deviation of the page's noise in grey levels: Immerkaer's Laplacian-difference operator, its
    median absolute response (so text edges, a minority of pixels, do not count) scaled to a Gaussian's sigma."""
    import cv2
    import numpy as np

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = np.abs(cv2.filter2D(pixels.astype(np.float32), -1, kernel))
    # |N(0, 36 s^2)| has median 0.6745 * 6 s: the response's median over that is the noise's s.
    return float(np.median(response)) / (6 * 0.6745)


def find_skew(pixels, max_angle: float = MAX_SKEW) -> float:
    """Degrees to rotate the page anticlockwise (Pillow's sense) to make its lines of text horizontal; 0 where the
    page has too little ink to tell."""
    import cv2
    import numpy as np

    height, width = pixels.shape
    scale = min(1.0, SKEW_PIXELS / max(height, width))
    small = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else pixels
    _, ink = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ys, xs = np.nonzero(ink)
    if len(ys) < 200 or len(ys) > 0.5 * ink.size:  # blank, or a picture rather than text
        return 0.0
    if len(ys) > 300_000:
        step = len(ys) // 300_000 + 1
        ys, xs = ys[::step], xs[::step]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def sharpness(angle: float) -> float:
        # Rows of the page rotated by angle: Leptonica's differential square sum of its row profile.
        theta = math.radians(angle)
        rows = ys * math.cos(theta) + xs * math.sin(theta)
        profile = np.bincount((rows - rows.min()).astype(np.int64)).astype(np.float64)
        return float((np.diff(profile) ** 2).sum())

    best = max(np.arange(-max_angle, max_angle + 0.01, 0.5), key=sharpness)
    best = max(np.arange(best - 0.5, best + 0.51, 0.05), key=sharpness)
    if sharpness(best) < 1.02 * sharpness(0.0):  # no clear gain: leave the page as it is
        return 0.0
    return round(-float(best), 2)


def detect_orientation(page: Image, path: Path, tesseract_path: str, meter: Meter
                       ) -> tuple[int, float | None, str]:
    """(degrees the page is turned clockwise, Tesseract's confidence, why it could not tell or "")."""
    page.save(path, format="PNG")
    timeout = meter.command_timeout(1, " before detecting the orientation of a page")
    try:
        result = subprocess.run([tesseract_path, str(path), "stdout", "--psm", "0"], capture_output=True,
                                timeout=timeout, check=False, env=_one_thread())
    except subprocess.TimeoutExpired:
        raise meter.overran("orientation detection by Tesseract of 1 page", 1, timeout) from None
    except OSError as exc:
        raise ExtractionError("needs-ocr", f"Tesseract at {tesseract_path} does not run: {exc}") from None
    finally:
        path.unlink(missing_ok=True)
    output = result.stdout + result.stderr
    turn, confidence = _ROTATE.search(output), _CONFIDENCE.search(output)
    if turn is None or confidence is None:
        last = output.decode("utf-8", "replace").strip().splitlines()
        return 0, None, f"orientation not detected ({last[-1] if last else 'Tesseract OSD said nothing'})"
    degrees = int(turn.group(1)) % 360
    return (degrees if degrees in (90, 180, 270) else 0), float(confidence.group(1)), ""


def _one_thread() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("OMP_THREAD_LIMIT", "1")
    return env
