"""A batch's records: every file it made a document, or found a duplicate of one, is a record with its own
description (its sidecar row over what its format and text give), written as the batch's records part.

The part holds candidates: version 1 of new records as far as the batch can tell. The commit settles them against
the records committed by then (archive/catalogue/settle.py): what is unchanged is dropped, a changed description or
new bytes at a path becomes the record's next version, and a duplicate whose document another batch or run made
gets that document's derived description there (change "pending" until then)."""

from __future__ import annotations

from .. import provenance as ev
from ..catalogue.identity import as_json, describe, description_sha256, record_id
from ..identify import Format
from ..provenance import RunContext
from ..publish import PartInfo, part_key, write_part
from ..records import utc_now
from ..sources import FileRef
from ..storage import Store
from ..validate import describe_problems, problems
from .descriptions import Descriptions, sidecar_report
from .rows import BatchRows

PENDING = "pending"  # a candidate whose derived description the commit supplies


class BatchRecords:
    """The record candidates of one batch, in the order its files came, and what the batch does with the sidecar:
    the sidecar file itself, and the files whose description cannot be used (set aside in rows)."""

    def __init__(self, run: RunContext, descriptions: Descriptions, rows: BatchRows):
        self.run, self.descriptions, self.rows = run, descriptions, rows
        self._found: list[tuple[str, str, dict | None]] = []  # (path, doc_id, derived elements or None)
        self._derived: dict[str, dict] = {}  # doc_id -> derived elements, of the documents this batch made

    def document(self, path: str, doc_id: str, derived: dict[str, str]) -> None:
        """A file made a document here; derived: the elements its format and text give (no sidecar values)."""
        self._derived[doc_id] = derived
        self._found.append((path, doc_id, derived))

    def duplicate(self, path: str, doc_id: str) -> None:
        self._found.append((path, doc_id, None))

    def sidecar_file(self, ref: FileRef, sha256: str, fmt: Format, size: int) -> None:
        """The metadata.csv is kept like any original but describes the others instead of becoming a document."""
        if self.descriptions.error:
            self.rows.set_aside(ref, sha256, size, fmt, "invalid-metadata",
                                f"{self.descriptions.error}; no descriptive metadata was applied")
            return
        sidecar = self.descriptions.sidecar
        detail = self.descriptions.report or sidecar_report(sidecar)
        warned = self.descriptions.warned or bool(sidecar.problems)
        self.rows.event(ev.VALIDATION, ev.WARNING if warned else ev.SUCCESS, f"{ref.path}: {detail}",
                        sha256=sha256, path=ref.path, tool="jsonschema")
        self.rows.file_row(ref, "skipped", sha256=sha256, fmt=fmt, reason="sidecar-metadata", detail=detail,
                           size=size)

    def badly_described(self, ref: FileRef, sha256: str, fmt: Format, size: int, *, seen: tuple) -> bool:
        """Set the file aside (invalid-metadata) if its sidecar row is invalid, or if, a duplicate (its sha256 in
        one of seen), what its row states cannot be a record's (a document's are checked with the document); True
        if it was.

        Before a file is found a duplicate: a file whose description cannot be used is a quarantined record of its
        own, and the next file with the same bytes is the document, with its own description."""
        _, problem = self.descriptions.lookup(ref.path)
        if problem is None and any(sha256 in found for found in seen):
            problem = self._invalid_statement(ref.path, sha256)
        if problem is not None:
            self.rows.set_aside(ref, sha256, size, fmt, "invalid-metadata", problem)
        return problem is not None

    def _invalid_statement(self, path: str, doc_id: str) -> str | None:
        """Why the values the sidecar states for path cannot be a record's (a record holds what a document may: a
        title of at most 1,000 characters, a lower-case language code...), or None."""
        stated, sidecar = self.descriptions.stated(path)
        if not stated:
            return None
        found = problems("record", self._row(path, doc_id, {}, stated, sidecar))
        return f"{sidecar} cannot describe a record: {describe_problems(found)}" if found else None

    def candidates(self) -> list[dict]:
        """The candidates, derived descriptions filled in from this batch's documents where it made them."""
        out = []
        for path, doc_id, derived in self._found:
            stated, sidecar = self.descriptions.stated(path)
            out.append(self._row(path, doc_id, derived if derived is not None else self._derived.get(doc_id),
                                 stated, sidecar))
        return out

    def write(self, store: Store, index: int, attempt: str, parts: list[PartInfo]) -> None:
        """Write the candidates as the batch's records part (if any), added to parts."""
        rows = self.candidates()
        if rows:
            parts.append(write_part(store, "records", part_key("records", self.run.run_id, index, attempt), rows))

    def _row(self, path: str, doc_id: str, derived: dict | None, stated: dict | None, sidecar: str | None) -> dict:
        values = describe(derived, stated)
        return {
            "record_id": record_id(path), "path": path, "version": 1 if derived is not None else 0,
            "run_id": self.run.run_id, "change": "new" if derived is not None else PENDING, "changed_fields": [],
            "reason": None, "doc_id": doc_id, "collection": self.run.collection, **values,
            "sidecar": sidecar if stated else None, "stated": as_json(stated) if stated else None,
            "derived": as_json(derived) if derived is not None else "",
            "description_sha256": description_sha256(values) if derived is not None else "",
            "recorded_at": utc_now(),
        }
