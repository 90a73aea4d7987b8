"""OCR fidelity: the archive's extraction of page scans against bare Tesseract, on real scans with ground truths.

    .venv/bin/python bench/ocr_bench.py                         # the whole set, a table on stdout
    .venv/bin/python bench/ocr_bench.py --json-out bench/runs/ocr.json

The set (tests/corpus/real/README.md says where each file comes from, its licence and its checksum):

  real      Tesseract's and OCRmyPDF's own test scans: phototest (upright, and turned 180, left and right),
            eurotext, two UNLV-ISRI magazine pages, the two-column LinnSequencer page; as scan-only PDFs, that page
            skewed (skew.pdf), skewed on a /Rotate'd page (rotated_skew.pdf), and turned four ways (cardinal.pdf)
  worn      the first 1,000 characters of each of the five seed texts, rendered at 200 dpi (DejaVu Sans 10 pt) and
            worn (tests/formats_util.py worn_scan: blur, faded ink, yellowed and unevenly lit paper, grain, specks,
            JPEG): mild, moderate and heavy

For each page: the character error rate of the archive's text (archive.extract.extract, then normalise_text, as
an ingest makes it) and of bare Tesseract's (`tesseract IMAGE stdout -l eng`; a PDF page rendered first as the
archive does, `pdftoppm -r 300 -gray`), each against the page's ground truth. Both texts and the truth are
compared after the same normalisation (normalise_text, typographic quotes and dashes as ASCII, whitespace runs
as one space), so what differs is the OCR alone. Levenshtein distance by RapidFuzz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from gitrev import code_version  # noqa: E402 (bench/, beside this script)

REAL = REPO / "tests" / "corpus" / "real"
SEEDS = REPO / "tests" / "corpus" / "seeds"
# (file, ground truth, what it shows); a PDF's pages are each compared with the truth.
REAL_SET = [
    ("phototest.tif", "phototest.txt", "upright"),
    ("phototest-rotated-180.png", "phototest.txt", "turned 180"),
    ("phototest-rotated-L.png", "phototest.txt", "turned 90 left"),
    ("phototest-rotated-R.png", "phototest.txt", "turned 90 right"),
    ("eurotext.tif", "eurotext.txt", "upright"),
    ("8071_093.3B.tif", "8071_093.3B.txt", "upright"),
    ("8087_054.3B.tif", "8087_054.3B.txt", "upright"),
    ("linn.png", "linn.txt", "upright"),
    ("skew.pdf", "linn.txt", "skewed"),
    ("rotated_skew.pdf", "linn.txt", "skewed"),
    ("cardinal.pdf", "linn.txt", "turned 0, 90, 180, 270"),
]
WEAR_LEVELS = ("mild", "moderate", "heavy")
_FOLD = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "\u2014": "-",
                       "\u2013": "-"})


def cer(text: str, truth: str) -> float:
    from rapidfuzz.distance import Levenshtein

    from archive.normalise import normalise_text

    def form(value: str) -> str:
        return " ".join(normalise_text(value).translate(_FOLD).split())

    text, truth = form(text), form(truth)
    return Levenshtein.distance(text, truth) / max(1, len(truth))


def bare_tesseract(data: bytes, suffix: str) -> list[str]:
    """Each page's text by bare Tesseract; a PDF's pages rendered as the archive renders them."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as work:
        source = Path(work) / f"input{suffix}"
        source.write_bytes(data)
        if suffix != ".pdf":
            images = [source]
        else:
            subprocess.run(["pdftoppm", "-r", "300", "-gray", "-png", str(source), str(Path(work) / "page")],
                           check=True, capture_output=True)
            images = sorted(Path(work).glob("page*.png"))
        return [subprocess.run(["tesseract", str(path), "stdout", "-l", "eng"], capture_output=True, env=env,
                               check=True).stdout.decode("utf-8", "replace") for path in images]


def archive_text(data: bytes) -> tuple[list[str], dict]:
    """Each page's text as the archive extracts it, and its OCR quality."""
    from archive.extract import extract
    from archive.identify import identify

    extracted = extract(data, identify(data))
    quality = extracted.ocr
    return extracted.text.split("\f"), {
        "ocr_confidence": quality.confidence if quality else None,
        "dictionary_share": quality.dictionary_share if quality else None,
        "low_pages": quality.low_pages if quality else None,
        "notes": extracted.notes,
    }


def pages() -> list[tuple[str, str, str, bytes, str, str]]:
    """(set, name, what, bytes, suffix, truth) of every item."""
    from tests.formats_util import excerpt, worn_scan

    items = []
    for name, truth, what in REAL_SET:
        items.append(("real", name, what, (REAL / name).read_bytes(), Path(name).suffix,
                      (REAL / truth).read_text(encoding="utf-8")))
    for number, seed in enumerate(sorted(SEEDS.glob("*.txt"))):
        truth = excerpt(seed.read_text(encoding="utf-8"), 1000)
        for level in WEAR_LEVELS:
            items.append(("worn", f"{seed.stem[:3]}-{level}.jpg", f"{level}, 200 dpi JPEG",
                          worn_scan(truth, level=level, dpi=200, seed=number), ".jpg", truth))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--only", choices=("real", "worn"))
    args = parser.parse_args()

    rows = []
    for kind, name, what, data, suffix, truth in pages():
        if args.only and kind != args.only:
            continue
        started = time.monotonic()
        bare = bare_tesseract(data, suffix)
        bare_seconds = time.monotonic() - started
        started = time.monotonic()
        ours, quality = archive_text(data)
        ours_seconds = time.monotonic() - started
        for number, (bare_text, our_text) in enumerate(zip(bare, ours), start=1):
            row = {"set": kind, "file": name, "page": number, "what": what, "bare_cer": round(cer(bare_text, truth), 4),
                   "archive_cer": round(cer(our_text, truth), 4), "bare_seconds": round(bare_seconds / len(bare), 2),
                   "archive_seconds": round(ours_seconds / len(ours), 2), **quality}
            rows.append(row)
            print(f"{kind:5} {name:28} p{number} {what:24} bare {row['bare_cer']:.4f}  archive {row['archive_cer']:.4f}"
                  f"  confidence {quality['ocr_confidence']}  dictionary {quality['dictionary_share']}"
                  f"  low {quality['low_pages']}", flush=True)
    summary = {}
    for kind in ("real", "worn"):
        chosen = [r for r in rows if r["set"] == kind]
        if chosen:
            summary[kind] = {"pages": len(chosen),
                             "bare_mean_cer": round(statistics.mean(r["bare_cer"] for r in chosen), 4),
                             "archive_mean_cer": round(statistics.mean(r["archive_cer"] for r in chosen), 4)}
    every = rows
    summary["all"] = {"pages": len(every), "bare_mean_cer": round(statistics.mean(r["bare_cer"] for r in every), 4),
                      "archive_mean_cer": round(statistics.mean(r["archive_cer"] for r in every), 4)}
    for kind, figures in summary.items():
        print(f"{kind}: {figures['pages']} pages, mean CER bare Tesseract {figures['bare_mean_cer']:.4f}, "
              f"archive {figures['archive_mean_cer']:.4f}")
    if args.json_out:
        from archive.extract.image import OcrSettings, find_tesseract

        result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {platform.system()}",
                  "python": platform.python_version(), "tesseract": find_tesseract(OcrSettings()).version,
                  "code": code_version(REPO), "summary": summary, "pages": rows}
        args.json_out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")



if __name__ == "__main__":
    main()
