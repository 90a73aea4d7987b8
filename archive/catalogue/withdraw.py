"""Withdrawal: records (and the documents no current record uses any more) leave the current views, by a committed
run of kind `withdrawal` whose reason the history keeps; with purge, the originals of those documents are deleted.

Nothing is rewritten: a withdrawal is each record's next version (change "withdrawn", the reason), committed under
the commit lock like any run; lineage, the events and PROV keep the whole story. A purge deletes an original's
bytes after the manifest that says so has landed: a crash in between leaves the bytes (kept too long, never lost
unsaid), and `archive withdraw ID --purge` again finishes the purge. It is the only deletion of an original the
archive makes; `archive verify` reports such an original as purged by its run, not missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .. import provenance as ev
from ..commitlock import commit_lock
from ..errors import ConfigurationError, NotFoundError, ObjectNotFoundError
from ..provenance import RunContext, new_run_id
from ..publish import build_manifest, commit_manifest, committed_manifests, new_attempt, part_key, write_part
from ..records import json_form, utc_now
from ..sources import FileRef
from ..storage import Store, object_key
from ..tables import follow_after_commit
from . import view
from .identity import record_id
from .keyindex import write_indexes

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Withdrawal:
    """What a withdrawal run does: the records' withdrawn versions, the documents that leave, the originals it
    purges, and notes on what it left as it was."""

    rows: list[dict] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    purge: list[str] = field(default_factory=list)  # doc_ids whose originals go
    notes: list[str] = field(default_factory=list)


def withdraw(store: Store, idents: Iterable[str], reason: str, *, purge: bool = False,
             run: RunContext | None = None) -> dict:
    """Withdraw the records at these paths, or every current record of these doc_ids, for reason; commit it as a
    run of kind withdrawal. NotFoundError (nothing written) if an id names no record."""
    idents, reason = list(dict.fromkeys(idents)), " ".join(reason.split())
    if not idents or not reason:
        raise ConfigurationError("a withdrawal needs at least one PATH or DOC_ID and a reason")
    run = run or RunContext(new_run_id(), None, store.url)
    with commit_lock(store, run.run_id):
        manifests = list(committed_manifests(store))
        plan = _plan(store, manifests, idents, reason, purge, run)
        events = _events(run, plan, reason)
        parts = []
        if plan.rows:
            parts.append(write_part(store, "records", part_key("records", run.run_id, 0, new_attempt()), plan.rows))
        parts.append(write_part(store, "events", part_key("events", run.run_id, 1, new_attempt()), events))
        counts = {"records": len(plan.rows), "documents": len(plan.documents), "purged": len(plan.purge)}
        manifest = build_manifest(
            run_id=run.run_id, kind="withdrawal", collection=None, source=store.url, started_at=run.started_at,
            flow_run_id=run.flow_run_id, started_by=run.started_by,
            parameters={"ids": idents, "reason": reason, "purge": purge}, counts=counts, parts=parts,
            notes=plan.notes)
        manifest["purged"] = [object_key(doc_id) for doc_id in plan.purge]
        key = commit_manifest(store, manifest, locked=True)
        for doc_id in plan.purge:  # (after the manifest: see the module's docstring)
            try:
                store.delete(object_key(doc_id))
            except ObjectNotFoundError:
                pass
    write_indexes(store, manifest)
    follow_after_commit(store, manifests + [manifest])
    return {"run_id": run.run_id, "manifest": key, "counts": counts, "reason": reason,
            "records": [{"path": r["path"], "record_id": r["record_id"], "version": r["version"], "doc_id": r["doc_id"]}
                        for r in plan.rows],
            "documents": plan.documents, "purged": manifest["purged"], "notes": plan.notes}


def _plan(store: Store, manifests: list[dict], idents: list[str], reason: str, purge: bool,
          run: RunContext) -> Withdrawal:
    paths = [i for i in idents if not _SHA256.match(i)]
    doc_ids = [i for i in idents if _SHA256.match(i)]
    by_path = {record_id(p): p for p in paths}
    from ..lineage import _under_sources  # (a path on this machine under a run's local SOURCE)

    for path in paths:
        for relative in _under_sources(manifests, path, None):
            by_path.setdefault(record_id(relative), path)
    touched = view.record_rows(store, manifests, view.among("record_id", sorted(by_path))
                               | view.among("doc_id", doc_ids), ["record_id"])["record_id"].unique()
    latest = view.latest(view.record_rows(store, manifests, view.among("record_id", touched)))
    rows = [json_form(r) for r in latest.to_pylist()]
    chosen = [r for r in rows if r["record_id"] in by_path or r["doc_id"] in doc_ids]
    missing = [i for i in paths if i not in {by_path[r["record_id"]] for r in chosen if r["record_id"] in by_path}]
    missing += [d for d in doc_ids if d not in {r["doc_id"] for r in chosen}]
    if missing:
        raise NotFoundError(f"no record at {', '.join(map(repr, missing))} in {store.url}; give a path as recorded "
                            "(see the records dataset), a path under a run's SOURCE, or a doc_id; nothing was "
                            "withdrawn")
    plan = Withdrawal()
    for row in chosen:
        if row["change"] == view.WITHDRAWN:
            plan.notes.append(f"record {row['record_id']} ({row['path']}) was already withdrawn by run "
                              f"{row['run_id']}: {row['reason']}")
            continue
        plan.rows.append({**row, "version": row["version"] + 1, "run_id": run.run_id, "change": view.WITHDRAWN,
                          "changed_fields": [], "reason": reason, "recorded_at": utc_now()})
    candidates = sorted({r["doc_id"] for r in chosen})
    in_use = _in_use(store, manifests, candidates, {r["record_id"] for r in plan.rows})
    withdrawn_before = set(view.withdrawals(store, manifests).withdrawn_documents.to_pylist())
    plan.documents = [d for d in candidates if d not in in_use and d not in withdrawn_before]
    if purge:
        for doc_id in candidates:
            if doc_id in in_use:
                plan.notes.append(f"original of {doc_id} not purged: still used by current record(s) "
                                  + ", ".join(sorted(in_use[doc_id])))
            elif store.exists(object_key(doc_id)):
                plan.purge.append(doc_id)
    if not plan.rows and not plan.purge:
        raise NotFoundError("; ".join(plan.notes) + "; nothing was withdrawn")
    return plan


def _in_use(store: Store, manifests: list[dict], doc_ids: list[str], leaving: set[str]) -> dict[str, set[str]]:
    """doc_id -> the paths of the current records (but those leaving) that use it."""
    ids = view.record_rows(store, manifests, view.among("doc_id", doc_ids), ["record_id"])["record_id"].unique()
    latest = view.latest(view.record_rows(store, manifests, view.among("record_id", ids),
                                          ["record_id", "version", "change", "doc_id", "path"]))
    used: dict[str, set[str]] = {}
    for row in latest.filter(pc.not_equal(latest["change"], view.WITHDRAWN)).to_pylist():
        if row["doc_id"] in doc_ids and row["record_id"] not in leaving:
            used.setdefault(row["doc_id"], set()).add(row["path"])
    return used


def _events(run: RunContext, plan: Withdrawal, reason: str) -> list[dict]:
    events = [run.event(ev.DEACCESSION, ev.SUCCESS, f"record {r['record_id']} ({r['path']}) version {r['version']} "
                        f"withdrawn by run {run.run_id}: {reason}", sha256=r["doc_id"], path=r["path"])
              for r in plan.rows]
    events += [run.event(ev.DEACCESSION, ev.SUCCESS, f"document {d} leaves the current views (no current record "
                         f"uses it) by run {run.run_id}: {reason}", sha256=d) for d in plan.documents]
    events += [run.event(ev.DELETION, ev.SUCCESS, f"original {object_key(d)} purged by run {run.run_id}: {reason}",
                         sha256=d) for d in plan.purge]
    events += [run.event(ev.VALIDATION, ev.WARNING, note) for note in plan.notes]
    events.append(run.event(ev.PUBLICATION, ev.SUCCESS, f"withdrawal run {run.run_id} committed: {len(plan.rows)} "
                            f"record(s), {len(plan.documents)} document(s), {len(plan.purge)} original(s) purged"))
    return events


def purged_objects(manifests: Iterable[dict]) -> dict[str, tuple[str, str]]:
    """object key -> (the withdrawal run that purged it, its reason)."""
    return {key: (m["run_id"], m["parameters"].get("reason", "")) for m in manifests if m["kind"] == "withdrawal"
            for key in m.get("purged", [])}


def mark_purged(referenced: pa.Table, purged: dict[str, tuple[str, str]]) -> pa.Table:
    """The audit's table of referenced originals with a purged_by column: "by withdrawal run R: reason" for an
    original a withdrawal purged (archive.audit reports it purged, not missing, if it is gone), else null."""
    said = [f"by withdrawal run {purged[key][0]}: {purged[key][1]}" if key in purged else None
            for key in referenced.column("object_key").to_pylist()]
    return referenced.append_column("purged_by", pa.array(said, pa.string()))


def withdrawn_paths(store: Store, manifests: list[dict]) -> dict[str, str]:
    """path -> why, of every record whose current version is a withdrawal (an ingest skips them)."""
    if not any(m["kind"] == "withdrawal" for m in manifests):
        return {}
    latest = view.latest(view.record_rows(store, manifests, None, ["record_id", "version", "change", "path",
                                                                     "run_id", "reason"]))
    withdrawn = latest.filter(pc.equal(latest["change"], view.WITHDRAWN)).to_pylist()
    return {r["path"]: f"record withdrawn by run {r['run_id']}: {r['reason']}" for r in withdrawn}


def skip_withdrawn(refs: Iterable[FileRef], withdrawn: dict[str, str]) -> Iterator[FileRef]:
    """The refs, those at a withdrawn record's path marked to be skipped (withdrawn): never read, never stored."""
    for ref in refs:
        detail = withdrawn.get(ref.path)
        yield ref if detail is None or ref.skip_reason else replace(ref, skip_reason="withdrawn", skip_detail=detail)
