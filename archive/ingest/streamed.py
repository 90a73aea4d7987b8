"""Files over max_file_bytes: hashed and kept streamed, never whole in memory, and quarantined `too-large`; one that
changes while it is read is kept as a copy of what it had then and quarantined `unstable`, and the batch goes on."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from .. import provenance as ev
from ..errors import StoreError
from ..fixity import CHUNK, FileChangedError, digest_unchanged, open_for_reading
from ..fixity import TOOL as DIGEST_TOOL
from ..identify import identify
from ..sources import FileRef, Source

if TYPE_CHECKING:
    from .batch import BatchProcessor

HEAD = 8192  # the bytes a streamed file is identified by


def keep_too_large(batch: BatchProcessor, ref: FileRef) -> None:
    """Keep the bytes of a file over the limit (streamed) but make no document: quarantined too-large, or
    unstable when the file changed while it was hashed or while the store copied it."""
    with _local_copy(batch.source, ref) as local:
        with batch._time("read_hash"):
            try:
                with open_for_reading(local()) as stream:
                    digests, size, head = digest_unchanged(stream, expected_size=ref.size, head=HEAD)
                    status = os.fstat(stream.fileno())
            except FileChangedError as exc:
                unstable = exc.strerror
            except OSError as exc:
                batch.rows.unread(ref, exc)
                return
            else:
                unstable = None
        if unstable is None:
            mark = len(batch.rows.events)
            if _store_unchanged(batch, ref, local(), digests["sha256"], size, head, status):
                batch.rows.set_aside(ref, digests["sha256"], size, identify(head), "too-large",
                                     f"{size} bytes exceeds the limit of {batch.options.max_file_bytes} bytes "
                                     "(max_file_bytes); original kept, no text extracted")
                return
            del batch.rows.events[mark:]  # (the events of the copy that was not kept)
            unstable = "changed while it was copied into the store, after its checksum was taken; it is being written"
        _keep_snapshot(batch, ref, local(), unstable)


def _store_unchanged(batch: BatchProcessor, ref: FileRef, path: str, sha256: str, size: int, head: bytes,
                     status: os.stat_result) -> bool:
    """Store the file at path as the original with this checksum: False (nothing stored) when the store's copy
    failed because the file changed since status (the store read other bytes than those hashed)."""
    batch.summary.bytes_read += size
    batch.rows.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {size} bytes (streamed)", sha256=sha256,
                     path=ref.path, tool=DIGEST_TOOL)
    try:
        with batch._time("store_originals"):
            batch._store_original(ref, sha256, path=path, size=size)
    except StoreError:
        if _unchanged(path, status):
            raise
        return False
    return True


def _keep_snapshot(batch: BatchProcessor, ref: FileRef, path: str, unstable: str) -> None:
    """A file that changed while it was read: a copy of the bytes it has now (up to the size it has when the copy
    begins) is kept as its original, and it is quarantined unstable."""
    with tempfile.NamedTemporaryFile(prefix="archive-snapshot-") as copy:
        with batch._time("read_hash"):
            try:
                sha256, size, head = _copy_hashed(path, copy)
            except OSError as exc:
                batch.rows.unread(ref, exc)
                return
        batch.summary.bytes_read += size
        batch.rows.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {size} bytes (a copy, streamed)",
                         sha256=sha256, path=ref.path, tool=DIGEST_TOOL)
        with batch._time("store_originals"):
            batch._store_original(ref, sha256, path=copy.name, size=size)
        batch.rows.set_aside(ref, sha256, size, identify(head), "unstable",
                             f"{unstable}; the {size} bytes it had when copied are kept, no text extracted; "
                             "ingest it again once it is complete")


def _copy_hashed(path: str, copy) -> tuple[str, int, bytes]:
    """(sha256, size, first HEAD bytes) of the file at path, copied into copy as it is read, once: up to the size
    it has when the copy begins, so a file that keeps growing is not chased."""
    digest, size, head = hashlib.sha256(), 0, b""
    with open_for_reading(path, buffering=0) as stream:
        left = os.fstat(stream.fileno()).st_size
        while left > 0 and (chunk := stream.read(min(CHUNK, left))):
            head += chunk[:HEAD - len(head)]
            digest.update(chunk)
            copy.write(chunk)
            size += len(chunk)
            left -= len(chunk)
    copy.flush()
    return digest.hexdigest(), size, head


def _unchanged(path: str, status: os.stat_result) -> bool:
    """Whether the file at path is still the one status describes, as it was (same file, size and mtime)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (
        status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@contextmanager
def _local_copy(source: Source, ref: FileRef) -> Iterator[Callable[[], str]]:
    """A function giving the path of the file on local disk: its own, or a spooled copy (made on first call, removed
    when the block ends). The copy is made inside the caller's read timing and error handling."""
    spool: list[str] = []

    def path() -> str:
        local = source.local_path(ref)
        if local is not None:
            return local
        if not spool:
            with tempfile.NamedTemporaryFile(prefix="archive-spool-", delete=False) as copy:
                spool.append(copy.name)
                with source.open(ref) as stream:
                    shutil.copyfileobj(stream, copy, 1 << 20)
        return spool[0]

    try:
        yield path
    finally:
        for name in spool:
            os.unlink(name)
