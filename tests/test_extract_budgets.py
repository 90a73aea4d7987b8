"""What extracting one file may cost (archive/extract/budget.py): seconds a file and a page of OCR, characters of
text. Over a budget the file is quarantined too-costly, its detail naming the budget and its setting; a parser's
own limit never cuts a text short without a word."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import time

import pypdf
import pytest
from PIL import Image

from archive.errors import ConfigurationError
from archive.extract import ExtractionError, extract, image, pdf
from archive.extract.budget import MIN_TEXT_CHARS, TOO_COSTLY, Budgets, Meter
from archive.identify import identify
from archive.ingest.stages import Quarantine, extract_text
from tests.formats_util import (
    form_bomb_pdf,
    png_bytes,
    render_page_image,
    render_scanned_pdf,
    unclosed_font_page,
)

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng (the Makefile does)",
)


def too_costly(data: bytes, budgets: Budgets | None = None) -> tuple[ExtractionError, float]:
    """The error extracting data within budgets ends in, and the seconds it took to get there."""
    started = time.monotonic()
    with pytest.raises(ExtractionError) as caught:
        extract(data, identify(data), budgets)
    assert caught.value.reason == "too-costly", caught.value
    return caught.value, time.monotonic() - started


# -- a PDF that invokes one form XObject 200 times ---------------------------------------------------------------


def test_a_form_invoked_200_times_stops_at_the_time_budget():
    bomb = form_bomb_pdf()  # 1.6 KB: 20 million characters, some 3 minutes of pypdf
    assert len(bomb) < 2500
    error, seconds = too_costly(bomb, Budgets(seconds=1, text_per_byte=1e6))  # (text budget out of reach)
    stopped = re.match(r"text extraction stopped after (\d+\.\d) s at page 1 of 1: ", error.detail)
    assert stopped and 1.0 <= float(stopped.group(1)) <= seconds + 0.05, error.detail
    assert error.detail.endswith("(--extract-seconds 1)")
    # Stopped at the budget's first check past 1 s: seconds on an idle machine, never the minutes the text takes.
    assert seconds < 30


def test_the_same_pdf_stops_at_its_output_budget_long_before_its_time_budget():
    bomb = form_bomb_pdf()
    budgets = Budgets(seconds=60, text_per_byte=10, min_text_chars=20_000)
    error, seconds = too_costly(bomb, budgets)
    allowed = max(20_000, 10 * len(bomb))
    assert f"over the output budget of {allowed:,} characters for a file of {len(bomb):,} bytes" in error.detail
    assert "--text-per-byte 10)" in error.detail and "at page 1 of 1" in error.detail
    assert seconds < 10  # (at about 10 us a character: a fraction of a second)


@pytest.mark.parametrize("chars_per_show", [2, 100])
def test_default_budgets_quarantine_a_twenty_million_character_pdf_in_a_batch(chars_per_show):
    bomb = form_bomb_pdf(chars_per_show=chars_per_show)  # 200 x 100,000 characters from 2 KB or less
    started = time.monotonic()
    outcome = extract_text(bomb, identify(bomb))  # the batch's stage: a Quarantine, nothing raised
    seconds = time.monotonic() - started
    print(f"{len(bomb):,} bytes, {chars_per_show} characters a show: {outcome.reason} after {seconds:.2f} s")
    assert isinstance(outcome, Quarantine) and outcome.reason == "too-costly"
    allowed = max(MIN_TEXT_CHARS, 100 * len(bomb))
    assert f"over the output budget of {allowed:,} characters for a file of {len(bomb):,} bytes" in outcome.detail
    assert outcome.detail.endswith("--text-per-byte 100)")
    assert seconds < 20  # (the default time budget is 600 s; the whole text would take minutes)


def test_pypdf_s_own_form_limit_does_not_cut_a_page_short():
    many = form_bomb_pdf(invocations=30, chars_per_form=10, chars_per_show=10)  # each form shows "AAAAAAAAA "
    with pypdf.apply_configuration(xform_maximum_invocations_per_extraction=10):
        by_pypdf = pypdf.PdfReader(io.BytesIO(many)).pages[0].extract_text()
        extracted = extract(many, identify(many))
    assert by_pypdf.count("AAAAAAAAA") == 10  # pypdf alone stops reading forms at its limit, with a log line
    assert extracted.text.count("AAAAAAAAA") == 30


def test_a_form_limit_that_holds_quarantines_the_page_instead_of_cutting_it(monkeypatch):
    monkeypatch.setattr(pdf, "form_limit_lifted", contextlib.nullcontext)  # a pypdf whose limit cannot be lifted
    many = form_bomb_pdf(invocations=30, chars_per_form=10, chars_per_show=10)
    with pypdf.apply_configuration(xform_maximum_invocations_per_extraction=10):
        error, _ = too_costly(many)
    assert "page 1 of 1 invokes XObjects 30 times; pypdf reads no more than 10 form XObjects a page" in error.detail


def test_a_page_that_shows_no_text_is_not_parsed_for_the_meter(monkeypatch):
    # The meter's visitor would make pypdf parse a drawing of a million operators that it otherwise skips.
    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    drawing = pypdf.generic.DecodedStreamObject()
    drawing.set_data(b"0 0 m 600 700 l S\n" * 1000)
    page[pypdf.generic.NameObject("/Contents")] = writer._add_object(drawing)
    buffer = io.BytesIO()
    writer.write(buffer)
    figure = buffer.getvalue()

    def parsed(*args, **kwargs):
        raise AssertionError("pypdf was asked for the text of a page that shows none")

    monkeypatch.setattr(pypdf.PageObject, "extract_text", parsed)
    assert "none of 1 page has a text layer" in pytest.raises(ExtractionError, extract, figure,
                                                              identify(figure)).value.detail


# -- HTML nested deeper than the parser's default limit ----------------------------------------------------------


def test_400_unclosed_font_tags_keep_every_paragraph():
    page = unclosed_font_page(400)  # nests 400 deep: libxml2's default limit of 256 would drop the rest
    text = extract(page, identify(page)).text
    missing = [n for n in range(1, 401) if f"Paragraph {n} of the story" not in text]
    assert not missing, f"{len(missing)} paragraphs lost, from {missing[0]}"


def test_nesting_beyond_the_parser_s_reach_is_too_costly_never_cut_short():
    page = unclosed_font_page(2100)
    error, seconds = too_costly(page)
    assert "the HTML parser (libxml2) stopped at line 1" in error.detail and "2048" in error.detail
    assert "text after that point would be lost" in error.detail
    assert seconds < 5


# -- OCR ---------------------------------------------------------------------------------------------------------


@needs_tesseract
def test_ocr_over_its_page_budget_is_too_costly():
    # The page's orientation detection (Tesseract OSD, before the OCR) is the first to run over.
    scan = png_bytes(render_page_image("A page of text that Tesseract would need a while to read."))
    error, seconds = too_costly(scan, Budgets(ocr_page_seconds=0.01))
    assert error.detail == ("orientation detection by Tesseract of 1 page did not finish within 0.01 s: over the "
                            "OCR budget of 0.01 s a page (--ocr-page-seconds 0.01)")
    assert seconds < 5


@needs_tesseract
def test_ocr_without_clean_up_over_its_page_budget_is_too_costly():
    scan = png_bytes(render_page_image("A page of text that Tesseract would need a while to read."))
    started = time.monotonic()
    with pytest.raises(ExtractionError) as caught:
        image.extract(scan, identify(scan), settings=image.OcrSettings(cleanup=False),
                      meter=Meter(Budgets(ocr_page_seconds=0.01), len(scan)))
    assert caught.value.reason == TOO_COSTLY
    assert caught.value.detail == ("OCR by Tesseract of 1 page did not finish within 0.01 s: over the OCR budget "
                                   "of 0.01 s a page (--ocr-page-seconds 0.01)")
    assert time.monotonic() - started < 5


@needs_tesseract
def test_rendering_a_page_for_ocr_counts_against_the_page_budget():
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed: apt-get install poppler-utils (the Makefile does)")
    scan = render_scanned_pdf([Image.new("L", (600, 800), 255)])
    error, _ = too_costly(scan, Budgets(ocr_page_seconds=0.001))
    assert error.detail.startswith("pdftoppm rendering page 1 did not finish within 0.001 s")
    assert error.detail.endswith("(--ocr-page-seconds 0.001)")


# -- the meter ---------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_command_gets_its_pages_budget_or_the_file_s_time_left_and_names_which_ran_out():
    clock = Clock()
    meter = Meter(Budgets(seconds=100, ocr_page_seconds=10), 5000, clock=clock)
    assert meter.command_timeout(3) == 30
    assert "over the OCR budget of 10 s a page (--ocr-page-seconds 10)" in meter.overran("OCR", 3, 30).detail
    clock.now += 95
    assert meter.command_timeout(3) == 5
    assert meter.overran("OCR", 3, 5).detail.endswith("(--extract-seconds 100)")
    clock.now += 6
    with pytest.raises(ExtractionError) as caught:
        meter.command_timeout(1, " before OCR of 1 page")
    assert caught.value.detail == ("text extraction stopped after 101.0 s before OCR of 1 page: over the time "
                                   "budget of 100 s a file (--extract-seconds 100)")


def test_characters_are_counted_against_the_larger_of_the_ratio_and_the_floor():
    meter = Meter(Budgets(text_per_byte=2, min_text_chars=10), size=100)
    meter.count(150)
    with pytest.raises(ExtractionError) as caught:
        meter.count(60, " at page 2 of 2")
    assert caught.value.detail.startswith("text extraction stopped at 210 characters at page 2 of 2: over the "
                                          "output budget of 200 characters for a file of 100 bytes")
    assert Meter(Budgets(text_per_byte=2, min_text_chars=10), size=1).max_chars == 10
    with pytest.raises(ExtractionError):
        Meter(Budgets(min_text_chars=10), size=0).finish("x" * 11)


@pytest.mark.parametrize("setting", [{"seconds": 0}, {"ocr_page_seconds": -1}, {"text_per_byte": float("nan")},
                                     {"min_text_chars": 0}])
def test_a_budget_of_nothing_is_refused_before_any_work(setting):
    with pytest.raises(ConfigurationError):
        Budgets(**setting)
