"""Test inputs rendered from the seed texts (HTML pages, PDFs, scanned images) and the character error rate."""

from __future__ import annotations

import html
import io
import struct
import zlib
from pathlib import Path

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_FILE = "DejaVuSans.ttf"  # Debian package fonts-dejavu-core

# Boilerplate that must never reach a document's text; each string is unique
# so a test can look for it in the extracted text.
BOILERPLATE = {
    "script": "trackVisitorSCRIPTMARKER",
    "style": "STYLEMARKER",
    "nav": "NAVMARKER Home",
    "cookie": "COOKIEMARKER We use cookies to improve your experience",
    "related": "RELATEDMARKER Ten other stories you missed",
    "footer": "FOOTERMARKER All rights reserved",
}


def font_path() -> Path | None:
    for folder in FONT_DIRS:
        if (folder / FONT_FILE).is_file():
            return folder / FONT_FILE
    return None


def paragraphs(text: str) -> list[str]:
    """The seed's paragraphs with their inner whitespace collapsed."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def excerpt(text: str, limit: int) -> str:
    """The seed's first paragraphs up to about limit characters, cut at a word boundary."""
    kept: list[str] = []
    used = 0
    for paragraph in paragraphs(text):
        if used + len(paragraph) > limit:
            cut = paragraph[: max(0, limit - used)].rsplit(" ", 1)[0]
            if cut:
                kept.append(cut)
            break
        kept.append(paragraph)
        used += len(paragraph) + 1
    return "\n".join(kept)


def squash(text: str) -> str:
    """Whitespace-insensitive form: OCR and PDF text wrap lines where the renderer did."""
    return " ".join(text.split())


# -- HTML ------------------------------------------------------------------------------------------


def render_html(
    title: str,
    body: list[str],
    *,
    date: str | None = None,
    author: str | None = None,
    lang: str | None = "en",
    charset: str = "utf-8",
    canonical: str | None = None,
    site: str = "Caspian Daily",
) -> bytes:
    """A news page of the usual shape: the article inside nav, cookie banner, scripts, related links and footer."""
    esc = html.escape
    head = [f'<meta charset="{charset}">', f"<title>{esc(title)} | {esc(site)}</title>"]
    if date:
        head.append(f'<meta property="article:published_time" content="{date}T09:30:00+04:00">')
    if author:
        head.append(f'<meta name="author" content="{esc(author)}">')
    if canonical:
        head.append(f'<link rel="canonical" href="{esc(canonical)}">')
    head.append(f"<style>body {{ font-family: serif }} .x::after {{ content: '{BOILERPLATE['style']}' }}</style>")
    head.append(f"<script>function {BOILERPLATE['script']}() {{ return document.cookie; }}</script>")
    lang_attr = f' lang="{lang}"' if lang else ""
    article = "\n".join(f"<p>{esc(p)}</p>" for p in body)
    page = f"""<!DOCTYPE html>
<html{lang_attr}>
<head>
{chr(10).join(head)}
</head>
<body>
<div id="cookie-banner" class="cookie-consent">{BOILERPLATE["cookie"]}. <button>Accept all</button></div>
<header><nav class="main-menu"><ul>
<li><a href="/">{BOILERPLATE["nav"]}</a></li><li><a href="/world">World</a></li><li><a href="/sport">Sport</a></li>
</ul></nav></header>
<main>
<article>
<h1>{esc(title)}</h1>
<p class="byline">By {esc(author or "Staff")} &middot; <time datetime="{date or ""}">{date or ""}</time></p>
{article}
</article>
<aside class="related-posts"><h3>Related posts</h3><ul>
<li><a href="/a">{BOILERPLATE["related"]}</a></li><li><a href="/b">More from the region</a></li>
</ul></aside>
</main>
<footer class="site-footer"><p>&copy; 2021 {esc(site)}. {BOILERPLATE["footer"]}.</p>
<script>window.dataLayer = [];</script></footer>
</body>
</html>
"""
    return page.encode(charset)


def unclosed_font_page(count: int) -> bytes:
    """An old page's shape: count paragraphs, each opening a <font> it never closes, so they nest count deep."""
    body = "".join(f"<font face='Times'><p>Paragraph {number} of the story, in words of its own.</p>"
                   for number in range(1, count + 1))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Unclosed fonts</title></head>"
            f"<body><article>{body}</article></body></html>").encode("utf-8")


# -- PDF -------------------------------------------------------------------------------------------


