"""The source's contract: FileRef, the Source interface every ingest source implements, and batches of files."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator

if TYPE_CHECKING:
    from .local import Prefetch

SIDECAR_NAME = "metadata.csv"


@dataclass(frozen=True)
class FileRef:
    """One file of a source. Small: batches of these travel between tasks."""

    path: str  # relative POSIX path, as records show it (display_path: \\ for a backslash, \xNN for a byte not UTF-8)
    location: str  # how the source finds it again (absolute path, or object key)
    size: int | None
    skip_reason: str | None = None  # set when discovery already knows the file cannot be ingested
    skip_detail: str | None = None
    container: str | None = None  # the sha256 of the container it was unpacked from (archive/ingest/unpack.py)


def display_path(relative: str) -> str:
    """A file name as records show it, readable and lossless: UTF-8 text as it is, but a backslash written \\\\ and
    each byte that is not part of valid UTF-8 (kept by os as a surrogate) written \\xNN (two lowercase hex digits).
    Names that differ as bytes differ here too; path_bytes gives the bytes back."""
    if relative.isascii() and "\\" not in relative:
        return relative
    escaped = relative.replace("\\", "\\\\").encode("utf-8", "surrogateescape")
    return escaped.decode("utf-8", "backslashreplace")


_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def path_bytes(shown: str) -> bytes:
    """The bytes of the name display_path showed as shown: \\\\ is a backslash, \\xNN the byte NN, anything
    else its UTF-8 (a backslash followed by neither stays as it is)."""
    out, at = bytearray(), 0
    for escape in _ESCAPE.finditer(shown):
        out += shown[at:escape.start()].encode("utf-8", "surrogateescape")
        code = escape.group(1)
        out += b"\\" if code == "\\" else bytes((int(code[1:], 16),))
        at = escape.end()
    out += shown[at:].encode("utf-8", "surrogateescape")
    return bytes(out)


class Source(ABC):
    url: str

    @abstractmethod
    def iter_files(self) -> Iterator[FileRef]:
        """Every file, in a stable order, without reading any of them."""

    @abstractmethod
    def open(self, ref: FileRef) -> BinaryIO: ...

    def read(self, ref: FileRef) -> bytes:
        with self.open(ref) as stream:
            return stream.read()

    def prefetch(self, ref: FileRef) -> "Prefetch | None":
        """Begin reading ref ahead of its turn: a handle whose result() gives the bytes and close() lets
        go. A local file's pages are asked of the kernel, without a thread (one that read would contend for
        the GIL with the one that works); an S3 object's GET goes to a thread, which waits on the network,
        not the GIL. None: read() it when its turn comes."""
        return None

    def local_path(self, ref: FileRef) -> str | None:
        """A filesystem path for ref, when the source has one (lets stores stream files)."""
        return None

    @abstractmethod
    def root_file(self, name: str) -> FileRef | None:
        """The regular file called name at the top of the source, if there is one."""


def page_key(path: str) -> str:
    """The folder and stem of a path, which the files of one page share (its image, the OCR a vendor delivered):
    `a/p001.tif`, `a/p001.xml` and `a/p001.alto.xml` are all `a/p001`."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    for suffix in (".alto", ".hocr", ".page", ".ocr"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[:-len(suffix)]
    return f"{folder}/{stem}"


# A batch that is full takes up to so many more files of the page key it ends with (a page's image and its OCR),
# and no more: a folder of thousands of files of one stem (log.1, log.2...) is still cut.
PAGE_FILES = 8


def batches(refs: Iterable[FileRef], max_files: int = 1000, max_bytes: int = 64 << 20) -> Iterator[list[FileRef]]:
    """Group refs into batches of at most max_files files or about max_bytes bytes, streamed; not cut between the
    files of one page key (a page image and its OCR go in one batch: ingest/pages.py), PAGE_FILES more at most."""
    batch: list[FileRef] = []
    size, full = 0, 0
    for ref in refs:
        if not full and (len(batch) >= max_files or size >= max_bytes):
            full = len(batch)
        if full and (page_key(ref.path) != page_key(batch[-1].path) or len(batch) >= full + PAGE_FILES):
            yield batch
            batch, size, full = [], 0, 0
        batch.append(ref)
        size += ref.size or 0
    if batch:
        yield batch
