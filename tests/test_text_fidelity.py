"""Text as it was meant: ligatures folded into their letters, text drawn twice read once, a locked PDF said so."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest

from archive.extract import ExtractionError, extract
from archive.identify import identify
from archive.ingest.stages import Quarantine, extract_text, normalisation_detail, normalised
from archive.normalise import ligature_count, normalise_text
from tests.formats_util import font_path

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def test_compatibility_ligatures_are_folded_into_their_letters():
    text = "De\ufb01nition of the \ufb02ow: e\ufb00ort, o\ufb03ce, ba\ufb04e, \ufb05ep, \ufb06ar"
    assert normalise_text(text) == "Definition of the flow: effort, office, baffle, step, star"
    assert normalise_text(normalise_text(text)) == normalise_text(text)
    assert ligature_count(text) == 7 and ligature_count("Definition") == 0


def test_other_compatibility_characters_are_left_as_written():
    # NFKC would fold these too, and change what the text says: x² is not x2, ½ not 1/2.
    text = "x\u00b2 \u00bd \uff21 \u2126 \u212b"
    assert normalise_text(text) == text.replace("\u2126", "\u03a9").replace("\u212b", "\u00c5")  # (NFC's own)


def _pdf(draw) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(TTFont("DejaVuSans", str(font_path())))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    pdf.setFont("DejaVuSans", 12)
    draw(pdf)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@pytest.mark.skipif(font_path() is None, reason="DejaVu Sans is not installed (the Makefile does)")
def test_a_pdf_s_ligature_glyphs_are_searchable_as_letters_and_the_folding_is_recorded():
    data = _pdf(lambda pdf: pdf.drawString(72, 700, "The De\ufb01nition of the \ufb02oor plan"))
    extracted = extract(data, identify(data))
    assert "\ufb01" in extracted.text  # pypdf gives the glyphs as the PDF names them
    extracted, text = normalised(extracted)
    assert text == "The Definition of the floor plan"
    detail = normalisation_detail(extracted, text)
    assert "2 compatibility ligatures (\ufb01, \ufb02...) folded into their letters" in detail
    assert "compatibility ligatures, spacing" in detail


@pytest.mark.skipif(font_path() is None, reason="DejaVu Sans is not installed (the Makefile does)")
def test_a_run_drawn_again_at_the_same_place_is_read_once():
    def draw(pdf):
        for dx in (0, 0.4, 0.8):  # fake bold: the heading three times, a fraction of a point apart
            pdf.drawString(72 + dx, 700, "Definition of the Archive")
        pdf.drawString(72, 680, "Repeat Repeat")  # the same words at other places are text of their own
        pdf.drawString(250, 680, "Repeat")
        pdf.drawString(72, 660, "Repeat Repeat")

    data = _pdf(draw)
    bare = pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert bare.count("Definition of the Archive") == 3
    extracted = extract(data, identify(data))
    assert extracted.text.count("Definition of the Archive") == 1
    assert extracted.text.count("Repeat") == 5
    assert "2 runs of text drawn again at the same place (fake bold, shadow) read once" in extracted.notes


def test_a_real_pdf_that_needs_a_password_is_quarantined_encrypted():
    data = (REAL / "skew-encrypted.pdf").read_bytes()  # OCRmyPDF's test file
    with pytest.raises(ExtractionError) as caught:
        extract(data, identify(data))
    assert caught.value.reason == "encrypted"
    assert "needs a password" in caught.value.detail
    result = extract_text(data, identify(data))
    assert isinstance(result, Quarantine) and result.reason == "encrypted"
