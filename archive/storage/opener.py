"""Which store a DEST names: a local directory or s3://bucket/prefix."""

from __future__ import annotations

import os

from ..errors import ConfigurationError
from .base import DEFAULT_DEST, Store
from .local import LocalStore


def resolve_dest(dest: str | os.PathLike | None) -> str:
    """DEST from the argument, else ARCHIVE_DEST, else ./archive-store."""
    return str(dest or os.environ.get("ARCHIVE_DEST") or DEFAULT_DEST)


def open_store(dest: str | os.PathLike | None = None) -> Store:
    """The store for DEST: s3://bucket/prefix or a local directory."""
    dest = resolve_dest(dest)
    if dest.startswith("s3://"):
        from .s3 import S3Store

        return S3Store.from_url(dest)
    if "://" in dest:
        raise ConfigurationError(f"DEST {dest!r}: only local paths and s3://bucket/prefix are supported")
    return LocalStore(dest)
