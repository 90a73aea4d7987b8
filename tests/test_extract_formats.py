"""Extractors for HTML, PDF and scanned images, on inputs rendered from the seed corpus.

OCR tests need the tesseract command (Debian: tesseract-ocr, tesseract-ocr-eng)
and are skipped, saying so, only where it is not installed; the Makefile
installs it. Rendering needs DejaVu Sans (Debian: fonts-dejavu-core).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pypdf
import pytest
import trafilatura
from PIL import Image

from archive.extract import (
    ExtractionError,
    extract,
    extractor_for,
    formats,
    html,
    image,
    pdf,
)
from archive.identify import Format, identify
from tests.formats_util import (
    BOILERPLATE,
    character_error_rate,
    decompression_bomb_png,
    excerpt,
    font_path,
    paragraphs,
    png_bytes,
    render_blank_pdf,
    render_html,
    render_page_image,
    render_pdf,
    render_scanned_pdf,
    squash,
    tiff_bytes,
)

REPO = Path(__file__).resolve().parent.parent

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng (the Makefile does)",
)
needs_font = pytest.mark.skipif(
    font_path() is None, reason="DejaVu Sans is not installed: apt-get install fonts-dejavu-core (the Makefile does)"
)
NO_TESSERACT = image.OcrSettings(tesseract_cmd="no-such-tesseract-here")
MAX_CER = 0.02  # character error rate allowed for 12 pt DejaVu Sans scanned at 300 dpi


@pytest.fixture(scope="module")
def seeds(seeds_dir) -> dict[str, str]:
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(seeds_dir.glob("*.txt"))}
    assert len(texts) == 5
    return texts


SEED_NAMES = [
    "000_1b6d2751a6b6d7cc.txt",
    "001_291c46b230e7e5bc.txt",
    "002_bdbfc77629c1cea2.txt",
    "003_383d63a257376c65.txt",
    "004_fe37357cb45043f5.txt",
]


def extract_bytes(data: bytes):
    return extract(data, identify(data))


def reason_of(data: bytes, extractor=None) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        (extractor or extract)(data, identify(data))
    return caught.value


# -- registry --------------------------------------------------------------------------------------


def test_registry_covers_the_digitised_formats():
    assert set(formats.EXTRACTORS) >= {"text/html", "application/pdf", "image/png", "image/tiff", "image/jpeg"}
    for media_type in formats.EXTRACTORS:
        assert extractor_for(Format(media_type, None, media_type)) is formats.EXTRACTORS[media_type]


def test_importing_the_extractors_loads_no_heavy_library():
    heavy = ("trafilatura", "pypdf", "PIL", "lxml")
    code = f"import sys, archive.extract.formats; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_limits_bind_into_the_extractors():
    extractors = formats.make_extractors(formats.Limits(html_max_bytes=100, ocr=NO_TESSERACT))
    page = render_html("A title", ["A paragraph of article text, long enough to count as one."])
    assert reason_of(page, extractors["text/html"]).reason == "too-large"
    scan = render_scanned_pdf([Image.new("L", (300, 300), 255)])
    assert reason_of(scan, extractors["application/pdf"]).reason == "needs-ocr"


# -- HTML ------------------------------------------------------------------------------------------


def _title_of(text: str) -> str:
    first = paragraphs(text)[0]
    return first if len(first) <= 100 else " ".join(first.split()[:8])


@pytest.mark.parametrize("name", SEED_NAMES)
def test_html_article_text_without_boilerplate(seeds, name):
    text = seeds[name]
    title = _title_of(text)
    body = paragraphs(text)
    page = render_html(
        title, body, date="2021-01-20", author="Leyla Mammadova", canonical="https://news.example.org/black-january"
    )
    result = extract_bytes(page)

    for where, marker in BOILERPLATE.items():
        assert marker not in result.text, f"{where} boilerplate reached the text"
    assert "Accept all" not in result.text and "More from the region" not in result.text
    flat = squash(result.text)
    for paragraph in body:
        assert squash(paragraph) in flat
    assert result.metadata == {
        "title": title,
        "date": "2021-01-20",
        "creator": "Leyla Mammadova",
        "language": "en",
        "source": "https://news.example.org/black-january",
    }
    assert (result.extractor, result.extractor_version) == ("trafilatura", trafilatura.__version__)
    assert result.encoding == "utf-8"


def test_html_date_from_meta_name_and_language_from_content_language():
    page = (
        b'<html><head><meta http-equiv="Content-Language" content="az_latn_az">'
        b'<meta name="date" content="1990-01-20"><title>Qara Yanvar</title></head>'
        b"<body><article><p>" + "Bakı, 20 yanvar 1990. ".encode() * 12 + b"</p></article></body></html>"
    )
    result = extract_bytes(page)
    assert result.metadata["date"] == "1990-01-20"
    assert result.metadata["language"] == "az-Latn-AZ"
    assert "Bakı, 20 yanvar 1990." in result.text


def test_html_decodes_the_declared_charset_and_entities():
    sentence = "Le café “noir” est servi – chaque matin à l’aube, dit-on, près de la mer. "
    page = render_html("Café & thé", [sentence * 5, "Fish &amp; chips"], charset="windows-1252", lang="fr-FR")
    assert page.decode("cp1252")  # really single-byte, not UTF-8
    result = extract_bytes(page)
    assert result.encoding == "cp1252"
    assert sentence.strip() in result.text
    assert "Fish &amp; chips" in result.text  # the escaped source text, decoded exactly once
    assert result.metadata["title"] == "Café & thé"
    assert result.metadata["language"] == "fr-FR"


def test_html_latin1_label_is_read_as_windows_1252():
    body = ["It’s the “same” page – declared Latin-1, written by Windows, as most are. " * 4]
    page = render_html("Latin-1", body, charset="windows-1252").replace(
        b'charset="windows-1252"', b'charset="iso-8859-1"'
    )
    result = extract_bytes(page)
    assert result.encoding == "cp1252"
    assert "It’s the “same” page" in result.text
    assert any("iso-8859-1" in note for note in result.notes)


def test_html_with_a_wrong_declared_charset_falls_back_to_detection():
    body = ["Café “noir” – servi chaque matin à l’aube, près de la mer Caspienne, dit-on. " * 4]
    page = render_html("Wrong label", body, charset="windows-1252").replace(
        b'charset="windows-1252"', b'charset="utf-8"'
    )
    result = extract_bytes(page)
    assert "Café “noir”" in result.text
    assert any("not valid utf-8" in note for note in result.notes)


def test_html_with_a_byte_order_mark():
    body = ["Azərbaycan xalqı 20 Yanvar faciəsini hər il anır; şəhidlər xiyabanı gül ilə dolur. " * 3]
    page = b"\xef\xbb\xbf" + render_html("BOM", body, charset="utf-8")
    result = extract_bytes(page)
    assert result.encoding == "utf-8"
    assert body[0].strip() in result.text


def test_html_with_only_page_furniture_has_no_text():
    page = (
        b"<!DOCTYPE html><html><head><title>Index</title><script>var x = 'not text';</script></head><body>"
        b"<div id='cookie-banner'>We use cookies to improve your experience. Accept all</div>"
        b"<nav><ul><li><a href='/'>Home</a></li><li><a href='/world'>World news</a></li></ul></nav>"
        b"<footer><p>(c) 2021 Example News. All rights reserved.</p></footer></body></html>"
    )
    error = reason_of(page)
    assert error.reason == "no-text"
    assert "trafilatura" in error.detail


def test_html_consent_classes_on_page_wrappers_do_not_hide_the_article(seeds):
    body = paragraphs(seeds[SEED_NAMES[2]])
    page = render_html("Wrapped", body).replace(b"<body>", b'<body class="cookie-consent-open">')
    page = page.replace(b"<main>", b'<main><div id="gdpr-wrapper" class="page">')
    page = page.replace(b"</main>", b"</div></main>")
    result = extract_bytes(page)
    assert all(squash(paragraph) in squash(result.text) for paragraph in body)
    assert BOILERPLATE["cookie"] not in result.text


def test_html_too_large_is_refused_before_parsing():
    page = render_html("Big", ["word " * 50])
    error = reason_of(page, lambda data, fmt: html.extract(data, fmt, max_bytes=len(page) - 1))
    assert error.reason == "too-large"


def test_bcp47_tags():
    assert html.bcp47("EN_gb") == "en-GB"
    assert html.bcp47("az-latn-az") == "az-Latn-AZ"
    assert html.bcp47("aze") == "aze"
    assert html.bcp47("english") is None


# -- PDF -------------------------------------------------------------------------------------------


@needs_font
def test_pdf_text_layer_page_by_page_with_info(seeds):
    first, second = excerpt(seeds[SEED_NAMES[1]], 1800), excerpt(seeds[SEED_NAMES[3]], 1200)
    data = render_pdf(
        [first, second], title="Black January", author="Anadolu Agency", creation_date="D:20210121093000+04'00'"
    )
    result = extract_bytes(data)
    pages = result.text.split("\f")
    assert len(pages) == 2 and result.pages == 2
    assert squash(pages[0]) == squash(first)
    assert squash(pages[1]) == squash(second)
    assert result.metadata == {"title": "Black January", "creator": "Anadolu Agency", "date": "2021-01-21"}
    assert (result.extractor, result.extractor_version) == ("pypdf", pypdf.__version__)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("D:20210121093000+04'00'", "2021-01-21"),
        ("D:199001", "1990-01"),
        ("D:1990", "1990"),
        ("2021-01-20T10:00:00Z", "2021-01-20"),
        ("D:20211345", None),
        ("yesterday", None),
    ],
)
def test_pdf_dates(raw, expected):
    assert pdf.pdf_date(raw) == expected


def test_pdf_default_info_values_are_not_metadata():
    result = extract_bytes(render_pdf(["Some typed text on the page."], title="untitled", author="anonymous"))
    assert "title" not in result.metadata and "creator" not in result.metadata


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_pdf_is_corrupt(seeds, keep):
    data = render_pdf([excerpt(seeds[SEED_NAMES[0]], 1500)], title="Truncated")
    error = reason_of(data[: int(len(data) * keep)])
    assert error.reason == "corrupt"
    assert "pypdf" in error.detail and "truncated" in error.detail


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n",
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
        b"%PDF-1.4\nxref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 1 /Root 9 0 R >>\nstartxref\n9\n%%EOF\n",
    ],
    ids=["noise", "dangling-pages", "missing-root"],
)
def test_damaged_pdf_raises_only_extraction_error(data):
    error = reason_of(data)
    assert error.reason in {"corrupt", "no-text"}
    if error.reason == "corrupt":
        assert error.detail.startswith("pypdf ")


def test_thousands_of_empty_pages_finish_quickly():
    data = render_blank_pdf(1500)
    started = time.monotonic()
    error = reason_of(data)
    assert error.reason == "no-text"
    assert "1500 pages" in error.detail
    assert time.monotonic() - started < 10


def test_pdf_over_the_page_limit_is_too_large():
    data = render_blank_pdf(pdf.MAX_PAGES + 1)
    started = time.monotonic()
    error = reason_of(data)
    assert error.reason == "too-large"
    assert str(pdf.MAX_PAGES) in error.detail
    assert time.monotonic() - started < 5
    small = pdf.PdfSettings(max_pages=10)
    assert reason_of(render_blank_pdf(11), lambda d, f: pdf.extract(d, f, settings=small)).reason == "too-large"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_needing_a_password_is_encrypted(algorithm):
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(render_pdf(["Secret text."]))))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    error = reason_of(buffer.getvalue())
    assert error.reason == "encrypted"
    assert "password" in error.detail


def test_pdf_encrypted_with_an_empty_password_is_read():
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(render_pdf(["Permissions only."]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert "Permissions only." in extract_bytes(buffer.getvalue()).text


@needs_font
def test_scanned_pdf_without_tesseract_needs_ocr(seeds):
    scan = render_scanned_pdf([render_page_image(excerpt(seeds[SEED_NAMES[2]], 200))])
    error = reason_of(scan, lambda d, f: pdf.extract(d, f, settings=pdf.PdfSettings(ocr=NO_TESSERACT)))
    assert error.reason == "needs-ocr"
    assert "Tesseract is not installed" in error.detail


@needs_tesseract
@needs_font
@pytest.mark.parametrize("renderer", ["pdftoppm", None], ids=["rendered", "embedded-images"])
def test_scanned_pdf_is_ocrd(seeds, renderer):
    if renderer and shutil.which(renderer) is None:
        pytest.skip("pdftoppm is not installed: apt-get install poppler-utils (the Makefile does)")
    reference = excerpt(seeds[SEED_NAMES[3]], 700)
    scan = render_scanned_pdf([render_page_image(reference)])
    result = pdf.extract(scan, identify(scan), settings=pdf.PdfSettings(pdftoppm_cmd=renderer))
    assert result.extractor == "tesseract"
    assert character_error_rate(result.text, reference) < MAX_CER
    assert any(("pdftoppm" if renderer else "embedded images") in note for note in result.notes)


@needs_tesseract
@needs_font
def test_mixed_pdf_keeps_the_text_layer_and_ocrs_the_scanned_page(seeds):
    reference = excerpt(seeds[SEED_NAMES[4]], 400)
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(io.BytesIO(render_pdf(["Typed cover sheet of the dossier."]))))
    writer.append(pypdf.PdfReader(io.BytesIO(render_scanned_pdf([render_page_image(reference)]))))
    buffer = io.BytesIO()
    writer.write(buffer)
    result = extract_bytes(buffer.getvalue())
    cover, scanned = result.text.split("\f")
    assert cover.strip() == "Typed cover sheet of the dossier."
    assert character_error_rate(scanned, reference) < MAX_CER
    assert result.extractor == "pypdf+tesseract"
    assert any(note.startswith("page 2 has no text layer") for note in result.notes)


# -- images ----------------------------------------------------------------------------------------


@needs_tesseract
@needs_font
@pytest.mark.parametrize("name", SEED_NAMES)
def test_png_ocr_character_error_rate(seeds, name, record_property):
    reference = excerpt(seeds[name], 800)
    data = png_bytes(render_page_image(reference, dpi=300), dpi=300)
    result = extract_bytes(data)
    cer = character_error_rate(result.text, reference)
    record_property("cer", cer)
    print(f"{name}: CER {cer:.4f} over {len(squash(reference))} characters")
    assert cer < MAX_CER
    assert result.extractor == "tesseract"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", result.extractor_version)
    assert result.pages == 1


@needs_tesseract
@needs_font
def test_multi_page_tiff_gives_pages_separated_by_form_feeds(seeds):
    references = [excerpt(seeds[SEED_NAMES[0]], 300), excerpt(seeds[SEED_NAMES[4]], 300)]
    data = tiff_bytes([render_page_image(text) for text in references])
    result = extract_bytes(data)
    pages = result.text.split("\f")
    assert result.pages == 2 and len(pages) == 2
    for page, reference in zip(pages, references):
        assert character_error_rate(page, reference) < MAX_CER


def _variant(page: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "jpeg":
        page.save(buffer, format="JPEG", quality=85, dpi=(300, 300))
    elif kind == "transparent-png":
        # Black text on a transparent background: black on black unless flattened onto white.
        transparent = Image.new("RGBA", page.size, (0, 0, 0, 0))
        transparent.putalpha(Image.eval(page, lambda value: 255 - value))
        transparent.save(buffer, format="PNG", dpi=(300, 300))
    elif kind == "16-bit-png":
        page.convert("I").point(lambda value: value * 257).convert("I;16").save(buffer, format="PNG", dpi=(300, 300))
    elif kind == "bitonal-group4-tiff":
        page.convert("1").save(buffer, format="TIFF", compression="group4", dpi=(300, 300))
    elif kind == "colour-png-without-dpi":
        page.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@needs_tesseract
@needs_font
@pytest.mark.parametrize(
    "kind", ["jpeg", "transparent-png", "16-bit-png", "bitonal-group4-tiff", "colour-png-without-dpi"]
)
def test_scans_of_every_common_kind_are_ocrd(seeds, kind):
    reference = excerpt(seeds[SEED_NAMES[2]], 250)
    result = extract_bytes(_variant(render_page_image(reference), kind))
    assert character_error_rate(result.text, reference) < MAX_CER


@needs_tesseract
def test_blank_scan_has_no_text():
    error = reason_of(png_bytes(Image.new("L", (1200, 900), 255)))
    assert error.reason == "no-text"


@needs_font
def test_image_without_tesseract_needs_ocr():
    data = png_bytes(render_page_image("A short line."))
    error = reason_of(data, lambda d, f: image.extract(d, f, settings=NO_TESSERACT))
    assert error.reason == "needs-ocr"
    assert "Tesseract is not installed" in error.detail and "tesseract-ocr" in error.detail


@needs_tesseract
def test_missing_language_data_needs_ocr():
    settings = image.OcrSettings(languages="zzz")
    error = reason_of(png_bytes(Image.new("L", (10, 10), 255)), lambda d, f: image.extract(d, f, settings=settings))
    assert error.reason == "needs-ocr"
    assert "zzz" in error.detail


@pytest.mark.parametrize("damage", ["truncated", "scrambled", "signature-only"])
def test_corrupt_png_is_corrupt(damage):
    data = png_bytes(Image.effect_noise((400, 300), 60).convert("L"))
    damaged = {
        "truncated": data[: len(data) // 2],
        "scrambled": data[:120] + bytes(reversed(data[120:2000])) + data[2000:],
        "signature-only": data[:8] + b"\x00" * 64,
    }[damage]
    assert identify(damaged).media_type == "image/png"
    error = reason_of(damaged)
    assert error.reason == "corrupt"
    assert "Pillow" in error.detail


def test_decompression_bomb_is_too_large():
    bomb = decompression_bomb_png(30_000)
    assert len(bomb) < 1_000_000  # under a megabyte on disk, 900 million pixels decoded
    error = reason_of(bomb)
    assert error.reason == "too-large"
    assert "pixels" in error.detail


def test_our_pixel_limit_holds_when_pillows_is_switched_off(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    error = reason_of(decompression_bomb_png(12_000))
    assert error.reason == "too-large"
    assert f"{image.MAX_IMAGE_PIXELS:,}" in error.detail


@needs_tesseract  # looked for before the image is opened
def test_too_many_tiff_pages_is_too_large():
    frames = [Image.new("L", (20, 20), 255) for _ in range(4)]
    settings = image.OcrSettings(max_pages=3)
    error = reason_of(tiff_bytes(frames), lambda d, f: image.extract(d, f, settings=settings))
    assert error.reason == "too-large"
