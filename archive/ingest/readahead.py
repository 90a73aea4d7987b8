"""A batch's files with their reads begun ahead of their turn, so the disk or S3 reads while the batch works."""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

from ..sources import FileRef, Prefetch, Source

# The files a batch begins to read ahead of the one it works on: at most so many, of at most so many bytes
# together; a larger file is read when its turn comes.
READ_AHEAD_FILES = 8
READ_AHEAD_BYTES = 32 << 20


def read_ahead(source: Source, refs: Iterable[FileRef], max_file_bytes: int
               ) -> Iterator[tuple[FileRef, Prefetch | None]]:
    """Each ref with its file's read begun ahead of its turn (Source.prefetch; None: read it in turn),
    READ_AHEAD_FILES ahead at most. Closing the generator closes every file it opened."""
    pending: deque[tuple[FileRef, Prefetch | None, int]] = deque()  # (ref, its read, the bytes it asked for)
    try:
        for ref in refs:
            size = ref.size or 0
            ahead = (not ref.skip_reason and ref.size is not None and size <= max_file_bytes
                     and size <= READ_AHEAD_BYTES)
            while pending and (len(pending) >= READ_AHEAD_FILES
                               or (ahead and sum(n for *_, n in pending) + size > READ_AHEAD_BYTES)):
                yield from _hand_over(pending)
            handle = source.prefetch(ref) if ahead else None
            pending.append((ref, handle, size if handle is not None else 0))
        while pending:
            yield from _hand_over(pending)
    finally:  # a batch that fails or stops keeps no file open
        for _, handle, _ in pending:
            if handle is not None:
                handle.close()


def _hand_over(pending: deque) -> Iterator[tuple[FileRef, Prefetch | None]]:
    """The oldest of pending, its file closed once it has been worked on (or the work stopped)."""
    ref, handle, _ = pending.popleft()
    try:
        yield ref, handle
    finally:
        if handle is not None:
            handle.close()
