"""Format identification from content, not names."""

import random

import pytest

from archive.identify import identify


@pytest.mark.parametrize("data, media_type, puid", [
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf", "fmt/18"),
    (b"%PDF-1.7\n", "application/pdf", "fmt/276"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", "fmt/11"),
    (b"II*\x00\x08\x00\x00\x00", "image/tiff", "fmt/353"),
    (b"MM\x00*\x00\x00\x00\x08", "image/tiff", "fmt/353"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", "fmt/43"),
    (b"<!DOCTYPE html>\n<html><body><p>x</p></body></html>", "text/html", "fmt/471"),
    (b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN">\n<html>', "text/html", "fmt/96"),
    (b"  \n<html><head><title>t</title></head></html>", "text/html", "fmt/96"),
    (b"<?xml version='1.0'?><root/>", "application/xml", "fmt/101"),
    (b"Plain words, nothing more.\n", "text/plain", "x-fmt/111"),
    ("Caf\u00e9 \u2019quoted\u2019".encode("cp1252"), "text/plain", "x-fmt/111"),
    ("<html> in UTF-16 <body>".encode("utf-16"), "text/html", "fmt/96"),
    ("plain words in UTF-16".encode("utf-16"), "text/plain", "x-fmt/111"),
    (b"PK\x03\x04\x14\x00", "application/zip", "x-fmt/263"),
    (b"", "application/x-empty", None),
])
def test_identify_by_content(data, media_type, puid):
    fmt = identify(data)
    assert (fmt.media_type, fmt.puid) == (media_type, puid)


def test_random_bytes_are_binary():
    for seed in range(20):  # seeded: the same bytes every run (a random prefix can be a byte-order mark)
        data = random.Random(seed).randbytes(2048)
        assert identify(data).media_type == "application/octet-stream", seed


def test_seeds_are_plain_text(seeds_dir):
    for path in seeds_dir.iterdir():
        assert identify(path.read_bytes()).puid == "x-fmt/111"


def test_the_name_does_not_matter(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 30
    assert identify(png).media_type == "image/png"  # whatever the file is called
