"""S3Source: an ingest source under s3://bucket/prefix, its objects read ahead of their turn by threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterator

from ..errors import ConfigurationError, SourceError
from ..storage import S3Store
from .base import FileRef, Source, display_path


def iter_s3_source(url: str) -> Iterator[tuple[str, int]]:
    """(key relative to the prefix, size) of every object under an S3 ingest source, in key order.

    Folder markers (keys ending in '/') are skipped. Read an object with
    S3Store.from_url(url).open_read(relative_key).
    """
    store = S3Store.from_url(url)
    try:
        for info in store._iter_objects(""):
            if not info.key.endswith("/"):
                yield info.key, info.size
    except ConfigurationError as exc:
        raise SourceError(f"cannot list the ingest source: {exc}") from None


class _Fetch:
    """An object read ahead of its turn by the source's threads: S3Source.prefetch's handle (as Prefetch
    is a local file's). result() gives its bytes or raises what the read raised; close() forgets it."""

    def __init__(self, future):
        self._future = future

    def result(self) -> bytes:
        return self._future.result()

    def close(self) -> None:
        self._future.cancel()  # (a read already under way ends in its thread; nobody keeps its bytes)


class S3Source(Source):
    """An ingest source under s3://bucket/prefix: every object below the prefix, in key order.

    A batch asks for the next objects ahead of their turn (prefetch): each GET waits a round trip, which
    READ_AHEAD_THREADS threads spend waiting together, the GIL released, while the batch works."""

    READ_AHEAD_THREADS = 4

    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/"
        self.store = S3Store.from_url(url)
        self._readers: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def prefetch(self, ref: FileRef) -> _Fetch:
        with self._lock:
            if self._readers is None:
                # Its threads end once the source is gone (the executor's own weak reference).
                self._readers = ThreadPoolExecutor(self.READ_AHEAD_THREADS, thread_name_prefix="source-read")
        return _Fetch(self._readers.submit(self.read, ref))

    def iter_files(self) -> Iterator[FileRef]:
        # A key is UTF-8 text, used as it is to read the object; its path is written as a local name's is (a
        # backslash doubled), so a recorded path means one name whatever the source.
        for key, size in iter_s3_source(self.url):
            yield FileRef(path=display_path(key), location=key, size=size)

    def open(self, ref: FileRef) -> BinaryIO:
        return self.store.open_read(ref.location)

    def root_file(self, name: str) -> FileRef | None:
        size = self.store.size(name)
        return None if size is None else FileRef(path=display_path(name), location=name, size=size)
