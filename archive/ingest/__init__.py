"""Ingest: one batch of files made documents or set aside (process_batch), and the run's commit (commit_run).

A run walks its source in batches; each batch reads every file once (readahead), keeps its original under its
checksum (originals), makes it a document through pure stages or quarantines it with a reason (stages), and writes
its rows as uncommitted parts (rows). The commit settles duplicates across batches and concurrent runs and writes
the manifest under the store's commit lock (commit): only then is the run visible.
"""

from .batch import BatchProcessor, process_batch
from .commit import CommitResult, check_reused_originals, commit_run, publish_run_events, reconcile
from .descriptions import Descriptions, load_descriptions, store_sidecar, unmatched_rows
from .stages import Quarantine
from .summary import DEFAULT_MAX_FILE_BYTES, BatchSummary, IngestOptions, Problem, total_counts

__all__ = [
    "DEFAULT_MAX_FILE_BYTES", "BatchProcessor", "BatchSummary", "CommitResult", "Descriptions",
    "IngestOptions", "Problem", "Quarantine", "check_reused_originals", "commit_run", "load_descriptions",
    "process_batch", "publish_run_events", "reconcile", "store_sidecar", "total_counts", "unmatched_rows",
]
