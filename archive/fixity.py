"""Message digests in one pass over the bytes: sha256 always, sha512 and md5 on request."""

from __future__ import annotations

import hashlib
import ssl
from typing import BinaryIO, Iterable

CHUNK = 1 << 20
TOOL = f"hashlib ({ssl.OPENSSL_VERSION})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    with open(path, "rb") as stream:
        return digest_stream(stream, algorithms)
