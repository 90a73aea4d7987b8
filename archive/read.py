"""The analyst's entry: datasets over committed runs only, as pyarrow Datasets (DuckDB reads them directly)."""

from __future__ import annotations

import os
from typing import Iterable

import pyarrow.dataset as ds

from .publish import committed_manifests
from .records import arrow_schema
from .store import Store, open_store


def committed_parts(store: Store, name: str, runs: Iterable[str] | None = None) -> list[str]:
    """Keys of the part files of dataset name that committed manifests list."""
    arrow_schema(name)  # fails early on an unknown name
    wanted = set(runs) if runs is not None else None
    keys = []
    for manifest in committed_manifests(store):
        if wanted is not None and manifest["run_id"] not in wanted:
            continue
        keys.extend(p["key"] for p in manifest["parts"] if p["dataset"] == name)
    return keys


def open_dataset(dest: str | os.PathLike | Store | None, name: str, *, runs: Iterable[str] | None = None) -> ds.Dataset:
    """A pyarrow Dataset of one published dataset (documents, files, quarantine,
    events) over committed runs only; parts of unfinished or crashed runs are
    never part of it. Optionally restricted to some run ids.

    >>> docs = open_dataset("./archive-store", "documents")
    >>> import duckdb; duckdb.sql("select title, date from docs").show()
    """
    store = dest if isinstance(dest, Store) else open_store(dest)
    keys = committed_parts(store, name, runs)
    return ds.dataset(
        [store.arrow_path(k) for k in keys],
        schema=arrow_schema(name),
        format="parquet",
        filesystem=store.arrow_filesystem(),
    )


def committed_doc_ids(store: Store) -> set[str]:
    """doc_id of every document already published by a committed run."""
    table = open_dataset(store, "documents").to_table(columns=["doc_id"])
    return set(table.column("doc_id").to_pylist())
