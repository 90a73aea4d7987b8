"""Message digests in one pass over the bytes (sha256 always, sha512 and md5 on request),
and files opened to read without touching their access time."""

from __future__ import annotations

import hashlib
import os
import ssl
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


_NOATIME = getattr(os, "O_NOATIME", 0)


def open_for_reading(path, buffering: int = -1) -> BinaryIO:
    """path opened to read, without updating its access time where the system allows it.

    Linux's O_NOATIME, granted to a file's owner: reading an original or a source file
    leaves its metadata as it was. On a relatime mount (the default) the first read after
    a write otherwise writes the file's inode, which made the first fixity check of newly
    stored originals write back every one of them. Other files open as usual.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOATIME)
    except PermissionError:
        if not _NOATIME:
            raise
        fd = os.open(path, os.O_RDONLY)  # not this user's file: O_NOATIME is refused (EPERM)
    try:
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
