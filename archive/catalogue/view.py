"""The current view of the records (and of documents and reuse, which withdrawals change), and views as of a run.

Records are write-once rows, one per version (archive/catalogue/settle.py numbers them at commit). The current
view keeps each record's latest version unless that version is a withdrawal. It is the published parts with a
filter: the rows it leaves out are named by (record_id, version) or by doc_id, worked out from the few columns
that say so (record_id, version, change, doc_id), so an analyst's scan reads and filters the parts as before,
lazily, and only runs that made new versions or withdrew records make a filter at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..errors import NotFoundError
from ..records import arrow_schema
from ..storage import Store

WITHDRAWN = "withdrawn"
# Runs whose records rows can supersede or withdraw others: an ingest that made new versions, and these kinds.
CHANGING_KINDS = ("withdrawal", "reprocess")


def in_commit_order(manifests: Iterable[dict]) -> list[dict]:
    """The manifests in the order their runs committed (committed_at, written under the commit lock)."""
    return sorted(manifests, key=lambda m: (m["committed_at"], m["run_id"]))


def as_of(manifests: list[dict], run_id: str | None) -> list[dict]:
    """The manifests committed up to and including run_id's (all of them for None)."""
    if run_id is None:
        return manifests
    ordered = in_commit_order(manifests)
    for position, manifest in enumerate(ordered):
        if manifest["run_id"] == run_id:
            return ordered[:position + 1]
    raise NotFoundError(f"no committed run {run_id} (as_of)")


def parts(manifests: Iterable[dict], name: str) -> list[str]:
    return [p["key"] for m in manifests for p in m["parts"] if p["dataset"] == name]


def dataset(store: Store, name: str, keys: list[str]) -> ds.Dataset:
    return ds.dataset([store.arrow_path(k) for k in keys], schema=arrow_schema(name), format="parquet",
                      filesystem=store.arrow_filesystem())


def changes_records(manifests: Iterable[dict]) -> bool:
    """Whether any of these runs made a version beyond a record's first, or withdrew one."""
    return any(m["kind"] in CHANGING_KINDS or m["counts"].get("updated", 0) for m in manifests)


def among(column: str, values) -> ds.Expression:
    """column is one of values (strings; an empty list matches nothing)."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(list(values), pa.string())
    return ds.field(column).isin(values)


def version_key() -> ds.Expression:
    """A records row's (record_id, version) as one string expression: "<record_id>#<version>"."""
    return pc.binary_join_element_wise(ds.field("record_id"), ds.field("version").cast(pa.string()), "#")


