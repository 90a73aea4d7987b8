"""LocalSource: discovery in a local directory tree, and Prefetch, a local file read ahead of its turn."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import SourceError
from ..fixity import open_for_reading
from .base import FileRef, Source, display_path


class LocalSource(Source):
    """A directory tree. Symlinks are followed only to files inside the tree;
    a link out of it, a dangling link, a linked directory, a device or a FIFO
    gets a skipped row with the reason instead."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.url = str(self.root)
        if not self.root.exists():
            raise SourceError(f"source {self.root} does not exist")
        if not self.root.is_dir():
            raise SourceError(f"source {self.root} is not a directory")
        self._real_root = os.path.realpath(self.root)

    def iter_files(self) -> Iterator[FileRef]:
        yield from self._walk(str(self.root), "")

    def _walk(self, directory: str, prefix: str) -> Iterator[FileRef]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not prefix:
                raise SourceError(f"source {self.root} cannot be listed: {exc.strerror or exc}") from exc
            rel = prefix.rstrip("/")
            yield FileRef(display_path(rel), directory, None, "unreadable",
                          f"directory cannot be listed ({exc.strerror or exc}); the files in it were not seen")
            return
        for entry in entries:
            rel = prefix + entry.name
            shown = display_path(rel)
            try:
                if entry.is_symlink():
                    yield from self._symlink(entry, rel, shown)
                elif entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path, rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    yield FileRef(shown, entry.path, entry.stat(follow_symlinks=False).st_size)
                else:
                    kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                    yield FileRef(shown, entry.path, None, "not-a-regular-file",
                                  f"{kind}, not a regular file: nothing to read")
            except OSError as exc:
                yield FileRef(shown, entry.path, None, "unreadable", exc.strerror or str(exc))

    def _symlink(self, entry: os.DirEntry, rel: str, shown: str) -> Iterator[FileRef]:
        target = os.path.realpath(entry.path)
        link = os.readlink(entry.path)
        inside = target == self._real_root or target.startswith(self._real_root + os.sep)
        if not inside:
            yield FileRef(shown, entry.path, None, "symlink-outside-source",
                          f"symbolic link to {display_path(link)}, outside the source: not followed")
        elif not os.path.exists(target):
            yield FileRef(shown, entry.path, None, "broken-symlink",
                          f"symbolic link to {display_path(link)}, which does not exist")
        elif os.path.isdir(target):
            yield FileRef(shown, entry.path, None, "symlinked-directory",
                          f"symbolic link to directory {display_path(link)}: "
                          "its files are ingested where they really are")
        else:
            # A link to a file inside the source: the same bytes under a second
            # name, which deduplication accounts for.
            yield FileRef(shown, target, os.stat(target).st_size)

    def open(self, ref: FileRef) -> BinaryIO:
        return open_for_reading(ref.location)

    def root_file(self, name: str) -> FileRef | None:
        path = self.root / name
        if path.is_symlink() or not path.is_file():
            return None
        return FileRef(display_path(name), str(path), path.stat().st_size)

    def local_path(self, ref: FileRef) -> str | None:
        return ref.location

    def prefetch(self, ref: FileRef) -> "Prefetch":
        return Prefetch(ref.location)


class Prefetch:
    """A local file opened ahead of its turn, its pages asked of the kernel (POSIX_FADV_WILLNEED): the disk
    reads them while the batch works on the files before it. result() reads the bytes, or raises what
    opening the file raised; close() lets go of a file that is not to be read after all (idempotent)."""

    def __init__(self, path: str):
        self._stream = None
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
            return stream.readall()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
