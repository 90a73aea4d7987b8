"""The analyst's entry: datasets over committed runs only, as pyarrow Datasets (DuckDB reads them directly)."""

from __future__ import annotations

import os
from typing import Iterable

import pyarrow.dataset as ds

from .catalogue import view
from .partcheck import verify_parts
from .publish import committed_manifests
from .records import arrow_schema
from .storage import Store, open_store


def committed_parts(store: Store, name: str, runs: Iterable[str] | None = None) -> list[str]:
    """Keys of the part files of dataset name that committed manifests list."""
    return [part["key"] for _, part in _parts(list(committed_manifests(store)), name, runs)]


def _parts(manifests: list[dict], name: str, runs: Iterable[str] | None) -> list[tuple[str, dict]]:
    """(run_id, part) of each part of dataset name the manifests (those of runs, if given) list."""
    arrow_schema(name)  # fails early on an unknown name
    wanted = set(runs) if runs is not None else None
    parts = []
    for manifest in manifests:
        if wanted is not None and manifest["run_id"] not in wanted:
            continue
        parts.extend((manifest["run_id"], p) for p in manifest["parts"] if p["dataset"] == name)
    return parts


def current_reuse_runs(manifests: list[dict]) -> list[str]:
    """The runs whose reuse rows make the current answer, each pair of documents once.

    A reuse run (`archive reuse`) is a complete answer over the documents of
    the ingest runs committed when it started (its parameters.documents_of_runs;
    for reuse runs older than that record, the ingest runs committed before it
    started). Each ingest run adds the pairs of its new documents with each
    other and with the documents committed before it, and each reprocess run
    those of its new text versions. So the current answer is the latest reuse
    run (by run id: the last started) plus the ingest and reprocess runs it did
    not cover; with no reuse run, every ingest and reprocess run.
    """
    reuse_runs = [m for m in manifests if m["kind"] == "reuse"]
    ingests = [m for m in manifests if m["kind"] in ("ingest", "reprocess")]
    if not reuse_runs:
        return [m["run_id"] for m in ingests]
    latest = max(reuse_runs, key=lambda m: m["run_id"])
    covered = latest["parameters"].get("documents_of_runs")
    if covered is None:
        covered = [m["run_id"] for m in ingests if m["committed_at"] <= latest["started_at"]]
    covered = set(covered)
    return [latest["run_id"]] + [m["run_id"] for m in ingests if m["run_id"] not in covered]


def open_dataset(dest: str | os.PathLike | Store | None, name: str, *, runs: Iterable[str] | None = None,
                 as_of: str | None = None, verify: bool = True) -> ds.Dataset:
    """A pyarrow Dataset of one published dataset (documents, files, quarantine,
    events, reuse, reuse_bands, records) over committed runs only; parts of
    unfinished or crashed runs are never part of it.

    Without runs it is the current view: records holds each record's latest
    version, and withdrawn records, and the documents (and their reuse rows and
    band hashes) no current record uses after a withdrawal, are left out
    (archive/catalogue/view.py). as_of=RUN_ID gives the view right after that
    run committed. runs=[...] gives those runs' rows as written instead, every
    version and withdrawal included.

    reuse without runs is the current answer, each pair of documents once: the
    rows of the latest reuse run and of the ingest runs it did not cover (see
    current_reuse_runs). Give runs to read particular runs' rows instead (every
    run's rows together would count a pair once per run that found it).

    A run whose manifest is damaged is left out, with a DamagedManifestWarning
    naming it. Each part is checked against the sha256 and size its manifest
    records before the Dataset is returned, once per process and part
    (archive.partcheck); DamagedPartError names a part that differs. verify=False
    skips the check.

    >>> docs = open_dataset("./archive-store", "documents")
    >>> import duckdb; duckdb.sql("select title, date from docs").show()
    """
    store = dest if isinstance(dest, Store) else open_store(dest)
    return dataset_of(store, view.as_of(list(committed_manifests(store)), as_of), name, runs=runs, verify=verify)


def dataset_of(store: Store, manifests: list[dict], name: str, *, runs: Iterable[str] | None = None,
               verify: bool = True) -> ds.Dataset:
    """open_dataset over manifests already read (committed_manifests): the current view without runs."""
    current = runs is None
    if name == "reuse" and current:
        runs = current_reuse_runs(manifests)
    parts = _parts(manifests, name, runs)
    if verify:
        verify_parts(store, parts)
    dataset = ds.dataset(
        [store.arrow_path(part["key"]) for _, part in parts],
        schema=arrow_schema(name),
        format="parquet",
        filesystem=store.arrow_filesystem(),
    )
    where = view.current_filter(store, name, manifests, verify_parts if verify else None) if current and parts \
        else None
    return dataset if where is None else dataset.filter(where)


def set_aside_before(store: Store, run_id: str, paths: Iterable[str]) -> set[tuple[str, str, str]]:
    """(path, outcome, reason) of the files among paths that committed runs before run_id set aside already
    (quarantined or skipped): what a re-run's summary need not list as news."""
    paths = sorted(set(paths))
    manifests = list(committed_manifests(store))
    earlier = [m["run_id"] for m in manifests if m["run_id"] < run_id and m["kind"] == "ingest"]
    if not paths or not earlier:
        return set()
    table = dataset_of(store, manifests, "files", runs=earlier).to_table(
        filter=ds.field("path").isin(paths) & ds.field("outcome").isin(["quarantine", "skipped"]),
        columns=["path", "outcome", "reason"])
    return {(r["path"], r["outcome"], r["reason"]) for r in table.to_pylist()}


def iceberg_table(dest: str | os.PathLike | Store | None, name: str):
    """The Apache Iceberg table of dataset name (a pyiceberg Table): the parts of every committed run, one snapshot
    per run (its summary's archive.run-id names it), in the order the runs committed.

    Unlike open_dataset it is the rows as written, every version and withdrawn record included (open_dataset
    without runs gives the current view). Time travel: table.scan(snapshot_id=snapshot_of(table, RUN_ID)).
    Polars: pl.scan_iceberg(table); DuckDB: table.scan().to_duckdb("docs"). From ARCHIVE_CATALOG_URI's REST catalog
    when it is set, else from the catalog embedded in the store (archive/tables/catalog.py).

    >>> docs = iceberg_table("./archive-store", "documents")
    >>> import polars as pl; pl.scan_iceberg(docs).select("title", "date").collect()
    """
    from pyiceberg.exceptions import NoSuchTableError

    from .errors import NotFoundError
    from .tables.catalog import open_catalog
    from .tables.sync import load_table

    store = dest if isinstance(dest, Store) else open_store(dest)
    try:
        return load_table(open_catalog(store), name)
    except NoSuchTableError:
        raise NotFoundError(f"no Iceberg table {name} in {store.url}: no run has committed since the tables began "
                            "(archive tables --sync makes them)") from None


def snapshot_of(table, run_id: str) -> int:
    """The id of the snapshot run_id made in an iceberg_table (archive/tables/sync.py)."""
    from .tables.sync import snapshot_of as of

    return of(table, run_id)
