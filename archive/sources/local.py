"""LocalSource: discovery in a local directory tree, and Prefetch, a local file read ahead of its turn."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import SourceError
from ..fixity import file_kind, open_for_reading, read_unchanged
from .base import FileRef, Source, display_path


class LocalSource(Source):
    """A directory tree, walked to any depth. Symlinks are followed only to regular files inside the tree;
    a link out of it, a dangling link, a linked directory, a device, a socket or a FIFO (linked or not)
    gets a skipped row with the reason instead. Only regular files are ever opened (open_for_reading)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.url = str(self.root)
        if not self.root.exists():
            raise SourceError(f"source {self.root} does not exist")
        if not self.root.is_dir():
            raise SourceError(f"source {self.root} is not a directory")
        self._real_root = os.path.realpath(self.root)

    def iter_files(self) -> Iterator[FileRef]:
        """Depth first, each folder's entries sorted by name, a folder's files where the folder comes: with a
        stack of the folders being listed, not recursion, so no depth of folders is too deep."""
        try:
            top = _listing(str(self.root))
        except OSError as exc:
            raise SourceError(f"source {self.root} cannot be listed: {exc.strerror or exc}") from exc
        stack: list[tuple[str, Iterator[os.DirEntry]]] = [("", iter(top))]
        while stack:
            prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            rel = prefix + entry.name
            shown = display_path(rel)
            try:
                if entry.is_symlink():
                    yield self._symlink(entry, shown)
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        inside = _listing(entry.path)
                    except OSError as exc:
                        yield FileRef(shown, entry.path, None, "unreadable",
                                      f"directory cannot be listed ({exc.strerror or exc}); "
                                      "the files in it were not seen")
                        continue
                    stack.append((rel + "/", iter(inside)))
                elif entry.is_file(follow_symlinks=False):
                    yield FileRef(shown, entry.path, entry.stat(follow_symlinks=False).st_size)
                else:
                    yield _not_regular(shown, entry.path, entry.stat(follow_symlinks=False).st_mode)
            except OSError as exc:
                yield FileRef(shown, entry.path, None, "unreadable", exc.strerror or str(exc))

    def _symlink(self, entry: os.DirEntry, shown: str) -> FileRef:
        target = os.path.realpath(entry.path)
        link = os.readlink(entry.path)
        inside = target == self._real_root or target.startswith(self._real_root + os.sep)
        if not inside:
            return FileRef(shown, entry.path, None, "symlink-outside-source",
                           f"symbolic link to {display_path(link)}, outside the source: not followed")
        try:
            status = os.stat(target)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise
            return FileRef(shown, entry.path, None, "broken-symlink",
                           f"symbolic link to {display_path(link)}, which does not exist")
        if stat.S_ISDIR(status.st_mode):
            return FileRef(shown, entry.path, None, "symlinked-directory",
                           f"symbolic link to directory {display_path(link)}: "
                           "its files are ingested where they really are")
        if not stat.S_ISREG(status.st_mode):
            return _not_regular(shown, entry.path, status.st_mode, f"symbolic link to {display_path(link)}, a ")
        # A link to a file inside the source: the same bytes under a second
        # name, which deduplication accounts for.
        return FileRef(shown, target, status.st_size)

    def open(self, ref: FileRef) -> BinaryIO:
        return open_for_reading(ref.location)

    def read(self, ref: FileRef) -> bytes:
        """The file's bytes; FileChangedError (with them) if it changed while read or since it was listed."""
        with self.open(ref) as stream:
            return read_unchanged(stream, ref.size)

    def root_file(self, name: str) -> FileRef | None:
        path = self.root / name
        if path.is_symlink() or not path.is_file():
            return None
        return FileRef(display_path(name), str(path), path.stat().st_size)

    def local_path(self, ref: FileRef) -> str | None:
        return ref.location

    def prefetch(self, ref: FileRef) -> "Prefetch":
        return Prefetch(ref.location, ref.size)


class Prefetch:
    """A local file opened ahead of its turn, its pages asked of the kernel (POSIX_FADV_WILLNEED): the disk
    reads them while the batch works on the files before it. result() reads the bytes, or raises what
    opening the file raised (NotRegularFileError: not a regular file) or FileChangedError (the file is not
    expected_size bytes, or changed while read); close() lets go of a file that is not to be read after all
    (idempotent)."""

    def __init__(self, path: str, expected_size: int | None = None):
        self._stream = None
        self._expected_size = expected_size
        self._error: OSError | None = None
        try:
            self._stream = open_for_reading(path, buffering=0)
        except OSError as exc:
            # Said when the file's turn comes, as a read then would; without the traceback, which holds the
            # frames of the batch that began the read (see result()).
            self._error = exc.with_traceback(None)
            return
        try:
            os.posix_fadvise(self._stream.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):
            pass  # only a hint: without it the read waits for the disk in its turn

    def result(self) -> bytes:
        if self._error is not None:
            error, self._error = self._error, None
            try:
                raise error
            finally:
                error = None  # (an exception in a local of the frame it is raised from: a reference cycle)
        with self._stream as stream:
            return read_unchanged(stream, self._expected_size)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _listing(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda e: e.name)


def _not_regular(shown: str, location: str, mode: int, how: str = "") -> FileRef:
    return FileRef(shown, location, None, "not-a-regular-file", f"{how}{file_kind(mode)}, not a regular file: "
                                                                  "nothing to read")
