"""Archival digitisation and provenance pipeline: the library (no Prefect here).

The public API, importable from `archive` itself:

- stores and sources: `open_store`, `resolve_dest`, `Store`, `LocalStore`, `object_key`; `open_source`, `Source`,
  `FileRef`, `batches`;
- ingest: `process_batch`, `commit_run`, `IngestOptions` (with the extraction `Budgets`), `BatchSummary`,
  `CommitResult`, `RunContext`, `new_run_id`;
- reading: `open_dataset`, `iceberg_table` (the datasets as Apache Iceberg tables), `committed_manifests`,
  `DamagedManifestWarning`;
- auditing: `export_run_prov`, `export_bag`, `export_premis`, `export_mets`, `export_ocfl`, `find_garbage`,
  `delete_garbage`;
- text reuse: `publish_reuse`, `ReuseParams`;
- errors: `ArchiveError`, `TransientError`, `TerminalError`, `is_transient` and the kinds in `archive.errors`.

Names are loaded on first use, so `import archive.claims` (a light module a manager process imports) does not pull
in pyarrow, boto3 and the extractors.
"""

from __future__ import annotations

from .errors import (
    ArchiveError,
    ConfigurationError,
    DamagedPartError,
    ManifestError,
    NotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    SourceError,
    StoreError,
    TerminalError,
    TransientError,
    is_transient,
)
from .lazy import lazy_names

__version__ = "0.1.0"
SOFTWARE_NAME = "archive"

_LAZY = {
    "open_store": ".storage", "resolve_dest": ".storage", "Store": ".storage", "LocalStore": ".storage",
    "object_key": ".storage",
    "open_source": ".sources", "Source": ".sources", "FileRef": ".sources", "batches": ".sources",
    "process_batch": ".ingest", "commit_run": ".ingest", "IngestOptions": ".ingest", "BatchSummary": ".ingest",
    "CommitResult": ".ingest", "Budgets": ".extract.budget",
    "RunContext": ".provenance", "new_run_id": ".provenance", "export_run_prov": ".provenance",
    "open_dataset": ".read", "iceberg_table": ".read", "committed_manifests": ".publish",
    "DamagedManifestWarning": ".publish",
    "export_bag": ".bag", "find_garbage": ".gc", "delete_garbage": ".gc",
    "export_premis": ".export.premis", "export_mets": ".export.mets", "export_ocfl": ".export.ocfl",
    "publish_reuse": ".reuse", "ReuseParams": ".reuse",
}

__all__ = [
    "SOFTWARE_NAME", "__version__", *sorted(_LAZY),
    "ArchiveError", "ConfigurationError", "DamagedPartError", "ManifestError", "NotFoundError", "ObjectExistsError",
    "ObjectNotFoundError", "SourceError", "StoreError", "TerminalError", "TransientError", "is_transient",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