def render_pdf(
    pages: list[str], *, title: str | None = None, author: str | None = None, creation_date: str | None = None
) -> bytes:
    """A PDF whose pages carry a real text layer (ReportLab, DejaVu Sans), with an Info dictionary."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    font = font_path()
    face = "Helvetica"
    if font is not None:
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(font)))
        face = "DejaVuSans"
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    if title:
        pdf.setTitle(title)
    if author:
        pdf.setAuthor(author)
    if creation_date:
        pdf.setDateFormatter(lambda *_: creation_date)
    width, height = A4
    for text in pages:
        y = height - 72
        pdf.setFont(face, 11)
        for paragraph in text.split("\n"):
            for line in simpleSplit(paragraph, face, 11, width - 144) or [""]:
                if y < 72:
                    break
                pdf.drawString(72, y, line)
                y -= 14
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def render_blank_pdf(page_count: int) -> bytes:
    """A PDF of page_count pages with nothing on them."""
    import pypdf

    writer = pypdf.PdfWriter()
    for _ in range(page_count):
        writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def form_bomb_pdf(invocations: int = 200, chars_per_form: int = 100_000, chars_per_show: int = 2) -> bytes:
    """A PDF of about 2 KB whose one page invokes a compressed form XObject `invocations` times, each drawing
    about chars_per_form characters in lines of one show (Tj) of chars_per_show: its text would be about
    invocations x chars_per_form characters, at pypdf's cost per show (with 2 a show, about 10 us a character:
    minutes for the defaults' 20 million)."""
    show = b"(" + b"A" * (chars_per_show - 1) + b" ) Tj T*\n"  # chars_per_show characters and a line break
    form = b"BT /F1 1 Tf 0 0 Td 1 TL\n" + show * max(1, chars_per_form // (chars_per_show + 1)) + b"ET\n"
    page = b"q " + b"/Fm0 Do " * invocations + b"Q\n"
    form_z, page_z = zlib.compress(form, 9), zlib.compress(page, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Fm0 5 0 R >> "
        b"/Font << /F1 6 0 R >> >> /Contents 4 0 R >>",
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(page_z) + page_z + b"\nendstream",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 6 0 R >> >> "
        b"/Filter /FlateDecode /Length %d >>\nstream\n" % len(form_z) + form_z + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def render_scanned_pdf(images: list, dpi: int = 300) -> bytes:
    """A PDF whose pages are only images (a scan without a text layer)."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    for picture in images:
        width, height = picture.size[0] * 72 / dpi, picture.size[1] * 72 / dpi
        pdf.setPageSize((width, height))
        pdf.drawImage(ImageReader(picture), 0, 0, width, height)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# -- images ----------------------------------------------------------------------------------------


def render_page_image(text: str, *, dpi: int = 300, points: float = 12, width_in: float = 8.27):
    """A greyscale page of text as a scanner at dpi would see it; height fits the text."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path()), size=round(points * dpi / 72))
    margin = dpi  # one inch
    width = round(width_in * dpi)
    line_height = round(font.size * 1.45)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and font.getlength(candidate) > width - 2 * margin:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
        lines.append("")
    height = 2 * margin + line_height * len(lines)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    for number, line in enumerate(lines):
        draw.text((margin, margin + number * line_height), line, font=font, fill=0)
    return page


def png_bytes(picture, dpi: int = 300) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def tiff_bytes(pictures: list, dpi: int = 300) -> bytes:
    """A multi-page TIFF, one frame per picture."""
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="TIFF", save_all=True, append_images=pictures[1:], dpi=(dpi, dpi), compression="tiff_deflate"
    )
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A valid 1-bit PNG of side x side white pixels: a few hundred kilobytes that decode to side² pixels."""
    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(row) for _ in range(side)]
    chunks.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


# -- measuring OCR ---------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), in O(len(a) * len(b)) time and O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def character_error_rate(recognised: str, reference: str) -> float:
    """Levenshtein distance over reference length, both compared with whitespace collapsed."""
    reference, recognised = squash(reference), squash(recognised)
    return levenshtein(recognised, reference) / max(1, len(reference))


# -- worn scans ------------------------------------------------------------------------------------

# How worn a scan is: (blur sigma, paper brightness at its lightest and darkest corner, ink, noise s.d., share of
# speckled pixels, JPEG quality). "heavy" is where Tesseract's own (global Otsu) binarisation turns the page black.
WEAR = {
    "mild": (0.6, (245, 225), 40, 8, 0.0005, 75),
    "moderate": (0.8, (235, 195), 60, 14, 0.002, 55),
    "heavy": (0.9, (235, 175), 70, 18, 0.004, 45),
}


def worn_scan(text: str, *, level: str = "moderate", dpi: int = 200, seed: int = 0, points: float = 10) -> bytes:
    """A JPEG of the text as an old page scans: blurred, faded ink on yellowed and unevenly lit paper, grain,
    specks, compressed hard."""
    import numpy as np
    from PIL import Image, ImageFilter

    blur, (light, dark), ink, noise, specks, quality = WEAR[level]
    rng = np.random.default_rng(seed)
    page = render_page_image(text, dpi=dpi, points=points).filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(page, dtype=np.float32)
    height, width = pixels.shape
    shade = np.linspace(0, 1, width)[None, :] * np.linspace(0.6, 1, height)[:, None]
    paper = light - (light - dark) * shade
    pixels = ink + pixels / 255.0 * (paper - ink) + rng.normal(0, noise, pixels.shape)
    pixels[rng.random(pixels.shape) < specks] = 40
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality,
                                                                  dpi=(dpi, dpi))
    return buffer.getvalue()
