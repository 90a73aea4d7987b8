"""The rows a batch makes for the four datasets (documents, files, quarantine, events) and how it writes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .. import provenance as ev
from ..fixity import NotRegularFileError
from ..identify import Format
from ..provenance import RunContext
from ..publish import part_key, write_part, write_table_part
from ..records import to_table, utc_now
from ..sources import FileRef
from ..storage import Store, object_key
from ..timing import StageTimer
from ..validate import describe_problems, problems
from .summary import REPORTED_PROBLEMS, BatchSummary, Problem

if TYPE_CHECKING:
    import pyarrow as pa


class BatchRows:
    """Every file's outcome as rows, counted in the batch's summary: one files row per file, whatever befell it."""

    def __init__(self, run: RunContext, summary: BatchSummary):
        self.run, self.summary = run, summary
        self.documents: list[dict] = []
        self.files: list[dict] = []
        self.quarantine: list[dict] = []
        self.events: list[dict] = []

    def event(self, event_type: str, outcome: str, detail: str, **kwargs) -> dict:
        """A provenance event of this run, kept with the batch's events."""
        event = self.run.event(event_type, outcome, detail, **kwargs)
        self.events.append(event)
        return event

    def file_row(self, ref: FileRef, outcome: str, *, sha256=None, fmt: Format | None = None,
                 reason=None, detail=None, doc_id=None, size=None) -> None:
        self.files.append({
            "run_id": self.run.run_id,
            "path": ref.path,
            "size": size if size is not None else ref.size,
            "sha256": sha256,
            "object_key": object_key(sha256) if sha256 else None,
            "media_type": fmt.media_type if fmt else None,
            "puid": fmt.puid if fmt else None,
            "outcome": outcome,
            "reason": reason,
            "detail": detail,
            "doc_id": doc_id,
            "seen_at": utc_now(),
            "container_sha256": ref.container,
        })
        self.summary.counts[outcome] += 1
        self.summary.members += ref.container is not None
        if outcome in ("quarantine", "skipped") and len(self.summary.problems) < REPORTED_PROBLEMS:
            self.summary.problems.append(Problem(ref.path, outcome, reason, detail))

    def skip(self, ref: FileRef, reason: str, detail: str) -> None:
        """Not ingested at all (unreadable, not a regular file): its files row says why."""
        self.event(ev.INGESTION, ev.FAILURE, f"not ingested ({reason}): {detail}", path=ref.path)
        self.file_row(ref, "skipped", reason=reason, detail=detail)

    def unread(self, ref: FileRef, exc: OSError) -> None:
        """A file that could not be read: skipped not-a-regular-file, naming its kind, or unreadable, with the
        system's reason."""
        if isinstance(exc, NotRegularFileError):
            self.skip(ref, "not-a-regular-file", f"{exc.strerror}: nothing to read")
        else:
            self.skip(ref, "unreadable", f"cannot be read: {exc.strerror or exc}")

    def set_aside(self, ref: FileRef, sha256: str, size: int, fmt: Format, reason: str, detail: str) -> None:
        """Kept, but made no document: a quarantine row with a reason a person can act on."""
        self.quarantine.append({
            "run_id": self.run.run_id,
            "path": ref.path,
            "sha256": sha256,
            "object_key": object_key(sha256),
            "size": size,
            "media_type": fmt.media_type,
            "puid": fmt.puid,
            "reason": reason,
            "detail": detail,
            "quarantined_at": utc_now(),
        })
        self.event(ev.QUARANTINE, ev.FAILURE, f"{reason}: {detail}", sha256=sha256, path=ref.path)
        self.file_row(ref, "quarantine", sha256=sha256, fmt=fmt, reason=reason, detail=detail, size=size)

    def duplicate(self, ref: FileRef, sha256: str, fmt: Format, size: int, reason: str, detail: str) -> None:
        self.event(ev.DEDUPLICATION, ev.SUCCESS, detail, sha256=sha256, path=ref.path)
        self.file_row(ref, "duplicate", sha256=sha256, fmt=fmt, reason=reason, detail=detail, doc_id=sha256, size=size)

    def unpublish(self, found: dict[str, tuple[str, str]]) -> None:
        """These documents (doc_id -> (reason, detail)) are published by an earlier batch: duplicates here."""
        self.documents = [d for d in self.documents if d["doc_id"] not in found]
        self.events = [e for e in self.events
                       if not (e["event_type"] == ev.PUBLICATION and e["object_sha256"] in found)]
        self.events += make_duplicates(self.run, self.summary, self.files, found)

    def write_parts(self, store: Store, index: int, attempt: str, documents_key: str,
                    documents_written: Callable[[pa.Table], None] | None = None) -> None:
        """Check the rows' shapes, then write a part per dataset that has rows; their infos go to the summary.
        The documents rows are handed over to their Arrow table (self.documents is empty after): a long text is
        not held twice, as a str and in the table, while its Parquet is written. documents_written(table) is
        called with that table once its part is written (the reuse step's band hashes are made there: after
        the Parquet writer has let its memory go)."""
        with self._time("validate"):
            # Events all come from RunContext.event; validating the first of each type and outcome catches a
            # wrong shape at a fraction of the cost (the tests validate every event row).
            shapes: dict[tuple, dict] = {}
            for event in self.events:
                shapes.setdefault((event["event_type"], event["outcome"], event["object_sha256"] is None), event)
            for kind, rows in (("file", self.files), ("quarantine", self.quarantine),
                               ("event", list(shapes.values()))):
                for row in rows:
                    found = problems(kind, row)
                    if found:  # our own bug, not the input's: fail loudly
                        raise ValueError(f"{kind} row for {row.get('path') or row.get('source_path')!r} is invalid: "
                                         f"{describe_problems(found)}")
        with self._time("write_parts"):
            if self.documents:
                table = to_table("documents", self.documents)
                self.documents = []  # (their texts are in the table: not held twice while it is written)
                self.summary.parts.append(write_table_part(store, "documents", documents_key, table))
                if documents_written is not None:
                    documents_written(table)
                del table
            for dataset, rows in (("files", self.files), ("quarantine", self.quarantine), ("events", self.events)):
                if rows:
                    key = part_key(dataset, self.run.run_id, index, attempt)
                    self.summary.parts.append(write_part(store, dataset, key, rows))

    def _time(self, stage: str) -> StageTimer:
        return StageTimer(self.summary.timings, stage)


def make_duplicates(run: RunContext, summary: BatchSummary, files: list[dict], found: dict[str, tuple[str, str]],
                    note: str = "") -> list[dict]:
    """The files rows of these documents (doc_id -> (reason, detail)) become duplicates, and the summary's counts
    and documents follow; returns the deduplication events (their detail + note), for the caller's events."""
    events = []
    for row in files:
        if row["outcome"] == "document" and row["doc_id"] in found:
            reason, detail = found[row["doc_id"]]
            row.update(outcome="duplicate", reason=reason, detail=detail)
            events.append(run.event(ev.DEDUPLICATION, ev.SUCCESS, detail + note, sha256=row["sha256"],
                                    path=row["path"]))
            summary.counts["document"] -= 1
            summary.counts["duplicate"] += 1
    summary.documents = [d for d in summary.documents if d not in found]
    return events
