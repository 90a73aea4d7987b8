"""A vendor's OCR delivered with its page image (same folder and stem): the OCR is the text, the image is kept and
named by the OCR's document, not OCR'd again; a page whose OCR file is damaged is OCR'd. Real page scans."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from archive.extract import extract
from archive.identify import identify
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.read import open_dataset
from archive.sources import FileRef, LocalSource, batches
from archive.storage import LocalStore, object_key

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_page_image_beside_its_vendor_ocr_is_kept_not_ocred_again(tmp_path):
    scan, other = (REAL / "phototest.tif").read_bytes(), (REAL / "eurotext.tif").read_bytes()
    alto = extract(scan, identify(scan)).ocr.alto  # Tesseract's ALTO of the page: the vendor's OCR here
    src = tmp_path / "delivery"
    (src / "pages").mkdir(parents=True)
    (src / "pages" / "p001.tif").write_bytes(scan)
    (src / "pages" / "p001.xml").write_bytes(alto)
    (src / "pages" / "p002.tif").write_bytes(other)
    (src / "pages" / "p002.xml").write_bytes(alto[:len(alto) // 2])  # damaged: the page is OCR'd instead
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # the image before its OCR, as a ZIP may hold them
        archive.writestr("p001.tif", scan)
        archive.writestr("p001.alto.xml", alto)
    (src / "again.zip").write_bytes(buffer.getvalue())

    source, store = LocalSource(str(src)), LocalStore(str(tmp_path / "store"))
    run = RunContext(new_run_id(), "pages", source.url)
    commit_run(store, run, [process_batch(store, source, run, 0, list(source.iter_files()))], parameters={},
               warnings=[])
    files = {f["path"]: f for f in open_dataset(str(tmp_path / "store"), "files").to_table().to_pylist()}
    assert {p: (f["outcome"], f["reason"]) for p, f in files.items()} == {
        "pages/p001.xml": ("duplicate", "duplicate-in-run"),  # (the ZIP's copy came first)
        "pages/p001.tif": ("skipped", "page-image"),
        "pages/p002.xml": ("quarantine", "corrupt"),
        "pages/p002.tif": ("document", None),
        "again.zip": ("skipped", "unpacked"),
        "again.zip!/p001.alto.xml": ("document", None),
        "again.zip!/p001.tif": ("skipped", "page-image"),
    }
    assert f"pages/p001.xml (ALTO XML (Analyzed Layout and Text Object), sha256 {_sha(alto)})" in \
        files["pages/p001.tif"]["detail"]
    assert store.get_bytes(object_key(_sha(scan))) == scan  # the image is kept
    docs = {d["source_path"]: d for d in open_dataset(str(tmp_path / "store"), "documents").to_table().to_pylist()}
    paired = docs["again.zip!/p001.alto.xml"]
    assert paired["page_image_sha256"] == _sha(scan)
    assert paired["extractor"] == "lxml" and paired["ocr_confidence"] > 0.5 and "lazy fox" in paired["text"]
    assert docs["pages/p002.tif"]["extractor"] == "tesseract" and docs["pages/p002.tif"]["page_image_sha256"] is None


def test_batches_are_not_cut_between_the_files_of_one_page():
    refs = [FileRef(name, name, 10) for name in ("a/p1.tif", "a/p1.xml", "a/p2.tif", "a/p2.alto.xml", "a/p3.tif")]
    assert [[r.path for r in b] for b in batches(refs, max_files=1)] == [
        ["a/p1.tif", "a/p1.xml"], ["a/p2.tif", "a/p2.alto.xml"], ["a/p3.tif"]]
    logs = [FileRef(f"log.{n}", f"log.{n}", 10) for n in range(30)]  # one stem, thirty files: still cut
    assert [len(b) for b in batches(logs, max_files=5)] == [13, 13, 4]
