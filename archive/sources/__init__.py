"""Ingest sources: a local directory tree or an S3 prefix, walked and read the same way."""

from ..lazy import lazy_names
from .base import SIDECAR_NAME, FileRef, Source, batches, display_path, page_key, path_bytes
from .local import LocalSource, Prefetch
from .opener import open_source, overlap

# Imported on first use: they bring botocore, which a local ingest never needs.
_LAZY = {"S3Source": ".s3", "iter_s3_source": ".s3"}

__all__ = [
    "SIDECAR_NAME",
    "FileRef",
    "LocalSource",
    "Prefetch",
    "S3Source",
    "Source",
    "batches",
    "display_path",
    "iter_s3_source",
    "open_source",
    "overlap",
    "page_key",
    "path_bytes",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
