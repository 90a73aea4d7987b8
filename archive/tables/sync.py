"""The Iceberg tables follow the manifests: each committed run's parts, appended to their dataset's table.

The run manifest stays the archive's commit point. After it lands, each dataset's table gets one snapshot per run
that listed parts of it, in the order the runs committed, its summary naming the run (archive.run-id) and its kind;
the part files are added where they are (no copy). A run already in a table is never added again, so following is
idempotent: a table left behind (a crash between the manifest and the table commit, a failed table commit) is
caught up by the next command that commits, or by `archive tables --sync`. Two processes following at once are
serialised by the catalog's write-once commit: the one that loses reads the table again and finds the runs there.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.table import Table
from pyiceberg.utils.concurrent import ExecutorFactory

from ..catalogue.view import in_commit_order
from ..errors import NotFoundError, StoreError
from ..publish import committed_manifests
from ..records import DATASETS, arrow_schema
from ..storage import Store
from .catalog import NAMESPACE, key_of, location, open_catalog

RUN_ID = "archive.run-id"
KIND = "archive.kind"
ATTEMPTS = 8


@dataclass
class Followed:
    """What following the manifests did: the runs appended to each table."""

    appended: dict[str, list[str]] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return len({run for runs in self.appended.values() for run in runs})


def load_table(catalog, dataset: str, *, create: bool = False) -> Table:
    """The dataset's table; created (empty, its dataset's schema) when create and there is none yet."""
    arrow_schema(dataset)  # an unknown name fails here, naming the datasets
    try:
        return catalog.load_table((NAMESPACE, dataset))
    except NoSuchTableError:
        if not create:
            raise
    # No statistics of whole texts (the parts have none either: archive/publish.py's parquet_options). No retry of
    # a commit by pyiceberg itself: it would append its snapshots again on top of a concurrent commit, which may
    # hold the same runs; follow reads the table again and appends only what is still missing.
    properties = {f"write.metadata.metrics.column.{f.name}": "none" for f in arrow_schema(dataset)
                  if pa.types.is_large_string(f.type)}
    properties["commit.retry.num-retries"] = "0"
    try:
        return catalog.create_table((NAMESPACE, dataset), schema=arrow_schema(dataset), properties=properties)
    except TableAlreadyExistsError:
        return catalog.load_table((NAMESPACE, dataset))


def snapshot_runs(table: Table) -> dict[int, str]:
    """snapshot id -> the run id its summary names, for every snapshot of the table."""
    return {s.snapshot_id: s.summary[RUN_ID] for s in table.snapshots() if s.summary and s.summary[RUN_ID]}


def parts_by_run(manifests: list[dict], dataset: str) -> list[tuple[dict, list[str]]]:
    """(manifest, part keys) of each run that lists parts of dataset, in commit order."""
    found = []
    for manifest in in_commit_order(manifests):
        keys = [p["key"] for p in manifest["parts"] if p["dataset"] == dataset]
        if keys:
            found.append((manifest, keys))
    return found


_users = 0  # blocks of pyiceberg work under way in this process (threads of one process share pyiceberg's pool)
_users_lock = threading.Lock()


@contextmanager
def pyiceberg_threads() -> Iterator[None]:
    """Stop the thread pool pyiceberg starts for its work once the last block using it is done: its threads are not
    daemons, and a command that waits for every thread before exiting (flows/cli.py's run) would wait for ever."""
    global _users
    with _users_lock:
        _users += 1
    try:
        yield
    finally:
        with _users_lock:
            _users -= 1
            executor = ExecutorFactory._instance if _users == 0 else None  # (pyiceberg's pool; no public stop)
            if executor is not None and ExecutorFactory._instance_pid == os.getpid():
                ExecutorFactory._instance = None
                executor.shutdown(wait=False)


def follow(store: Store, manifests: list[dict] | None = None) -> Followed:
    """Append to each dataset's table the committed runs it lacks, in commit order (creating the tables at first)."""
    with pyiceberg_threads():
        return _follow(store, manifests)


def _follow(store: Store, manifests: list[dict] | None) -> Followed:
    if manifests is None:
        manifests = list(committed_manifests(store))
    catalog = open_catalog(store)
    followed = Followed()
    for dataset in DATASETS:
        pending = parts_by_run(manifests, dataset)
        for _ in range(ATTEMPTS):
            table = load_table(catalog, dataset, create=True)
            done = set(snapshot_runs(table).values())
            todo = [(m, keys) for m, keys in pending if m["run_id"] not in done]
            if not todo:
                break
            try:
                with table.transaction() as tx:
                    for manifest, keys in todo:
                        tx.add_files([location(store, key) for key in keys], check_duplicate_files=False,
                                     snapshot_properties={RUN_ID: manifest["run_id"], KIND: manifest["kind"]})
            except CommitFailedException:
                continue  # another process committed to the table meanwhile: read it again
            followed.appended[dataset] = [m["run_id"] for m, _ in todo]
            break
        else:
            raise StoreError(f"{NAMESPACE}.{dataset}", f"the table's commit failed {ATTEMPTS} times in a row, each "
                                                       "time after another process committed to it")
    return followed


@dataclass(frozen=True)
class Disagreement:
    """Where a table and the manifests differ: kind is behind, unlisted, differs or missing."""

    dataset: str
    kind: str
    run_id: str | None
    detail: str

    def __str__(self) -> str:
        return f"table {NAMESPACE}.{self.dataset}: {self.detail}"


def disagreements(store: Store, manifests: list[dict]) -> list[Disagreement]:
    """Every way the tables' snapshots disagree with the manifests: a run behind (not yet in its table), a snapshot of
    a run no committed manifest lists, a run whose files in the table are not the parts its manifest lists."""
    with pyiceberg_threads():
        return _disagreements(store, manifests)


def _disagreements(store: Store, manifests: list[dict]) -> list[Disagreement]:
    catalog = open_catalog(store)
    # Runs committed since manifests were read are in the tables, not in manifests: not a disagreement.
    committed = {info.key[len("runs/"):].removesuffix(".json") for info in store.list("runs/")} - \
        {m["run_id"] for m in manifests}
    found: list[Disagreement] = []
    for dataset in DATASETS:
        pending = parts_by_run(manifests, dataset)
        try:
            table = load_table(catalog, dataset)
        except NoSuchTableError:
            if pending:
                found.append(Disagreement(dataset, "missing", None, f"no table, while {len(pending)} committed "
                                          "run(s) list parts of the dataset (archive tables --sync makes it)"))
            continue
        runs = snapshot_runs(table)
        files: dict[str, list[str]] = {}  # (a list: a run appended twice has each file twice)
        if table.current_snapshot() is not None:
            entries = table.inspect.entries().select(["snapshot_id", "data_file"]).to_pylist()
            for entry in entries:
                run = runs.get(entry["snapshot_id"], f"snapshot {entry['snapshot_id']}")
                files.setdefault(run, []).append(key_of(store, entry["data_file"]["file_path"]) or
                                                 entry["data_file"]["file_path"])
        listed = {m["run_id"]: sorted(keys) for m, keys in pending}
        for run_id, keys in listed.items():
            if run_id not in files:
                found.append(Disagreement(dataset, "behind", run_id, f"run {run_id} is committed but not in the "
                                          "table yet (archive tables --sync adds it)"))
            elif sorted(files[run_id]) != keys:
                found.append(Disagreement(dataset, "differs", run_id, f"run {run_id}'s files in the table "
                                          f"({len(files[run_id])}) are not the {len(keys)} part(s) its manifest "
                                          f"lists: {sorted(set(files[run_id]) ^ set(keys))[:3]}"))
        for run_id in sorted(set(files) - set(listed) - committed):
            found.append(Disagreement(dataset, "unlisted", run_id, f"{run_id} holds {len(files[run_id])} file(s) "
                                      "that no committed manifest lists for this dataset"))
    return found


def snapshot_of(table: Table, run_id: str) -> int:
    """The id of the snapshot run_id made in table (time travel: table.scan(snapshot_id=...)); NotFoundError if
    that run added nothing to this table."""
    for snapshot_id, run in snapshot_runs(table).items():
        if run == run_id:
            return snapshot_id
    raise NotFoundError(f"run {run_id} made no snapshot of table {'.'.join(table.name())} (it listed no part of "
                        "this dataset, or is not committed, or the table is behind: archive tables --sync)")


def status(store: Store, manifests: list[dict]) -> list[dict]:
    """Each table as `archive tables` shows it: name, metadata location, snapshots, rows, its latest run, and
    what disagrees with the manifests."""
    with pyiceberg_threads():
        return _status(store, manifests)


def _status(store: Store, manifests: list[dict]) -> list[dict]:
    catalog = open_catalog(store)
    found: dict[str, list[str]] = {}
    for disagreement in disagreements(store, manifests):
        found.setdefault(disagreement.dataset, []).append(str(disagreement))
    rows = []
    for dataset in DATASETS:
        try:
            table = load_table(catalog, dataset)
        except NoSuchTableError:
            rows.append({"table": f"{NAMESPACE}.{dataset}", "metadata": None, "snapshots": 0, "rows": 0,
                         "latest_run": None, "problems": found.get(dataset, [])})
            continue
        current = table.current_snapshot()
        rows.append({"table": f"{NAMESPACE}.{dataset}", "metadata": table.metadata_location,
                     "snapshots": len(table.snapshots()),
                     "rows": int(current.summary["total-records"]) if current and current.summary else 0,
                     "latest_run": current.summary[RUN_ID] if current and current.summary else None,
                     "problems": found.get(dataset, [])})
    return rows