def latest(table: pa.Table) -> pa.Table:
    """One row per record_id of a table of records rows (at least record_id and version): its highest version."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, [("record_id", "ascending"), ("version", "descending")])
    ids = table["record_id"].take(order)
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(ids[1:], ids[:-1]).combine_chunks()])
    return table.take(order.filter(first))


@dataclass(frozen=True)
class Withdrawals:
    """What the current views leave out: superseded record versions, withdrawn records, and the documents no
    current record uses any more because of a withdrawal."""

    superseded: pa.Array  # "<record_id>#<version>" of versions a later one replaced
    withdrawn_records: pa.Array  # record_id of records whose latest version is a withdrawal
    withdrawn_documents: pa.Array  # doc_id of documents withdrawn (no current record uses them)

    def records_filter(self) -> ds.Expression | None:
        exprs = []
        if len(self.superseded):
            exprs.append(~version_key().isin(self.superseded))
        if len(self.withdrawn_records):
            exprs.append(~ds.field("record_id").isin(self.withdrawn_records))
        return _all(exprs)

    def documents_filter(self, *columns: str) -> ds.Expression | None:
        if not len(self.withdrawn_documents):
            return None
        return _all([~ds.field(column).isin(self.withdrawn_documents) for column in columns])


def _all(exprs: list[ds.Expression]) -> ds.Expression | None:
    if not exprs:
        return None
    out = exprs[0]
    for expr in exprs[1:]:
        out = out & expr
    return out


def withdrawals(store: Store, manifests: list[dict], verify: Callable | None = None) -> Withdrawals:
    """Read the few columns that say which rows the current views leave out (nothing if no run changed any).
    verify: archive.partcheck.verify_parts, to check the records parts read against their manifests first."""
    empty = pa.array([], pa.string())
    if not changes_records(manifests):
        return Withdrawals(empty, empty, empty)
    if verify is not None:
        verify(store, [(m["run_id"], p) for m in manifests for p in m["parts"] if p["dataset"] == "records"])
    keys = dataset(store, "records", parts(manifests, "records")).to_table(
        columns=["record_id", "version", "change", "doc_id"])
    newest = latest(keys)
    superseded = keys.join(newest.select(["record_id", "version"]).rename_columns(["record_id", "newest"]),
                           "record_id").filter(pc.field("version") < pc.field("newest"))
    withdrawn = newest.filter(pc.equal(newest["change"], WITHDRAWN))
    in_use = newest.filter(pc.not_equal(newest["change"], WITHDRAWN))["doc_id"]
    documents = pc.unique(withdrawn["doc_id"])
    documents = documents.filter(pc.invert(pc.is_in(documents, value_set=pc.unique(in_use))))
    joined = pc.binary_join_element_wise(superseded["record_id"], superseded["version"].cast(pa.string()), "#")
    return Withdrawals(joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined,
                       withdrawn["record_id"].combine_chunks(), documents)


@dataclass(frozen=True)
class TextVersions:
    """The documents a reprocess run gave a new text (archive/catalogue/reprocess.py), and which of their rows
    hold the current one: the latest re-derivation in commit order."""

    redone: pa.Array  # doc_id
    rows: pa.Array  # "<doc_id>#<run_id>" of the documents rows with the current texts
    texts: pa.Array  # "<doc_id>#<text_sha256>" of the current texts

    def filter(self, name: str) -> ds.Expression | None:
        if not len(self.redone):
            return None
        if name == "reuse":  # (passages found in an older text: their offsets are not the current text's)
            return self._current("doc_id_a", "text_sha256_a", self.texts) & \
                self._current("doc_id_b", "text_sha256_b", self.texts)
        if name == "documents":
            return self._current("doc_id", "run_id", self.rows)
        return self._current("doc_id", "text_sha256", self.texts)

    def _current(self, doc_id: str, key: str, current: pa.Array) -> ds.Expression:
        """The row's document was never re-derived, or its doc_id#key is current (a null key is not)."""
        joined = pc.binary_join_element_wise(ds.field(doc_id), ds.field(key), "#")
        return ~ds.field(doc_id).isin(self.redone) | joined.isin(current)

    def is_current(self, doc_ids: pa.Array, shas: pa.Array) -> pa.Array:
        """Per (doc_id, text_sha256): whether it is a current text (booleans, no nulls)."""
        fresh = pc.invert(pc.is_in(doc_ids, value_set=self.redone))
        if not len(self.redone):
            return fresh
        return pc.or_(fresh, pc.is_in(pc.binary_join_element_wise(doc_ids, shas, "#"), value_set=self.texts))

    def including(self, run_id: str, texts: dict[str, str]) -> "TextVersions":
        """These versions, and the texts (doc_id -> text_sha256) of run_id, an uncommitted reprocess run's, as the
        current ones of their documents."""
        if not texts:
            return self
        keep = pc.invert(pc.is_in(_doc_of(self.rows), value_set=pa.array(sorted(texts), pa.string())))
        return TextVersions(
            pc.unique(pa.concat_arrays([self.redone, pa.array(sorted(texts), pa.string())])),
            pa.concat_arrays([self.rows.filter(keep), pa.array([f"{d}#{run_id}" for d in texts], pa.string())]),
            pa.concat_arrays([self.texts.filter(keep), pa.array([f"{d}#{s}" for d, s in texts.items()],
                                                                pa.string())]))


def _doc_of(keyed: pa.Array) -> pa.Array:
    """The doc_id of "<doc_id>#<...>" strings (a doc_id is a SHA-256: 64 characters)."""
    return pc.utf8_slice_codeunits(keyed, 0, 64)


def text_versions(store: Store, manifests: list[dict], verify: Callable | None = None) -> TextVersions:
    """Read the doc_id and text_sha256 of the documents rows reprocess runs published (nothing without them)."""
    latest: dict[str, tuple[str, str]] = {}
    for manifest in in_commit_order(manifests):
        if manifest["kind"] != "reprocess":
            continue
        if verify is not None:
            verify(store, [(manifest["run_id"], p) for p in manifest["parts"] if p["dataset"] == "documents"])
        table = dataset(store, "documents", parts([manifest], "documents")).to_table(columns=["doc_id", "text_sha256"])
        for doc_id, text in zip(table["doc_id"].to_pylist(), table["text_sha256"].to_pylist()):
            latest[doc_id] = (manifest["run_id"], text)
    return TextVersions(pa.array(sorted(latest), pa.string()),
                        pa.array([f"{d}#{run}" for d, (run, _) in latest.items()], pa.string()),
                        pa.array([f"{d}#{text}" for d, (_, text) in latest.items()], pa.string()))


def current_filter(store: Store, name: str, manifests: list[dict],
                   verify: Callable | None = None) -> ds.Expression | None:
    """The filter that makes a dataset's rows its current view (None: every row is current)."""
    if name not in ("records", "documents", "reuse", "reuse_bands"):
        return None
    found = withdrawals(store, manifests, verify)
    if name == "records":
        return found.records_filter()
    texts = text_versions(store, manifests, verify).filter(name)
    if name == "reuse":
        return _all([e for e in (found.documents_filter("doc_id_a", "doc_id_b"), texts) if e is not None])
    return _all([e for e in (found.documents_filter("doc_id"), texts) if e is not None])


def record_rows(store: Store, manifests: list[dict], filter: ds.Expression | None = None,
                columns: list[str] | None = None) -> pa.Table:
    """Every version of the records the filter selects (all of them for None)."""
    return dataset(store, "records", parts(manifests, "records")).to_table(filter=filter, columns=columns)
