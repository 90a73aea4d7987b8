"""OCR of real and worn page scans: turned upright, straightened, denoised where noisy; its ALTO and quality kept.

The real pages are Tesseract's and OCRmyPDF's own test scans (tests/corpus/real/README.md). Needs the tesseract
command with its English and orientation (osd) data, and pdftoppm; the Makefile installs them.
"""

from __future__ import annotations

import io
import random
import shutil
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lxml import etree
from PIL import Image

from archive.audit import referenced_objects
from archive.extract import extract, image
from archive.extract.cleanup import NOISY, find_skew, noise_level
from archive.extract.ocrquality import MIN_DICTIONARY_SHARE
from archive.fixity import sha256_hex
from archive.identify import identify
from archive.ingest import process_batch
from archive.normalise import normalise_text
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import LocalStore
from tests.formats_util import character_error_rate, excerpt, font_path, png_bytes, render_page_image, worn_scan

REAL = Path(__file__).resolve().parent / "corpus" / "real"
ALTO = "{http://www.loc.gov/standards/alto/ns-v3#}"

pytestmark = [
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (the Makefile does)"),
    pytest.mark.skipif(font_path() is None, reason="DejaVu Sans is not installed (the Makefile does)"),
]


@cache
def read(name: str, cleanup: bool = True):
    data = (REAL / name).read_bytes() if (REAL / name).exists() else _made[name]
    if cleanup:
        return extract(data, identify(data))
    return image.extract(data, identify(data), settings=image.OcrSettings(cleanup=False))


_made: dict[str, bytes] = {}


def cer(text: str, reference: str) -> float:
    """Both as the archive normalises text, typographic quotes as the ground truths write them."""
    fold = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": "-"})
    return character_error_rate(normalise_text(text).translate(fold), normalise_text(reference).translate(fold))


# -- orientation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, turned", [("phototest-rotated-180.png", 180), ("phototest-rotated-L.png", 90),
                                          ("phototest-rotated-R.png", 270)])
def test_a_real_page_turned_any_way_reads_as_the_upright_page(name, turned):
    truth = (REAL / "phototest.txt").read_text()
    upright = cer(read("phototest.tif").text, truth)
    result = read(name)
    assert cer(result.text, truth) <= upright + 0.02
    assert f"turned {turned} degrees clockwise (Tesseract OSD, confidence" in " ".join(result.notes)
    assert result.ocr.low_pages == []


def test_bare_tesseract_reads_an_upside_down_page_as_garbage_which_is_flagged():
    result = read("phototest-rotated-180.png", cleanup=False)
    assert cer(result.text, (REAL / "phototest.txt").read_text()) > 0.5
    assert result.ocr.low_pages == [1]  # never garbage presented as text unflagged


# -- skew --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [-7.0, -2.5, 1.0, 4.0, 12.0])
def test_the_skew_of_a_page_is_measured_to_a_tenth_of_a_degree(angle):
    import numpy as np

    page = render_page_image(excerpt(_seed(), 600), dpi=150)
    skewed = page.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    assert find_skew(np.asarray(skewed)) == pytest.approx(-angle, abs=0.1)
    assert find_skew(np.asarray(page)) == 0.0


def test_a_skewed_page_reads_within_0_02_of_the_same_page_straight():
    reference = excerpt(_seed(), 500)
    page = render_page_image(reference)
    _made["straight.png"] = png_bytes(page)
    _made["skewed.png"] = png_bytes(page.rotate(4, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255))
    straight, skewed = read("straight.png"), read("skewed.png")
    assert cer(skewed.text, reference) <= cer(straight.text, reference) + 0.02
    assert "deskewed by -4.00 degrees (projection profile)" in " ".join(skewed.notes)
    assert "deskewed" not in " ".join(straight.notes)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm is not installed (the Makefile does)")
def test_a_real_skewed_scan_only_pdf_is_straightened():
    result = read("skew.pdf")
    assert cer(result.text, (REAL / "linn.txt").read_text()) < 0.02  # bare Tesseract: 0.40
    assert "deskewed by +1.90 degrees" in " ".join(result.notes)


# -- worn scans --------------------------------------------------------------------------------------------------


def test_noise_is_measured_on_the_paper_not_the_print():
    import numpy as np

    assert noise_level(np.asarray(render_page_image("Clean print on clean paper."))) < 0.5
    worn = Image.open(io.BytesIO(worn_scan("Grainy paper.", level="moderate")))
    assert noise_level(np.asarray(worn.convert("L"))) > NOISY


