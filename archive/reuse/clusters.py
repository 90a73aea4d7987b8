"""Clusters of reprints: the passages of reuse rows grouped, each cluster a text and the documents that carry it."""

from __future__ import annotations

import hashlib
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from ..provenance import RunContext
from ..publish import PartInfo, new_attempt, part_key, write_part
from ..read import open_dataset
from ..storage import Store
from .bands import BAND_BATCH, ROWS_PER_PART, _batches

_COLUMNS = ["doc_id_a", "doc_id_b", "text_sha256_a", "text_sha256_b", "start_a", "end_a", "start_b", "end_b"]


class PassageClusters:
    """Union-find over passages: a document's passages whose spans overlap by at least half the shorter are one
    member (its span grows to cover them), and a reuse row joins the members of its two passages. A newspaper page
    that reprints two wire stories is in two clusters, one for each story, not one for the page.

    Memory: a few hundred bytes per member (a document's distinct passages), whatever the rows."""

    def __init__(self):
        self.spans: dict[str, list[list]] = {}  # doc_id -> [[start, end, member, text_sha256], ...]
        self.parent: list[int] = []

    def member(self, doc_id: str, sha: str | None, start: int, end: int) -> int:
        spans = self.spans.setdefault(doc_id, [])
        for span in spans:
            overlap = min(end, span[1]) - max(start, span[0])
            if overlap > 0 and 2 * overlap >= min(end - start, span[1] - span[0]):
                span[0], span[1] = min(start, span[0]), max(end, span[1])
                return span[2]
        number = len(self.parent)
        self.parent.append(number)
        spans.append([start, end, number, sha])
        return number

    def _root(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def join(self, doc_a: str, sha_a: str | None, start_a: int, end_a: int,
             doc_b: str, sha_b: str | None, start_b: int, end_b: int) -> None:
        a, b = self._root(self.member(doc_a, sha_a, start_a, end_a)), self._root(self.member(doc_b, sha_b, start_b,
                                                                                           end_b))
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def add_rows(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Reuse rows (the columns of _COLUMNS)."""
        for row in zip(*(batch.column(c).to_pylist() for c in _COLUMNS)):
            doc_a, doc_b, sha_a, sha_b, start_a, end_a, start_b, end_b = row
            self.join(doc_a, sha_a, start_a, end_a, doc_b, sha_b, start_b, end_b)

    def clusters(self) -> list[list[tuple[str, str | None, int, int]]]:
        """Each cluster's members (doc_id, text_sha256, start, end), sorted; the clusters by their first member."""
        found: dict[int, list] = {}
        for doc_id, spans in self.spans.items():
            for start, end, number, sha in spans:
                found.setdefault(self._root(number), []).append((doc_id, sha, start, end))
        return sorted((sorted(members) for members in found.values()), key=lambda m: m[0])


def cluster_rows(run_id: str, clusters: Iterable[list[tuple]], dates: dict[str, str | None]) -> list[dict]:
    """Rows of the reuse_clusters dataset (schemas/reuse-cluster.schema.json, JSON form), dates (ISO 8601) by
    doc_id."""
    rows = []
    for members in clusters:
        digest = hashlib.sha256("".join(f"{d}:{s}:{e}\n" for d, _, s, e in members).encode()).hexdigest()
        dated = sorted((dates[d], d) for d, *_ in members if dates.get(d) is not None)
        earliest_date, earliest = dated[0] if dated else (None, None)
        size = len({d for d, *_ in members})
        rows.extend({"run_id": run_id, "cluster_id": digest, "doc_id": doc_id, "text_sha256": sha, "start": start,
                     "end": end, "date": dates.get(doc_id), "size": size, "earliest_doc_id": earliest,
                     "earliest_date": earliest_date} for doc_id, sha, start, end in members)
    return rows


def publish_clusters(store: Store, run: RunContext, reuse_keys: list[str]) -> tuple[list[PartInfo], int]:
    """The clusters of the reuse rows in these parts (a reuse run's: the whole archive's), written as reuse_clusters
    parts of run; (parts, clusters). Dates are the current documents'."""
    clusters = PassageClusters()
    for batch in _batches(store, "reuse", reuse_keys, _COLUMNS, BAND_BATCH):
        clusters.add_rows(batch)
    found = clusters.clusters()
    dates: dict[str, str | None] = {}
    if clusters.spans:
        table = open_dataset(store, "documents").to_table(
            columns=["doc_id", "date"], filter=pc.field("doc_id").isin(sorted(clusters.spans)))
        dates = {doc_id: date.isoformat() if date else None
                 for doc_id, date in zip(table.column("doc_id").to_pylist(), table.column("date").to_pylist())}
    rows = cluster_rows(run.run_id, found, dates)
    attempt, parts = new_attempt(), []
    for index, start in enumerate(range(0, len(rows), ROWS_PER_PART)):
        parts.append(write_part(store, "reuse_clusters", part_key("reuse_clusters", run.run_id, index, attempt),
                                rows[start:start + ROWS_PER_PART]))
    return parts, len(found)


def cluster_of(store: Store, doc_id: str, manifests: list[dict] | None = None) -> list[dict]:
    """The clusters doc_id is a member of, per the latest reuse run: each with its size, earliest dated member,
    the run that found it, and its members (doc_id, start, end, date), the document's own first."""
    from ..publish import committed_manifests

    manifests = list(committed_manifests(store)) if manifests is None else manifests
    runs = [m["run_id"] for m in manifests if m["kind"] == "reuse"
            and any(p["dataset"] == "reuse_clusters" for p in m["parts"])]
    if not runs:
        return []
    dataset = open_dataset(store, "reuse_clusters", runs=[max(runs)])
    ids = pc.unique(dataset.to_table(columns=["cluster_id"], filter=pc.field("doc_id") == doc_id)
                    .column("cluster_id")).to_pylist()
    if not ids:
        return []
    table = dataset.to_table(filter=pc.field("cluster_id").isin(ids))
    found: dict[str, dict] = {}
    for row in sorted(table.to_pylist(), key=lambda r: (r["doc_id"] != doc_id, r["doc_id"], r["start"])):
        cluster = found.setdefault(row["cluster_id"], {
            "cluster_id": row["cluster_id"], "size": row["size"], "earliest_doc_id": row["earliest_doc_id"],
            "earliest_date": row["earliest_date"], "run_id": row["run_id"], "members": []})
        cluster["members"].append({"doc_id": row["doc_id"], "start": row["start"], "end": row["end"],
                                   "date": row["date"]})
    return sorted(found.values(), key=lambda c: c["cluster_id"])
