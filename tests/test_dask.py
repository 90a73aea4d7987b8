"""Batches on a real Dask cluster (2 worker processes): the same datasets as a local run, from the flow and the CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archive.read import open_dataset

pytestmark = pytest.mark.flow

BATCH_FILES = 2
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dask_cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield cluster, client


@pytest.fixture
def mixed_source(tmp_path, seeds_dir):
    """The five seeds plus generated files: more documents, a duplicate in a later batch, an empty file, binary junk."""
    source = tmp_path / "source"
    shutil.copytree(seeds_dir, source)
    seeds = sorted(seeds_dir.iterdir())
    for number in range(6):
        (source / f"generated-{number:02d}.txt").write_text(
            f"Generated letter {number}\n\ndate 2021-02-{number + 1:02d}\n\n"
            + f"This is generated page {number} of a batch made for the Dask test. " * (number + 3),
            encoding="utf-8")
    shutil.copy(seeds[0], source / "zz-copy-of-the-first-seed.txt")
    (source / "blank.txt").write_bytes(b"")
    (source / "junk.bin").write_bytes(bytes(range(256)) * 8)
    return source


def _datasets(dest: str) -> dict[str, list[tuple]]:
    documents = open_dataset(dest, "documents").to_table(columns=["doc_id", "text_sha256", "title", "date"]).to_pylist()
    files = open_dataset(dest, "files").to_table(columns=["path", "outcome", "reason"]).to_pylist()
    return {
        "documents": sorted((d["doc_id"], d["text_sha256"], d["title"], d["date"]) for d in documents),
        "files": sorted((f["path"], f["outcome"], f["reason"]) for f in files),
    }


def test_batches_on_dask_give_the_same_datasets_as_a_local_run(prefect_harness, dask_cluster, mixed_source, tmp_path):
    from distributed import get_task_stream

    from archive_flows.ingest import ingest
    from archive_flows.service import ingest_on

    cluster, client = dask_cluster
    local_dest, dask_dest = str(tmp_path / "local-store"), str(tmp_path / "dask-store")

    local = ingest(str(mixed_source), dest=local_dest, batch_files=BATCH_FILES)
    executed_before = client.run(lambda dask_worker: dask_worker.state.executed_count)
    with get_task_stream(client) as stream:
        on_dask = ingest_on(cluster.scheduler_address)(str(mixed_source), dest=dask_dest, batch_files=BATCH_FILES,
                                                       workers=1)
    executed_after = client.run(lambda dask_worker: dask_worker.state.executed_count)

    assert on_dask["status"] == local["status"] == "committed"
    assert on_dask["counts"] == local["counts"]
    assert local["counts"] == {"files": 14, "documents": 11, "duplicates": 1, "quarantined": 2, "skipped": 0,
                               "updated": 0}
    assert on_dask["batches"] == local["batches"] == 7
    assert _datasets(dask_dest) == _datasets(local_dest)

    # Every batch task ran on a Dask worker, and both workers took some.
    batch_tasks = [t for t in stream.data if "process_batch" in str(t["key"])]
    assert len(batch_tasks) == on_dask["batches"], [t["key"] for t in stream.data]
    ran_on = {t["worker"] for t in batch_tasks}
    assert ran_on == set(cluster.scheduler_info["workers"]), ran_on
    assert sum(executed_after.values()) - sum(executed_before.values()) >= on_dask["batches"]
    print(f"batches per Dask worker: { {w: sum(t['worker'] == w for t in batch_tasks) for w in sorted(ran_on)} }")


def test_archive_ingest_dask_runs_the_batches_on_the_cluster(prefect_harness, dask_cluster, seeds_dir, tmp_path):
    from distributed import get_task_stream
    from prefect.settings import PREFECT_API_URL

    cluster, client = dask_cluster
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    env.pop("ARCHIVE_DEST", None)

    def archive(*args):
        return subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    refused = archive(str(seeds_dir), "--dask", cluster.scheduler_address, "--workers", "2")
    assert refused.returncode == 2 and "--workers" in refused.stderr

    with get_task_stream(client) as stream:
        # A relative DEST: the workers, in another working directory, must write to the same folder.
        done = archive(str(seeds_dir), "--dest", "store", "--batch-files", "2", "--dask", cluster.scheduler_address,
                       "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "committed" and result["dest"] == str(tmp_path / "store")
    assert result["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                "updated": 0}
    assert "Task run" not in done.stderr and "Flow run" not in done.stderr
    assert open_dataset(str(tmp_path / "store"), "documents").count_rows() == 5
    batches = [t for t in stream.data if "process_batch" in str(t["key"])]
    assert len(batches) == 3 and {t["worker"] for t in batches} <= set(cluster.scheduler_info["workers"])


def test_archive_reuse_aligns_the_candidate_pairs_on_the_cluster(prefect_harness, dask_cluster, seeds_dir, tmp_path):
    from distributed import get_task_stream

    from archive.provenance import RunContext, new_run_id
    from archive.reuse import publish_reuse
    from archive.storage import open_store
    from archive_flows.ingest import ingest
    from archive_flows.workers import reuse_executor

    cluster, client = dask_cluster
    dest = str(tmp_path / "store")
    ingest(str(seeds_dir), dest=dest, workers=1, reuse=False)
    store = open_store(dest)
    here = publish_reuse(store, RunContext(new_run_id(), None, store.url))
    with get_task_stream(client) as stream, reuse_executor(cluster.scheduler_address, None) as (executor, workers):
        there = publish_reuse(store, RunContext(new_run_id(), None, store.url), executor=executor, workers=workers)
    assert workers == 2 and there["counts"]["pairs"] == here["counts"]["pairs"] == 2

    def rows(run_id):
        table = open_dataset(dest, "reuse", runs=[run_id]).to_table()
        return sorted(tuple(v for k, v in r.items() if k != "run_id") for r in table.to_pylist())

    assert rows(there["run_id"]) == rows(here["run_id"])
    assert any("align_chunk" in str(t["key"]) for t in stream.data), [t["key"] for t in stream.data]
