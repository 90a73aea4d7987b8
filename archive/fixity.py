"""Message digests in one pass over the bytes (sha256 always, sha512 and md5 on request), and files opened to
read: regular files only, checked on the descriptor, without touching their access time; read whole or hashed with
a check that they did not change meanwhile."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import ssl
import stat
import time
from typing import BinaryIO, Iterable

CHUNK = 1 << 20
TOOL = f"hashlib ({ssl.OPENSSL_VERSION})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Characters of a text encoded at once by text_sha256.
TEXT_CHUNK = 1 << 22


def text_sha256(text: str) -> str:
    """sha256 hex of text's UTF-8 bytes, encoded TEXT_CHUNK characters at a time: never a copy of a whole long
    text. (A character is encoded alone, so the pieces' bytes are the whole text's.)"""
    if len(text) <= TEXT_CHUNK:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    for start in range(0, len(text), TEXT_CHUNK):
        digest.update(text[start:start + TEXT_CHUNK].encode("utf-8"))
    return digest.hexdigest()


def digest_stream(stream: BinaryIO, algorithms: Iterable[str] = ("sha256",)) -> tuple[dict[str, str], int]:
    """({algorithm: hex digest}, size) of everything stream yields, read once in chunks."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    size = 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        for h in hashes.values():
            h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}, size


def digest_file(path, algorithms: Iterable[str] = ("sha256",)) -> tuple[dict[str, str], int]:
    with open_for_reading(path) as stream:
        return digest_stream(stream, algorithms)


class NotRegularFileError(OSError):
    """What open_for_reading refuses to read: a named pipe, a device, a socket, a directory. strerror names the
    kind ("named pipe (FIFO), not a regular file"), filename the path."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class FileChangedError(OSError):
    """A file that changed while it was read, or since it was listed: strerror says how, filename names it, and
    data holds the bytes that were read (None when they were not kept)."""

    data: bytes | None = None

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file"


_NOATIME = getattr(os, "O_NOATIME", 0)
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


def open_for_reading(path, buffering: int = -1) -> BinaryIO:
    """path opened to read: a regular file, without updating its access time where the system allows it.

    Only a regular file is read, whatever the name leads to (a symbolic link is followed): the kind is checked on
    the opened descriptor, so a name swapped meanwhile cannot slip another kind in. The open itself does not wait
    (O_NONBLOCK: a named pipe with no writer would hold it until one came) and takes no controlling terminal
    (O_NOCTTY); anything else raises NotRegularFileError naming the kind, so no pipe blocks a reader and no
    device (/dev/zero) is read without end. Blocking reads are restored for the regular file.

    Linux's O_NOATIME, granted to a file's owner: reading an original or a source file
    leaves its metadata as it was. On a relatime mount (the default) the first read after
    a write otherwise writes the file's inode, which made the first fixity check of newly
    stored originals write back every one of them. Other files open as usual.
    """
    try:
        fd = _open(path)
    except OSError as exc:
        # A socket cannot be opened at all (ENXIO, as a device with nothing behind it): its kind from its name.
        mode = _mode(path) if exc.errno == errno.ENXIO else None
        if mode is None or stat.S_ISREG(mode):
            raise
        raise NotRegularFileError(errno.ENXIO, f"{file_kind(mode)}, not a regular file", os.fspath(path)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"{file_kind(mode)}, not a regular file", os.fspath(path))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        stream = open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
    (stream if buffering == 0 else stream.raw).name = os.fsdecode(path)  # (not the descriptor's number)
    return stream


def _mode(path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _open(path) -> int:
    try:
        return os.open(path, _FLAGS | _NOATIME)
    except PermissionError:
        if not _NOATIME:
            raise
        return os.open(path, _FLAGS)  # not this user's file: O_NOATIME is refused (EPERM)


def read_unchanged(stream: BinaryIO, expected_size: int | None = None) -> bytes:
    """Every byte of stream (from open_for_reading), read once; FileChangedError, the bytes read in its data, when
    the file is not as it was listed (expected_size) or changed while it was read (see changed_while_read).

    At most one byte more than the file had when the read began is read: a file that grows meanwhile is read to a
    bound, not chased."""
    fd = stream.fileno()
    before = os.fstat(fd)
    data = _read_upto(stream, before.st_size + 1)
    change = changed_while_read(before, os.fstat(fd), len(data), expected_size)
    if change:
        error = FileChangedError(errno.EAGAIN, change, getattr(stream, "name", None))
        error.data = data
        raise error
    return data


def digest_unchanged(stream: BinaryIO, algorithms: Iterable[str] = ("sha256",), expected_size: int | None = None,
                     head: int = 0) -> tuple[dict[str, str], int, bytes]:
    """({algorithm: hex digest}, size, its first head bytes) of stream (from open_for_reading), read once in chunks;
    FileChangedError (no data kept) as read_unchanged."""
    fd = stream.fileno()
    before = os.fstat(fd)
    hashes = {name: hashlib.new(name) for name in algorithms}
    size, left, first = 0, before.st_size + 1, b""
    while left > 0 and (chunk := stream.read(min(CHUNK, left))):
        if size < head:
            first += chunk[:head - size]
        size += len(chunk)
        left -= len(chunk)
        for h in hashes.values():
            h.update(chunk)
    change = changed_while_read(before, os.fstat(fd), size, expected_size)
    if change:
        raise FileChangedError(errno.EAGAIN, change, getattr(stream, "name", None))
    return {name: h.hexdigest() for name, h in hashes.items()}, size, first


def changed_while_read(before: os.stat_result, after: os.stat_result, read: int,
                       expected_size: int | None = None) -> str | None:
    """How a file changed while it was read, in words, or None: its size or modification time differ before and
    after the read (st_size, st_mtime_ns of the descriptor), the bytes read from the size it had, or that size
    from the one it was listed with (expected_size)."""
    if expected_size is not None and before.st_size != expected_size:
        return (f"changed since it was listed: {expected_size} bytes then, {before.st_size} when it was read; "
                "it is being written")
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        return (f"changed while it was read: {before.st_size} bytes modified {_mtime(before)} before, "
                f"{after.st_size} bytes modified {_mtime(after)} after; it is being written")
    if read != before.st_size:
        return f"changed while it was read: it had {before.st_size} bytes but {read} were read; it is being written"
    return None


def _mtime(status: os.stat_result) -> str:
    seconds, nanoseconds = divmod(status.st_mtime_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds:09d}Z"


def _read_upto(stream: BinaryIO, limit: int) -> bytes:
    """At most limit bytes of stream, fewer only at its end."""
    chunks = []
    while limit > 0:
        chunk = stream.read(limit)
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
