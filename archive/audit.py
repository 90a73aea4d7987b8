"""Fixity audit: re-hash originals and part files against what committed runs recorded, and name every difference."""

from __future__ import annotations

import io
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import provenance as ev
from .errors import NotFoundError, ObjectNotFoundError, StoreError
from .fixity import TOOL as DIGEST_TOOL
from .publish import DamagedManifest, DamagedManifestWarning, committed_manifests
from .storage import Store

OBJECT_PREFIX = "objects/sha256/"


@dataclass(frozen=True)
class Finding:
    """One difference between what a manifest recorded and what the store holds."""

    # "missing", "changed", "unreadable", "damaged-manifest", "unlisted-part", "uncommitted-part", "table-behind",
    # "table-differs", "table-unlisted", "table-missing", "table-unreadable"; "purged" (by a withdrawal: not a problem)
    kind: str
    key: str
    expected_sha256: str | None
    found_sha256: str | None = None
    expected_bytes: int | None = None
    found_bytes: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"missing {self.key}: not in the store (expected sha256 {self.expected_sha256})"
        if self.kind == "changed":
            sizes = ("" if self.expected_bytes in (None, self.found_bytes)
                     else f", {self.found_bytes} bytes instead of {self.expected_bytes}")
            return f"changed {self.key}: sha256 {self.found_sha256}, expected {self.expected_sha256}{sizes}"
        return f"{self.kind} {self.key}: {self.detail}"


@dataclass(frozen=True)
class Check:
    """The result of re-hashing one stored thing."""

    kind: str  # "object", "part", "manifest", "layout" (a file under datasets/ no manifest lists) or "table"
    key: str
    expected_sha256: str | None
    size: int | None
    finding: Finding | None
    note: str = ""  # what a passed check says, where not "sha256 matches"

    @property
    def ok(self) -> bool:
        return self.finding is None


def check(store: Store, kind: str, key: str, expected_sha256: str, expected_bytes: int | None = None) -> Check:
    try:
        found, size = store.sha256(key)
    except ObjectNotFoundError:
        return Check(kind, key, expected_sha256, None,
                     Finding("missing", key, expected_sha256, expected_bytes=expected_bytes))
    except (StoreError, OSError) as exc:
        return Check(kind, key, expected_sha256, None,
                     Finding("unreadable", key, expected_sha256, detail=f"cannot be read: {exc}"))
    if found != expected_sha256 or (expected_bytes is not None and size != expected_bytes):
        return Check(kind, key, expected_sha256, size,
                     Finding("changed", key, expected_sha256, found, expected_bytes, size))
    return Check(kind, key, expected_sha256, size, None)


def selected_manifests(store: Store, runs: Iterable[str] | None = None,
                       damaged: list[DamagedManifest] | None = None) -> list[dict]:
    """The manifests of every committed run (or of runs); those of them that are damaged are left out and appended
    to damaged (warned, without a list)."""
    found: list[DamagedManifest] = []
    manifests = list(committed_manifests(store, damaged=found))
    if runs is not None:
        wanted = set(runs)
        unknown = wanted - {m["run_id"] for m in manifests} - {d.run_id for d in found}
        if unknown:
            raise NotFoundError(f"no committed run {', '.join(sorted(unknown))} in {store.url}")
        manifests = [m for m in manifests if m["run_id"] in wanted]
        found = [d for d in found if d.run_id in wanted]
    if damaged is not None:
        damaged.extend(found)
    else:
        for d in found:
            warnings.warn(DamagedManifestWarning(d), stacklevel=2)
    return manifests


def check_manifests(damaged: Iterable[DamagedManifest]) -> Iterator[Check]:
    """A failed check for each damaged manifest: its run's parts and originals cannot be checked at all."""
    for d in damaged:
        yield Check("manifest", d.key, None, None, Finding(
            "damaged-manifest", d.key, None, detail=f"{d.damage}; run {d.run_id} is left out of every command (its "
                                                    "parts and originals are not checked) until the manifest is "
                                                    "restored"))


def check_chain(store: Store, expected_head: str | None = None) -> Iterator[Check]:
    """The run log's hash chain (archive/chain.py), every manifest read again: a failed check for each manifest
    missing, changed or inserted, and for a head other than expected_head; else one passed check naming the head."""
    from . import chain

    entries = chain.entries(store, fresh=True)
    found = list(chain.breaks(entries, expected_head))
    for b in found:
        yield Check("manifest", b.key, None, None, Finding(f"chain-{b.kind}", b.key, None, detail=b.detail))
    head = chain.head(entries)
    if not found and head is not None:
        linked = sum(1 for e in entries if e.link is not None)
        yield Check("manifest", head.key, head.sha256, None, None,
                    note=f"the run log's hash chain holds: {linked} manifest(s) linked; head {head.key}, sha256 "
                         f"{head.sha256}")


