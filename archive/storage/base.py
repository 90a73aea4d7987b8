"""The store's contract: keys, what a listing and a write report, and the Store interface every store implements."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from ..errors import StoreError
from ..fixity import digest_stream

DEFAULT_DEST = "./archive-store"
MiB = 1 << 20
_KEY_PART = re.compile(r"^[A-Za-z0-9._=+-]+$")


def validate_key(key: str) -> str:
    """Keys are relative, '/'-separated and made of safe characters only.

    Keys are built by this package, never from file names, so anything else is a bug.
    """
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.match(p) for p in parts):
        raise StoreError(key, "not a valid store key")
    return key


def object_key(sha256: str) -> str:
    """Where an original bitstream lives: objects/sha256/ab/cd/abcd..."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"objects/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # When the store last wrote the object (seconds since the epoch), as the
    # listing itself reports it: gc tells a crashed run's leftovers from the
    # parts of a run still in progress without one request per key.
    # None where a store cannot tell.
    modified: float | None = None


@dataclass(frozen=True)
class PutResult:
    key: str
    size: int
    # The SHA-256 the store itself reports for what it holds (S3's checksum, or
    # the local store's re-read), so callers can compare it with their own.
    stored_sha256: str | None = None


class Store(ABC):
    """Write-once object storage. Implementations never overwrite a key."""

    url: str
    # Whether asking size() before a write costs less than the write it may
    # spare: a stat() on a local disk does; on S3 a HEAD costs a round trip, a
    # good part of what a PUT costs, so a conditional PUT goes first and the
    # HEAD only follows a refusal.
    probe_before_put: bool = True
    # How many originals an ingest batch may have on their way into the store at
    # once. A local disk gains nothing from more than one writer; an S3 PUT waits
    # a round trip (and, on one machine, the server's CPU), which the batch spends
    # on the next files instead.
    concurrent_writes: int = 1
    # How many objects an audit reads and hashes at once: where a read waits a round trip (S3), more than one.
    concurrent_reads: int = 1

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> PutResult:
        """Write data under key; raise ObjectExistsError if the key is taken."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike, *, sha256: str | None = None) -> PutResult:
        """Stream a file into key without holding it in memory; write-once."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary stream of the object, for hashing large objects."""

    def sha256(self, key: str) -> tuple[str, int]:
        """(sha256 hex, size) of the stored object, read in chunks (ObjectNotFoundError if there is none)."""
        stream = self.open_read(key)
        try:
            digests, size = digest_stream(stream)
        finally:
            stream.close()
        return digests["sha256"], size

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None if there is no object under key."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """size() of each key, in the order given. A store whose size() waits a round trip (S3) asks
        several at once: a commit checks every part and every reused original this way, under its lock."""
        return {key: self.size(key) for key in keys}

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix, in key order, with its size and modification time."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def flush(self) -> None:  # noqa: B027 - a no-op unless the store caches writes
        """Make everything written so far durable. Called before a manifest is
        committed, so a committed run never points at bytes still in a cache."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise ConfigurationError now if nothing could be written, before any work."""

    @abstractmethod
    def arrow_filesystem(self):
        """A pyarrow.fs.FileSystem that reads this store's keys."""

    @abstractmethod
    def arrow_path(self, key: str) -> str:
        """The path of key on arrow_filesystem()."""