def test_a_worn_200_dpi_jpeg_reads_at_under_half_the_error_of_bare_tesseract():
    reference = excerpt(_seed(), 600)
    _made["worn.jpg"] = worn_scan(reference, level="moderate", dpi=200, seed=3)
    cleaned, bare = cer(read("worn.jpg").text, reference), cer(read("worn.jpg", cleanup=False).text, reference)
    assert cleaned <= 0.005 and cleaned <= bare / 2, (cleaned, bare)
    assert "3x3 median filter (noise" in " ".join(read("worn.jpg").notes)


# -- OCR quality -------------------------------------------------------------------------------------------------


def test_the_alto_keeps_every_word_with_its_box_and_confidence_and_the_clean_up():
    result = read("phototest-rotated-180.png")
    root = etree.fromstring(result.ocr.alto)
    pages = root.findall(f".//{ALTO}Page")
    assert [page.get("PHYSICAL_IMG_NR") for page in pages] == ["1"]
    strings = root.findall(f".//{ALTO}String")
    words = [s.get("CONTENT") for s in strings]
    assert " ".join(words) == " ".join(normalise_text(result.text).split())
    assert all(0 <= float(s.get("WC")) <= 1 and int(s.get("WIDTH")) > 0 for s in strings)
    assert result.ocr.confidence == pytest.approx(sum(float(s.get("WC")) for s in strings) / len(strings), abs=1e-4)
    steps = root.find(f".//{ALTO}preProcessingStep/{ALTO}processingStepSettings").text
    assert steps.startswith("page 1: turned 180 degrees clockwise")
    assert "/tmp" not in result.ocr.alto.decode()  # no temporary file name: the same scan gives the same bytes
    data = (REAL / "phototest-rotated-180.png").read_bytes()
    assert extract(data, identify(data)).ocr.alto == result.ocr.alto


def _nonsense_page() -> bytes:
    rng = random.Random(5)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(rng.randint(3, 8))) for _ in range(60)]
    return png_bytes(render_page_image(" ".join(words)))


def test_a_page_of_words_no_dictionary_knows_is_low_quality():
    _made["nonsense.png"] = _nonsense_page()
    result = read("nonsense.png")
    assert result.ocr.dictionary_share < MIN_DICTIONARY_SHARE
    assert result.ocr.low_pages == [1]
    assert "low OCR quality on page 1" in result.notes[-1]


def test_ingest_publishes_the_quality_keeps_the_alto_and_flags_low_quality(tmp_path):
    folder = tmp_path / "accession"
    folder.mkdir()
    shutil.copy(REAL / "phototest-rotated-180.png", folder / "upside-down.png")
    (folder / "nonsense.png").write_bytes(_nonsense_page())
    (folder / "letter.txt").write_text("A typed letter of the harbour committee.\n")
    store = LocalStore(tmp_path / "store")
    source = open_source(folder)
    run = RunContext(new_run_id(), None, str(folder))
    summary = process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda ref: ref.path))
    documents_part = next(p for p in summary.parts if p.dataset == "documents")
    rows = {row["source_path"]: row for row in pq.read_table(tmp_path / "store" / documents_part.key).to_pylist()}

    scan, nonsense, letter = rows["upside-down.png"], rows["nonsense.png"], rows["letter.txt"]
    assert scan["low_ocr_quality"] is False and scan["ocr_confidence"] > 0.9 and scan["dictionary_share"] > 0.95
    alto = (tmp_path / "store" / scan["ocr_key"]).read_bytes()
    assert scan["ocr_key"].endswith(sha256_hex(alto)) and alto.startswith(b"<?xml")
    assert nonsense["low_ocr_quality"] is True and nonsense["title"] is None
    assert letter["ocr_key"] is None and letter["ocr_confidence"] is None and letter["low_ocr_quality"] is None
    events = pq.read_table(tmp_path / "store" / next(p for p in summary.parts if p.dataset == "events").key)
    normalised = {e["source_path"]: e for e in events.to_pylist() if e["event_type"] == "normalization"}
    assert normalised["nonsense.png"]["outcome"] == "warning"
    assert f"ALTO of the OCR (word boxes and confidences) stored at {scan['ocr_key']}" in \
        normalised["upside-down.png"]["detail"]
    assert "turned 180 degrees clockwise" in normalised["upside-down.png"]["detail"]
    # Verify and gc count the ALTO as referenced by the run's documents.
    manifest = {"run_id": run.run_id, "parts": [{"dataset": p.dataset, "key": p.key} for p in summary.parts]}
    keys = referenced_objects(store, [manifest], {p.key for p in summary.parts}).column("object_key").to_pylist()
    assert scan["ocr_key"] in keys and nonsense["ocr_key"] in keys


def _seed() -> str:
    return (Path(__file__).resolve().parent / "corpus" / "seeds" / "002_bdbfc77629c1cea2.txt").read_text()
