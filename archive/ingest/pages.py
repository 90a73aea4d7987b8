"""A vendor's OCR and its page image delivered together: `p001.xml` (ALTO, hOCR or PAGE, by content) beside
`p001.tif` in the same folder (or container), the same stem.

What an archivist expects: the vendor's OCR is the page's text (its confidences kept), and the image is its page,
kept as an original but not OCR'd again into a second, competing text. So the image is recorded `skipped`
(`page-image`, its detail naming the OCR file and its sha256), and the OCR's document names the image in
`page_image_sha256`. Where the OCR file could not be made a document (corrupt, invalid), the image is OCR'd as any.

Pairs are found by name within a batch: batches are not cut between files of one stem (sources.batches, up to
eight files more), and within a batch, and within a container, the files of one stem named as images come after the
others, so the vendor's file is identified (by content) before its image is judged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from ..containers import ALTO, HOCR, PAGE
from ..identify import Format
from ..sources import FileRef, page_key

if TYPE_CHECKING:
    from .batch import BatchProcessor

VENDOR_OCR = {ALTO.media_type, HOCR.media_type, PAGE.media_type}
IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".jp2", ".png", ".gif", ".webp")
PAGE_IMAGE = "page-image"

T = TypeVar("T")


def images_last(items: Sequence[T], path: Callable[[T], str]) -> list[T]:
    """items in their order, but in each run of consecutive items of one page key, those named as images last."""
    out: list[T] = []
    start = 0
    for at in range(1, len(items) + 1):
        if at == len(items) or page_key(path(items[at])) != page_key(path(items[start])):
            group = items[start:at]
            out.extend(sorted(group, key=lambda item: path(item).lower().endswith(IMAGE_SUFFIXES)))
            start = at
    return out


class PagePairs:
    """The vendor OCR files a batch has identified, by page key."""

    def __init__(self):
        self._ocr: dict[str, tuple[str, str, Format]] = {}  # page key -> (path, sha256, format)

    def seen(self, ref: FileRef, sha256: str, fmt: Format) -> None:
        if fmt.media_type in VENDOR_OCR:
            self._ocr[page_key(ref.path)] = (ref.path, sha256, fmt)

    def ocr_of(self, ref: FileRef, fmt: Format) -> tuple[str, str, Format] | None:
        """The vendor OCR file of this image's page, if the batch has one."""
        if not fmt.media_type.startswith("image/"):
            return None
        return self._ocr.get(page_key(ref.path))


def pair_page_image(batch: BatchProcessor, ref: FileRef, sha256: str, fmt: Format, size: int) -> bool:
    """Record the image as the page of its vendor OCR (True), or leave it to be OCR'd (False: no such OCR file in
    the batch, or it was made no document)."""
    found = batch.pages.ocr_of(ref, fmt)
    if found is None:
        return False
    path, ocr_sha256, ocr_fmt = found
    batch._make_documents()  # (the OCR file's outcome is known once the files waiting are made documents)
    row = next((r for r in reversed(batch.rows.files) if r["path"] == path), None)
    if row is None or row["outcome"] not in ("document", "duplicate"):
        return False
    for document in batch.rows.documents:
        if document["doc_id"] == ocr_sha256 and document["source_path"] == path:
            document["page_image_sha256"] = sha256
    batch.rows.file_row(ref, "skipped", sha256=sha256, fmt=fmt, reason=PAGE_IMAGE, size=size,
                        detail=f"the page image of {path} ({ocr_fmt.name}, sha256 {ocr_sha256}), delivered with "
                               "it: the vendor's OCR is the page's text; the image is kept, not OCR'd again")
    return True
