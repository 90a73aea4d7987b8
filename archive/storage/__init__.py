"""The object store: one write-once interface over a local directory or S3, with the same keys on both."""

from ..lazy import lazy_names
from .base import DEFAULT_DEST, MiB, ObjectInfo, PutResult, Store, object_key, validate_key
from .local import LocalStore, unnamed_files_possible
from .opener import open_store, resolve_dest

# Imported on first use: they bring botocore, which a local store never needs.
_LAZY = {"S3Store": ".s3", "SEND_ATTEMPTS": ".s3_write", "parse_s3_url": ".s3_client"}

__all__ = [
    "DEFAULT_DEST",
    "LocalStore",
    "MiB",
    "ObjectInfo",
    "PutResult",
    "S3Store",
    "SEND_ATTEMPTS",
    "Store",
    "object_key",
    "open_store",
    "parse_s3_url",
    "resolve_dest",
    "unnamed_files_possible",
    "validate_key",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
