"""The object store: one write-once interface over a local directory or S3, with the same keys on both."""

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


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
