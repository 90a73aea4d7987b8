"""A record's history: every version, with its run, what changed and why (archive lineage)."""

from __future__ import annotations

from typing import Iterable

import pyarrow.dataset as ds

from . import view
from .identity import record_id

SHOWN = ["record_id", "path", "version", "run_id", "change", "changed_fields", "reason", "doc_id", "title", "date",
         "date_text", "creator", "language", "sidecar", "description_sha256", "recorded_at"]


def record_history(store, manifests: list[dict], *, paths: Iterable[str] = (), doc_id: str | None = None) -> list[dict]:
    """Every version of the records at these paths and of the records that ever pointed at doc_id, oldest first
    for each record, with the time their runs committed."""
    ids = sorted({record_id(path) for path in paths})
    where = view.among("record_id", ids) if ids else None
    if doc_id:
        where = ds.field("doc_id") == doc_id if where is None else where | (ds.field("doc_id") == doc_id)
    if where is None or not view.parts(manifests, "records"):
        return []
    found = view.record_rows(store, manifests, where, ["record_id"])["record_id"].unique()
    rows = view.record_rows(store, manifests, view.among("record_id", found), SHOWN).to_pylist()
    committed = {m["run_id"]: m["committed_at"] for m in manifests}
    for row in rows:
        row["committed_at"] = committed.get(row["run_id"])
    return sorted(rows, key=lambda r: (r["path"], r["version"]))
