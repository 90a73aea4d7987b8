"""The fixity audit flow: re-hash parts, then originals in chunks, and commit the audit as a run."""

from __future__ import annotations

import os
import time
from itertools import chain

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from archive.audit import (
    AuditSummary,
    check_chain,
    check_manifests,
    check_objects,
    check_parts,
    check_tables,
    check_unlisted,
    chunks,
    commit_audit,
    record_checks,
    referenced_objects,
    selected_manifests,
)
from archive.catalogue.withdraw import mark_purged, purged_objects
from archive.provenance import RunContext, new_run_id
from archive.publish import committed_manifests
from archive.storage import open_store, resolve_dest
from archive.tables import follow_after_commit, tables_enabled

from . import progress
from . import workers as worker_pool
from .artifacts import publish_audit_artifacts
from .context import is_transient, started_by

OBJECTS_PER_TASK = 5000
# Below this many chunks (of the most originals the runs' files rows can name) the audit
# hashes in this process's threads: starting worker processes costs more than the
# second core gives back.
MIN_CHUNKS_FOR_PROCESSES = 4


@task(name="check-parts", retries=1, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def check_parts_task(dest: str, run: RunContext, manifests, damaged, head: str | None = None,
                     whole: bool = True) -> AuditSummary:
    """The manifests, the hash chain and the parts; of a whole store (no --run), also the files under datasets/ no
    manifest lists, and the Iceberg tables against the manifests (after bringing them up to date, as every
    command that commits does)."""
    store = open_store(dest)
    layout = ()
    if whole:
        if tables_enabled():
            follow_after_commit(store, manifests)
        layout = chain(check_unlisted(store, manifests), check_tables(store, manifests) if tables_enabled() else ())
    return record_checks(store, run, 0, chain(check_manifests(damaged), check_chain(store, head),
                                              check_parts(store, manifests), layout))


@task(name="check-objects", retries=1, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def check_objects_task(dest: str, run: RunContext, index: int, referenced) -> AuditSummary:
    pool = worker_pool.pool_for(run.run_id)
    if pool is not None:
        return worker_pool.audit_in_pool(pool, dest, run, index, referenced)
    store = open_store(dest)
    return record_checks(store, run, index, check_objects(store, referenced))


@task(name="commit-audit", retries=1, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def commit_audit_task(dest: str, run: RunContext, summaries: list[AuditSummary], parameters: dict) -> str:
    return commit_audit(open_store(dest), run, summaries, parameters)


@flow(name="fixity-audit", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False)
def fixity_audit(dest: str | None = None, runs: list[str] | None = None, workers: int | None = None,
                 head: str | None = None) -> dict:
    """Re-hash every part file and every original that committed runs (or the given runs) reference, and walk the
    run log's hash chain (every manifest, whatever runs). A damaged manifest (it does not parse or validate) is a
    problem of its own (damaged-manifest); its run cannot be checked.

    head: the sha256 of the chain's head as kept elsewhere (`archive runs` prints it); another head is a problem.

    workers: processes for the chunks of originals (default: one per core, when there are at least
        MIN_CHUNKS_FOR_PROCESSES chunks; 1: all in this process).
    """
    started = time.monotonic()
    dest = resolve_dest(dest)
    store = open_store(dest)
    damaged = []
    manifests = selected_manifests(store, runs, damaged)
    run = RunContext(new_run_id(), None, store.url, **started_by())

    # The worker processes start first (about half a second each), while this
    # process checks the part files; the files parts' rows bound the originals.
    most = sum(p["rows"] for m in manifests for p in m["parts"] if p["dataset"] == "files")
    workers = workers or os.cpu_count() or 1
    if workers > 1 and -(-most // OBJECTS_PER_TASK) < MIN_CHUNKS_FOR_PROCESSES:
        workers = 1
    with worker_pool.process_pool(run.run_id, workers, preload=("archive.audit",)):
        parts = check_parts_task(dest, run, quote(manifests), quote(damaged), head, runs is None and not damaged)
        good_parts = {p["key"] for m in manifests for p in m["parts"]} - {f.key for f in parts.findings}
        referenced = mark_purged(referenced_objects(store, manifests, good_parts),
                                 purged_objects(manifests if runs is None else committed_manifests(store)))
        summaries, done = [parts], 0
        futures = [check_objects_task.submit(dest, run, index, quote(chunk))
                   for index, chunk in enumerate(chunks(referenced, OBJECTS_PER_TASK), start=1)]
        for future in as_completed(futures):
            summary = future.result()
            summaries.append(summary)
            done += summary.checked["object"]
            progress.report(done, referenced.num_rows, time.monotonic() - started)
    manifest = commit_audit_task(dest, run, summaries,
                                 {"dest": store.url, "runs": runs, "workers": workers, "head": head})
    findings = [f for s in sorted(summaries, key=lambda s: s.index) for f in s.findings if f.kind != "purged"]
    report = {
        "run_id": run.run_id,
        "status": "ok" if not findings else "problems",
        "dest": store.url,
        "manifest": manifest,
        "checked": {"runs": len(manifests), "parts": parts.checked["part"],
                    "objects": sum(s.checked["object"] for s in summaries)},
        "problems": [{"kind": f.kind, "key": f.key, "expected_sha256": f.expected_sha256,
                      "found_sha256": f.found_sha256, "expected_bytes": f.expected_bytes,
                      "found_bytes": f.found_bytes, "message": str(f)} for f in findings],
        "purged": [{"key": f.key, "detail": f.detail, "message": str(f)}
                   for s in sorted(summaries, key=lambda s: s.index) for f in s.findings if f.kind == "purged"],
        "damaged_runs": [{"run_id": d.run_id, "key": d.key, "damage": d.damage} for d in damaged],
        "seconds": round(time.monotonic() - started, 3),
    }
    publish_audit_artifacts(report)
    return report
