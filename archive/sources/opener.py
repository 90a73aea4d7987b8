"""Which source a location names: a local directory or s3://bucket/prefix."""

from __future__ import annotations

import os

from .base import Source
from .local import LocalSource


def open_source(source: str | os.PathLike) -> Source:
    """A folder, or s3://bucket/prefix."""
    text = str(source)
    if text.startswith("s3://"):
        from .s3 import S3Source

        return S3Source(text)
    return LocalSource(text)
