"""The object store: one write-once interface over a local directory or S3, with the same keys on both."""

from .base import DEFAULT_DEST, ObjectInfo, PutResult, Store, object_key, validate_key
from .local import LocalStore, unnamed_files_possible
from .opener import open_store, resolve_dest

__all__ = [
    "DEFAULT_DEST",
    "LocalStore",
    "ObjectInfo",
    "PutResult",
    "Store",
    "object_key",
    "open_store",
    "resolve_dest",
    "unnamed_files_possible",
    "validate_key",
]