def check_parts(store: Store, manifests: list[dict]) -> Iterator[Check]:
    """Every part file each manifest lists, against its recorded sha256 and size."""
    for manifest in manifests:
        for part in manifest["parts"]:
            yield check(store, "part", part["key"], part["sha256"], part["bytes"])


def check_unlisted(store: Store, manifests: list[dict], *, older_than: float = 3600.0,
                   now: float | None = None) -> Iterator[Check]:
    """A failed check for each file under datasets/ that no manifest lists and that an engine globbing
    datasets/**/*.parquet would read: in the folder of a committed run (unlisted-part: replaced at its commit, left
    by a crash before its removal), or of a run with no manifest, written at least older_than seconds ago
    (uncommitted-part: a crashed run's; younger ones may be a run in progress). `archive gc` removes both."""
    import time

    from .gc import _run_folder  # (datasets/<name>/run=<id>/)

    listed = {p["key"] for m in manifests for p in m["parts"]}
    runs = {m["run_id"] for m in manifests}
    committed = {info.key[len("runs/"):].removesuffix(".json") for info in store.list("runs/")}
    now = time.time() if now is None else now
    for info in store.list("datasets/"):
        run = (_run_folder(info.key) or "").removeprefix("run=")
        if info.key in listed or not run:
            continue
        if run in runs:
            yield Check("layout", info.key, None, info.size, Finding(
                "unlisted-part", info.key, None, found_bytes=info.size, detail=f"in the folder of committed run "
                f"{run}, whose manifest does not list it; engines reading datasets/**/*.parquet read it too "
                "(archive gc --delete removes it)"))
        elif run not in committed and info.modified is not None and now - info.modified >= older_than:
            yield Check("layout", info.key, None, info.size, Finding(
                "uncommitted-part", info.key, None, found_bytes=info.size, detail=f"of run {run}, which never "
                "committed; engines reading datasets/**/*.parquet read it too (archive gc --delete removes it)"))


def check_tables(store: Store, manifests: list[dict]) -> Iterator[Check]:
    """A failed check for each way the datasets' Iceberg tables disagree with the manifests (archive/tables)."""
    from .tables.sync import disagreements

    try:
        found = disagreements(store, manifests)
    except Exception as exc:  # noqa: BLE001 - any failure to read the tables is itself the finding
        found = None
        yield Check("table", "tables/", None, None, Finding("table-unreadable", "tables/", None,
                                                            detail=f"{type(exc).__name__}: {exc}"))
    for d in found or ():
        key = f"tables/datasets/{d.dataset}"
        yield Check("table", key, None, None, Finding(f"table-{d.kind}", key, None, detail=d.detail))


def referenced_objects(store: Store, manifests: list[dict], good_parts: set[str]) -> pa.Table:
    """Distinct object keys (with sizes) the files rows of these runs point at, and the objects derived from them
    that their documents rows point at (the ALTO of an OCR, ocr_key; its size unrecorded), sorted.

    Read part by part, from parts that passed their own check only: a changed
    part file cannot be trusted to say what it references. Kept as one compact
    Arrow table (about 80 bytes an object), not as Python objects.
    """
    tables = []
    for manifest in manifests:
        for part in manifest["parts"]:
            if part["dataset"] == "files" and part["key"] in good_parts:
                table = pq.read_table(io.BytesIO(store.get_bytes(part["key"])), columns=["object_key", "size"])
                tables.append(table.filter(pc.is_valid(table["object_key"])))
            elif part["dataset"] == "documents" and part["key"] in good_parts:
                derived = _derived_objects(store.get_bytes(part["key"]))
                if derived is not None:
                    tables.append(derived)
    if not tables:
        return pa.table({"object_key": pa.array([], pa.string()), "size": pa.array([], pa.int64())})
    table = pa.concat_tables(tables).group_by("object_key").aggregate([("size", "max")])
    return table.select(["object_key", "size_max"]).rename_columns(["object_key", "size"]).sort_by("object_key")


