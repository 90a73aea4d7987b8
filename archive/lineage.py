"""A record's story: the bytes it came from, every step that touched it, and where it was published."""

from __future__ import annotations

import os
import re
from pathlib import PurePath

import pyarrow.dataset as ds

from .catalogue.history import record_history
from .catalogue.withdraw import purged_objects
from .errors import NotFoundError
from .publish import DamagedManifest, committed_manifests
from .read import dataset_of
from .storage import Store, object_key

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def resolve_id(store: Store, ident: str, run: str | None = None, manifests: list[dict] | None = None) -> str:
    """A doc_id or sha256 as given, or the sha256 of a source path (in one run, or its latest).

    A path is looked up as recorded (relative to the run's SOURCE), else as a path on this machine that lies under
    a local SOURCE of a committed run (`examples/misc/telegram.dat` for SOURCE `examples`)."""
    if _SHA256.match(ident):
        return ident
    if manifests is None:
        manifests = list(committed_manifests(store))
    dataset = dataset_of(store, manifests, "files", runs=[run] if run else None)
    for candidates in ([ident], _under_sources(manifests, ident, run)):
        if not candidates:
            continue
        table = dataset.to_table(filter=ds.field("path").isin(candidates), columns=["run_id", "sha256"])
        rows = [r for r in table.to_pylist() if r["sha256"]]
        if rows:
            return max(rows, key=lambda r: r["run_id"])["sha256"]
    where = f"run {run}" if run else "any committed run"
    raise NotFoundError(f"no file {ident!r} with readable bytes in {where}; give a doc_id, a path as recorded in the "
                        "files dataset, or a path under a run's SOURCE")


def _under_sources(manifests: list[dict], ident: str, run: str | None) -> list[str]:
    """ident as a path relative to each local SOURCE of the committed runs (one run's, if given) it lies under."""
    path = os.path.abspath(ident)
    found = []
    for manifest in manifests:
        source = manifest.get("source")
        if (run and manifest["run_id"] != run) or not source or "://" in source:
            continue
        root = os.path.abspath(source)
        if os.path.commonpath([root, path]) == root and path != root:
            found.append(PurePath(os.path.relpath(path, root)).as_posix())
    return sorted(set(found))


def lineage(store: Store, ident: str, run: str | None = None) -> dict:
    """Everything the archive knows of one original and the document made from it, and every version of the
    records at the path given or made from these bytes.

    The runs whose manifests are damaged are left out, and listed under damaged_runs
    (or, if the record is nowhere else, named by the NotFoundError)."""
    damaged: list[DamagedManifest] = []
    read = list(committed_manifests(store, damaged=damaged))
    try:
        return _story(store, ident, run, read, damaged)
    except NotFoundError as exc:
        if not damaged:
            raise
        raise NotFoundError("; ".join([str(exc), *(str(d) for d in damaged)])) from None


def _story(store: Store, ident: str, run: str | None, read: list[dict], damaged: list[DamagedManifest]) -> dict:
    sha256 = resolve_id(store, ident, run, read)
    manifests = {m["run_id"]: m for m in read}
    files = dataset_of(store, read, "files").to_table(filter=ds.field("sha256") == sha256).to_pylist()
    if not files:
        raise NotFoundError(f"{sha256} is in no committed run of {store.url}")
    events = dataset_of(store, read, "events").to_table(filter=ds.field("object_sha256") == sha256).to_pylist()
    events.sort(key=lambda e: (e["event_time"], e["run_id"]))
    documents = []
    published = dataset_of(store, read, "documents", runs=[m["run_id"] for m in read])  # (every row, as written)
    keys = {store.arrow_path(p["key"]): p["key"] for m in read for p in m["parts"] if p["dataset"] == "documents"}
    for fragment in published.get_fragments(filter=ds.field("doc_id") == sha256):
        table = fragment.to_table(filter=ds.field("doc_id") == sha256, schema=published.schema,
                                  columns=["doc_id", "run_id", "source_path", "title", "date", "language",
                                           "text_sha256", "extractor", "extractor_version", "char_count"])
        for row in table.to_pylist():
            documents.append({**row, "part": keys[fragment.path]})
    key = object_key(sha256)
    size = store.size(key)
    runs = sorted({f["run_id"] for f in files} | {e["run_id"] for e in events})
    from .reuse import cluster_of, shared_with

    return {
        "sha256": sha256,
        "shares_text_with": shared_with(store, sha256, read),
        "reuse_clusters": cluster_of(store, sha256, read),
        "original": {"key": key, "stored": size is not None, "bytes": size,
                     "purged_by": purged_objects(read).get(key)},
        "sources": [{"path": f["path"], "run_id": f["run_id"], "outcome": f["outcome"], "reason": f["reason"],
                     "media_type": f["media_type"], "puid": f["puid"]}
                    for f in sorted(files, key=lambda f: (f["run_id"], f["path"]))],
        "documents": documents,
        "records": record_history(store, list(manifests.values()), doc_id=sha256,
                                  paths=[] if _SHA256.match(ident) else [ident, *_under_sources(read, ident, run)]),
        "events": events,
        "runs": [{"run_id": r, "kind": manifests[r]["kind"], "committed_at": manifests[r]["committed_at"],
                  "software": f"{manifests[r]['software']['name']} {manifests[r]['software']['version']}",
                  "started_by": manifests[r]["started_by"], "flow_run_id": manifests[r]["flow_run_id"]}
                 for r in runs if r in manifests],
        "damaged_runs": [{"run_id": d.run_id, "key": d.key, "damage": d.damage} for d in damaged],
    }

