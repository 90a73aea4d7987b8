"""A run's records settled at commit, under the commit lock: each record's next version, numbered in commit order.

The batches wrote candidates (archive/ingest/recording.py): each file made a document or found a duplicate, with
its description as far as the batch could tell. Here, with every run committed before this one in view:

- a candidate whose bytes made no document (its first copy was set aside) is dropped;
- a record not yet in the archive becomes version 1 ("new");
- a record whose latest version has the same bytes, and either the same description or no sidecar row in this run
  (a run without a row states nothing new), is unchanged: no version;
- otherwise it becomes the next version: "content" (new bytes at the path) or "metadata" (a changed description),
  with the fields that changed and a PREMIS `metadata modification` event naming them, old and new;
- a record whose latest version is a withdrawal stays withdrawn (an ingest does not bring it back).

The candidates are settled a group of parts at a time (SETTLE_ROWS), so that the commit holds a group's rows, not
the run's. A group that changes nothing of its candidates keeps the batches' parts; otherwise it writes one part of
the rows that make its versions (its batches' parts are then listed nowhere, and deleted after the commit).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .. import provenance as ev
from ..describe import describe_text
from ..provenance import RunContext
from ..publish import PartInfo, new_attempt, part_key, write_table_part
from ..records import arrow_schema, json_form, to_table, utc_now
from ..storage import Store
from ..validate import describe_problems, problems
from . import view
from .identity import HASHED, as_json, describe, description_sha256, from_json
from .keyindex import DocumentsOnceCommitted, runs_with_records

PENDING = "pending"
SETTLE_ROWS = 10_000  # candidates settled together: one look-up of their records' committed versions
SHOWN_CHARS = 120  # of an old or new value, in an event's detail


@dataclass
class SettledRecords:
    """What settling gives the manifest: its records parts, the events of the new versions, counts, and the
    batches' parts it no longer lists."""

    parts: list[PartInfo] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"records": 0, "updated": 0})
    unlisted: list[str] = field(default_factory=list)


def settle_records(store: Store, run: RunContext, candidate_parts: list[PartInfo], manifests: list[dict],
                   documents: DocumentsOnceCommitted, index: int, *, rederived: bool = False) -> SettledRecords:
    """Settle the candidates in candidate_parts against the records of manifests (every committed run, read under
    the commit lock). documents: the doc_ids that are documents once this run commits (its among(doc_ids) says which
    are: archive/catalogue/keyindex.py). index: the part number of the first part written
    here (the next ones follow it).

    rederived: the candidates carry their documents' re-derived descriptions (archive reprocess): a record still
    at those bytes, not withdrawn, whose description they change gets a "rederived" version, its statement kept.

    The parts are settled a group at a time (SETTLE_ROWS candidates or one part), each group against the committed
    versions of its own records: a record's next version depends on those alone, so the memory held is a group's,
    not the run's. A group whose candidates are all new records' first versions keeps its parts as written; any
    other group is written again as one part of the rows that make its versions."""
    settled, wrote = SettledRecords(), 0
    for group in _groups(candidate_parts):
        wrote += _settle_group(store, run, group, candidate_parts, manifests, documents, index + wrote, settled,
                               rederived)
        pa.default_memory_pool().release_unused()  # (a group's Arrow buffers handed back before the next)
    return settled


def _groups(parts: list[PartInfo]) -> list[list[PartInfo]]:
    """The parts in order, in groups of at most SETTLE_ROWS candidates (a larger part alone)."""
    groups: list[list[PartInfo]] = []
    rows = 0
    for part in parts:
        if not groups or rows + part.rows > SETTLE_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(part)
        rows += part.rows
    return groups


def _settle_group(store: Store, run: RunContext, group: list[PartInfo], candidate_parts: list[PartInfo],
                  manifests: list[dict], documents: DocumentsOnceCommitted, index: int, settled: SettledRecords,
                  rederived: bool) -> bool:
    """Settle one group of candidate parts into settled (candidate_parts: the run's, where a duplicate's derived
    description is looked up); True if it wrote a part (numbered index)."""
    written = pa.concat_tables([pq.read_table(io.BytesIO(store.get_bytes(p.key))) for p in group])
    ids = pc.unique(written["doc_id"]).to_pylist()
    kept = documents.among(ids)
    table = written.filter(pc.is_in(written["doc_id"], value_set=pa.array(sorted(kept), pa.string())))
    current = _latest(store, manifests, pc.unique(table["record_id"]))
    state = current.select(["record_id", "version", "doc_id", "description_sha256", "change"]).rename_columns(
        ["record_id", "cur_version", "cur_doc_id", "cur_sha256", "cur_change"])
    found = pa.table({"record_id": table["record_id"], "_order": pa.array(range(table.num_rows), pa.int64())}).join(
        state, "record_id", join_type="left outer").sort_by("_order")
    joined = table
    for name in state.column_names[1:]:
        joined = joined.append_column(name, found[name])
    absent = pc.is_null(joined["cur_version"])
    new = pc.and_(absent, pc.equal(joined["change"], "new"))
    same_bytes = pc.fill_null(pc.equal(joined["doc_id"], joined["cur_doc_id"]), False)
    # (no mask holds a null: a row a null leaves out of work would be dropped, neither kept nor versioned)
    nothing_said = pc.or_(pc.is_null(joined["stated"]),
                          pc.fill_null(pc.equal(joined["description_sha256"], joined["cur_sha256"]), False))
    unchanged = pc.and_(same_bytes, nothing_said)
    withdrawn = pc.fill_null(pc.equal(joined["cur_change"], view.WITHDRAWN), False)
    if rederived:  # (no new records, and each record's statement stands: the descriptions are compared below)
        new = pc.equal(joined["change"], "(none)")
        unchanged = pc.invert(same_bytes)
    settled.counts["records"] += pc.sum(new).as_py() or 0
    work = joined.filter(pc.invert(pc.or_(pc.or_(new, unchanged), withdrawn)))
    if table.num_rows == written.num_rows and pc.all(new).as_py():
        settled.parts.extend(group)  # every candidate is a new record's first version, as written
        return False

    kept = joined.filter(new).select(table.column_names)
    made = _versions(store, run, manifests, work.select(table.column_names), current, candidate_parts, settled,
                     "rederived" if rederived else None)
    if made:
        found = [p for row in made[:1] + made[-1:] for p in problems("record", row)]
        if found:  # our own bug, not the input's: fail loudly
            raise ValueError(f"records row is invalid: {describe_problems(found)}")
        kept = pa.concat_tables([kept.cast(arrow_schema("records")), to_table("records", made)])
    settled.unlisted.extend(p.key for p in group)
    if not kept.num_rows:
        return False
    settled.parts.append(write_table_part(store, "records", part_key("records", run.run_id, index, new_attempt()),
                                          kept))
    return True