def _derived_objects(part: bytes) -> pa.Table | None:
    """The ocr_key of the documents rows of a part (None for parts written before there was one), as object keys
    of unknown size."""
    file = pq.ParquetFile(io.BytesIO(part))
    if "ocr_key" not in file.schema_arrow.names:
        return None
    keys = file.read(columns=["ocr_key"]).column("ocr_key")
    keys = pc.drop_null(keys)
    if not len(keys):
        return None
    return pa.table({"object_key": keys.cast(pa.string()), "size": pa.nulls(len(keys), pa.int64())})


def check_objects(store: Store, referenced: pa.Table) -> Iterator[Check]:
    """Re-hash each referenced original; its key is its expected sha256. In key order.

    Where each read waits a round trip (S3: store.concurrent_reads), that many objects are read and hashed
    at once, a few more asked for ahead, so the waits overlap; a local disk's objects are read in turn (the
    audit's chunks already run in two processes)."""
    keys = referenced.column("object_key").to_pylist()
    sizes = referenced.column("size").to_pylist()
    # (purged_by: the withdrawal run that purged an original and why; archive.catalogue.withdraw.mark_purged)
    purged = (referenced.column("purged_by").to_pylist() if "purged_by" in referenced.column_names
              else [None] * len(keys))

    def one(key: str, size: int | None, purged_by: str | None = None) -> Check:
        found = check(store, "object", key, key.rsplit("/", 1)[-1], size)
        if purged_by and found.finding and found.finding.kind == "missing":
            return Check("object", key, found.expected_sha256, None,
                         Finding("purged", key, found.expected_sha256, detail=purged_by))
        return found

    if store.concurrent_reads <= 1:
        yield from map(one, keys, sizes, purged)
        return
    with ThreadPoolExecutor(store.concurrent_reads, thread_name_prefix="audit-read") as pool:
        pending: deque = deque()
        try:
            for key, size, purged_by in zip(keys, sizes, purged):
                pending.append(pool.submit(one, key, size, purged_by))
                if len(pending) >= 2 * store.concurrent_reads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # stopped early: the reads not begun are not made
            for future in pending:
                future.cancel()


def fixity_events(run: ev.RunContext, checks: Iterable[Check]) -> Iterator[dict]:
    """One PREMIS fixity check event per object or part checked."""
    for c in checks:
        if c.ok:
            detail = c.note or f"{c.key}: sha256 matches ({c.size} bytes)"
        else:
            detail = str(c.finding)
        outcome = ev.SUCCESS if c.ok else ev.WARNING if c.finding.kind == "purged" else ev.FAILURE
        yield run.event(ev.FIXITY_CHECK, outcome, detail, sha256=c.expected_sha256, tool=DIGEST_TOOL)


@dataclass
class AuditSummary:
    """What one audit task returns: findings and the events part it wrote."""

    index: int
    checked: dict
    findings: list[Finding]
    parts: list


def record_checks(store: Store, run: ev.RunContext, index: int, checks: Iterable[Check]) -> AuditSummary:
    """Run checks, write their fixity events as one part of the audit run, summarise."""
    from .publish import new_attempt, part_key, write_part

    checks = list(checks)
    summary = AuditSummary(index, {"object": 0, "part": 0, "manifest": 0, "layout": 0, "table": 0}, [], [])
    for c in checks:
        summary.checked[c.kind] += 1
        if c.finding:
            summary.findings.append(c.finding)
    events = list(fixity_events(run, checks))
    if events:
        summary.parts.append(write_part(store, "events", part_key("events", run.run_id, index, new_attempt()), events))
    return summary


def commit_audit(store: Store, run: ev.RunContext, summaries: list[AuditSummary], parameters: dict) -> str:
    """Commit the audit as a run of its own (kind audit), so audits leave a trail."""
    from .publish import build_manifest, commit_manifest

    findings = [f for s in summaries for f in s.findings]
    counts = {
        "objects": sum(s.checked["object"] for s in summaries),
        "parts": sum(s.checked["part"] for s in summaries),
        "problems": sum(f.kind != "purged" for f in findings),
        "purged": sum(f.kind == "purged" for f in findings),
    }
    manifest = build_manifest(
        run_id=run.run_id, kind="audit", collection=None, source=store.url, started_at=run.started_at,
        flow_run_id=run.flow_run_id, started_by=run.started_by, parameters=parameters, counts=counts,
        parts=[p for s in summaries for p in s.parts],
        notes=[str(f) for f in findings[:1000]],
    )
    return commit_manifest(store, manifest)


def chunks(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, size):
        yield table.slice(offset, size)
