"""The formats of real accessions: identified by content (container signatures, XML vocabularies, message
headers) and read with the field's libraries, on real files (tests/corpus/formats/README.md says whose)."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from archive.extract import ExtractionError, extract
from archive.identify import identify
from archive.ingest.stages import normalised
from archive.normalise import normalise_text

FORMATS = Path(__file__).resolve().parent / "corpus" / "formats"
REAL = Path(__file__).resolve().parent / "corpus" / "real"


def read(name: str):
    data = (FORMATS / name).read_bytes()
    extracted = extract(data, identify(data))
    return normalised(extracted)


@pytest.mark.parametrize("name, media_type, puid", [
    ("python-docx-test.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "fmt/412"),
    ("segmodeimg.odt", "application/vnd.oasis.opendocument.text", "fmt/291"),
    ("epubcheck-valid.epub", "application/epub+zip", "fmt/483"),
    ("epubcheck-epub2-minimal.epub", "application/epub+zip", "fmt/483"),
    ("striprtf-french.rtf", "application/rtf", "fmt/355"),
    ("cpython-msg_16.eml", "message/rfc822", "fmt/278"),
    ("mboxparser-testbox.mbox", "application/mbox", None),
    ("tei-test8.xml", "application/tei+xml", None),
    ("tei-test14-no-declaration.xml", "application/tei+xml", None),
    ("ocrmypdf-latin.hocr", "text/vnd.hocr+html", None),
])
def test_identified_by_content_not_as_zip_html_or_text(name, media_type, puid):
    fmt = identify((FORMATS / name).read_bytes())
    assert (fmt.media_type, fmt.puid) == (media_type, puid)


def test_a_plain_zip_is_still_a_zip_and_a_tar_a_tar(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("letter.txt", "A letter.")
    assert identify(buffer.getvalue()).puid == "x-fmt/263"
    shutil.make_archive(str(tmp_path / "folder"), "tar", root_dir=FORMATS, base_dir="striprtf-french.txt")
    assert identify((tmp_path / "folder.tar").read_bytes()).puid == "x-fmt/265"


def test_docx_paragraphs_and_core_properties():
    extracted, text = read("python-docx-test.docx")
    assert text == "python-docx was here!\n\npython-docx was here too!"
    assert extracted.extractor == "python-docx"
    data = (FORMATS / "python-docx-coreprops.docx").read_bytes()  # core properties, and no text at all
    extracted = extract(data, identify(data))
    assert extracted.metadata == {"title": "Title", "creator": "Steve Canny", "date": "2014-12-13"}
    assert not extracted.text.strip()


def test_odt_paragraphs_in_document_order():
    extracted, text = read("segmodeimg.odt")
    assert text.split("\n\n")[:2] == ["What should", "both the"]
    assert extracted.extractor == "odfpy" and extracted.metadata["date"] == "2019-07-09"


@pytest.mark.parametrize("name", ["striprtf-french.rtf", "striprtf-example.rtf"])
def test_rtf_reads_as_striprtf_s_own_tests_expect(name):
    _, text = read(name)
    expected = (FORMATS / name.replace(".rtf", ".txt")).read_text(encoding="utf-8")
    assert text == normalise_text(expected)


@pytest.mark.parametrize("name, title", [("epubcheck-valid.epub", "Minimal EPUB 3.0"),
                                         ("epubcheck-epub2-minimal.epub", "Minimal EPUB 2.0")])
def test_epub_spine_text_and_package_metadata(name, title):
    extracted, text = read(name)
    assert text == "Loomings\n\nCall me Ishmael."
    assert extracted.metadata["title"] == title


def test_an_email_is_its_decoded_body_and_headers_not_raw_mime():
    extracted, text = read("cpython-msg_16.eml")
    assert text.startswith("From: Internet Mail Delivery <postmaster@ucla.edu>\nTo: scr-admin@socal-raves.org\n")
    assert "Your message cannot be delivered to the following recipients:" in text
    assert "Content-Type" not in text and "--Boundary_" not in text
    assert extracted.metadata == {"title": "Delivery Notification: Delivery has failed",
                                  "creator": "Internet Mail Delivery <postmaster@ucla.edu>", "date": "2001-09-23"}
    assert "2 attachments not read as text: message/delivery-status" in extracted.notes[1]


def test_an_email_in_quoted_printable_with_a_base64_attachment_is_decoded():
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Archivist <a@example.org>", "b@example.org", "Minutes"
    message["Date"] = "Tue, 20 Jan 1998 09:30:00 +0000"
    message.set_content("The committee met on Tuesday; the caf\u00e9 was closed.\n", cte="quoted-printable")
    message.add_attachment(b"%PDF-1.4 scanned minutes", maintype="application", subtype="pdf", filename="minutes.pdf")
    data = message.as_bytes()
    assert b"caf=C3=A9" in data and b"JVBERi0xLjQ" in data  # as sent: quoted-printable and base64
    fmt = identify(data)
    extracted = extract(data, fmt)
    assert fmt.puid == "fmt/278"
    assert "the caf\u00e9 was closed" in extracted.text and "JVBERi0" not in extracted.text
    assert "minutes.pdf (24 bytes)" in extracted.notes[-1]


@pytest.mark.parametrize("name, title, begins", [
    ("tei-test8.xml", "Olaf Stapledon", "Life\n\nStapledon was born in Seacombe"),
    ("tei-test14-no-declaration.xml", "An historical and geographical description of Formosa",
     "AN HISTORICAL and GEOGRAPHICAL DESCRIPTION OF FORMOSA"),
])
def test_tei_text_without_markup_and_its_header_as_metadata(name, title, begins):
    extracted, text = read(name)
    assert extracted.metadata["title"].startswith(title)
    assert text.startswith(begins)
    assert "<" not in text and "teiHeader" not in text
    assert "Wikipedia" not in text.split("\n\n")[0]  # the header is metadata, not text


def test_hocr_text_and_its_word_confidences():
    extracted, text = read("ocrmypdf-latin.hocr")
    assert text == ("The quick brown fox jumps\n\nCaf\u00e9 r\u00e9sum\u00e9 na\u00efve\n\n"
                    "Gr\u00f6\u00dfe Z\u00fcrich \u00c4rger")
    assert extracted.ocr.confidence == pytest.approx(0.95, abs=0.01)
    assert extracted.ocr.alto == b""  # the original is the OCR: nothing derived to keep


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (the Makefile does)")
def test_alto_delivered_by_an_ocr_is_read_with_its_confidences():
    phototest = (REAL / "phototest.tif").read_bytes()
    alto = extract(phototest, identify(phototest)).ocr.alto  # Tesseract's own ALTO of a real page
    fmt = identify(alto)
    extracted, text = normalised(extract(alto, fmt))
    assert fmt.media_type == "application/alto+xml"
    assert text.startswith("This is a lot of 12 point text to test the\nocr code and see if it works on all types")
    assert extracted.ocr.confidence > 0.9 and extracted.ocr.low_pages == []


def test_page_xml_lines_and_confidences():
    page = (b'<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">'
            b'<Page imageFilename="p.tif" imageWidth="10" imageHeight="10"><TextRegion id="r1">'
            b'<TextLine id="l1"><TextEquiv conf="0.91"><Unicode>First line</Unicode></TextEquiv></TextLine>'
            b'<TextLine id="l2"><TextEquiv conf="0.83"><Unicode>second line</Unicode></TextEquiv></TextLine>'
            b'</TextRegion></Page></PcGts>')
    fmt = identify(page)
    extracted, text = normalised(extract(page, fmt))
    assert fmt.media_type == "application/vnd.prima.page+xml"
    assert text == "First line\nsecond line" and extracted.ocr.confidence == pytest.approx(0.87)


def _zip(members: dict[str, bytes], **kwargs) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, **kwargs) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_bomb_dressed_as_a_docx_is_too_large_not_expanded():
    bomb = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>" + b" " * (200 << 20)})
    assert len(bomb) < 400_000
    fmt = identify(bomb)
    assert fmt.puid == "fmt/412"
    with pytest.raises(ExtractionError) as caught:
        extract(bomb, fmt)
    assert caught.value.reason == "too-large" and "a ZIP bomb" in caught.value.detail


def test_the_tei_header_is_metadata_even_in_an_invalid_letter():
    letter = (b'<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><titleStmt><title>Letter to the '
              b'harbour board</title><author>J. Smith</author></titleStmt></fileDesc><profileDesc><correspDesc>'
              b'<correspAction type="sent"><date when="1923-04-17"/></correspAction></correspDesc></profileDesc>'
              b'</teiHeader><text><body><opener><salute>Dear Sirs,</salute></opener><p>The lamp at the pier is '
              b'out<lb break="no"/>side our remit.</p><closer><signed>J. Smith</signed></closer></body></text></TEI>')
    extracted, text = normalised(extract(letter, identify(letter)))
    assert extracted.metadata == {"title": "Letter to the harbour board", "creator": "J. Smith", "date": "1923-04-17"}
    assert text == "Dear Sirs,\n\nThe lamp at the pier is outside our remit.\n\nJ. Smith"
    assert etree.fromstring(letter) is not None