def _latest(store: Store, manifests: list[dict], record_ids: pa.Array) -> pa.Table:
    """The latest committed version of each of these records: read from the runs that hold them (their record-id
    indexes say which: archive/catalogue/keyindex.py), not from every records part."""
    holding = runs_with_records(store, manifests, record_ids.to_pylist())
    rows = view.record_rows(store, holding, view.among("record_id", record_ids))
    return view.latest(rows)


def _versions(store: Store, run: RunContext, manifests: list[dict], work: pa.Table, current: pa.Table,
              candidates: list[PartInfo], settled: SettledRecords, change: str | None = None) -> list[dict]:
    """The rows (JSON form) of the versions the candidates in work make; their events go to settled."""
    previous = {row["record_id"]: json_form(row) for row in current.to_pylist()}
    rows = [json_form(row) for row in work.to_pylist()]
    derived_of = _derived(store, manifests, candidates,
                          {r["doc_id"] for r in rows if r["change"] == PENDING
                           and previous.get(r["record_id"], {}).get("doc_id") != r["doc_id"]})
    made = []
    for row in rows:
        before = previous.get(row["record_id"])
        if row["change"] == PENDING:
            row["derived"] = before["derived"] if before and before["doc_id"] == row["doc_id"] \
                else derived_of[row["doc_id"]]
        if row["stated"] is None and before is not None:  # no row in this run: the statement stands
            row["stated"], row["sidecar"] = before["stated"], before["sidecar"]
        values = describe(from_json(row["derived"]), from_json(row["stated"]))
        row.update(values, description_sha256=description_sha256(values), recorded_at=utc_now())
        if before is None:
            row.update(version=1, change="new", changed_fields=[])
            settled.counts["records"] += 1
        elif before["doc_id"] == row["doc_id"] and before["description_sha256"] == row["description_sha256"]:
            continue
        else:
            content = before["doc_id"] != row["doc_id"]
            changed = ["doc_id"] * content + [("date" if c == "date_text" else c) for c in HASHED
                                              if before[c] != row[c]]
            row.update(version=before["version"] + 1, change=change or ("content" if content else "metadata"),
                       changed_fields=changed)
            settled.counts["updated"] += 1
            settled.events.append(modification_event(run, row, before))
        made.append(row)
    return made


def modification_event(run: RunContext, row: dict, before: dict) -> dict:
    """The PREMIS metadata modification event of a record's new version: fields, old and new values, the run."""
    said = []
    for name in row["changed_fields"]:
        column = "date_text" if name == "date" else name
        said.append(f"{name} {_shown(before[column])} -> {_shown(row[column])}")
    where = f" (stated in {row['sidecar']})" if row["sidecar"] and row["stated"] != before["stated"] else ""
    detail = (f"record {row['record_id']} ({row['path']}) version {row['version']} by run {row['run_id']}: "
              + "; ".join(said) + where + (f"; {row['reason']}" if row.get("reason") else ""))
    return run.event(ev.METADATA_MODIFICATION, ev.SUCCESS, detail, sha256=row["doc_id"], path=row["path"])


def _shown(value) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…")


def _derived(store: Store, manifests: list[dict], candidates: list[PartInfo], doc_ids: set[str]) -> dict[str, str]:
    """doc_id -> the derived description (JSON) of each of these documents: from this run's candidates (the
    parts, any group's), else from a committed record of the document, else (a store older than records) from its
    text."""
    if not doc_ids:
        return {}
    found: dict[str, str] = {}
    wanted = pa.array(sorted(doc_ids), pa.string())
    made_here = view.dataset(store, "records", [p.key for p in candidates]).to_table(
        filter=view.among("doc_id", wanted) & (ds.field("change") != PENDING), columns=["doc_id", "derived"])
    for source in (made_here,
                   view.record_rows(store, manifests, view.among("doc_id", wanted), ["doc_id", "derived"])):
        mine = source.filter(pc.is_in(source["doc_id"], value_set=wanted)).select(["doc_id", "derived"])
        for doc_id, derived in zip(mine["doc_id"].to_pylist(), mine["derived"].to_pylist()):
            found.setdefault(doc_id, derived)
    missing = pa.array(sorted(doc_ids - set(found)), pa.string())
    if len(missing):
        documents = view.dataset(store, "documents", view.parts(manifests, "documents")).to_table(
            filter=view.among("doc_id", missing), columns=["doc_id", "text"])
        for doc_id, text in zip(documents["doc_id"].to_pylist(), documents["text"].to_pylist()):
            described = describe_text(text)
            found.setdefault(doc_id, as_json({k: v for k, v in (("title", described.title), ("date", described.date),
                                                                ("language", described.language)) if v}))
    return found

