"""Ingest sources: a local directory tree or an S3 prefix, walked and read the same way."""

from .base import SIDECAR_NAME, FileRef, LocalSource, Prefetch, Source, batches, display_path, open_source

__all__ = [
    "SIDECAR_NAME",
    "FileRef",
    "LocalSource",
    "Prefetch",
    "Source",
    "batches",
    "display_path",
    "open_source",
]
