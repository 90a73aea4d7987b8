"""Which source a location names: a local directory or s3://bucket/prefix."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .base import Source
from .local import LocalSource


def open_source(source: str | os.PathLike) -> Source:
    """A folder, or s3://bucket/prefix."""
    text = str(source)
    if text.startswith("s3://"):
        from .s3 import S3Source

        return S3Source(text)
    return LocalSource(text)


def overlap(source: str | os.PathLike, dest: str | os.PathLike) -> str | None:
    """Why SOURCE and DEST cannot go together (one inside the other: a run would ingest its own store, or write
    into what it reads), or None. Local paths are compared resolved (links followed); S3 ones by bucket and prefix."""
    source, dest = str(source), str(dest)
    if source.startswith("s3://") != dest.startswith("s3://"):
        return None
    if source.startswith("s3://"):
        (source_bucket, source_prefix), (dest_bucket, dest_prefix) = _bucket_prefix(source), _bucket_prefix(dest)
        if source_bucket != dest_bucket:
            return None
        a, b = PurePosixPath("/", source_prefix), PurePosixPath("/", dest_prefix)
    else:
        a, b = Path(os.path.realpath(source)), Path(os.path.realpath(dest))
    if a == b or b in a.parents:
        return f"SOURCE {source} is inside DEST {dest}: give a store outside the folder it ingests"
    if a in b.parents:
        return f"DEST {dest} is inside SOURCE {source}: the run would ingest its own store; give a DEST outside it"
    return None


def _bucket_prefix(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")
