"""S3 as DEST and SOURCE against the real server on 127.0.0.1: races, missing buckets, a server that stops."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from archive.errors import ManifestError, StoreError
from archive.publish import build_manifest, commit_manifest, committed_manifests
from archive.read import open_dataset
from archive.storage import open_store

pytestmark = pytest.mark.flow


def _manifest(run_id: str) -> dict:
    return build_manifest(run_id=run_id, kind="ingest", collection=None, source="x",
                          started_at="2026-11-22T15:30:00Z", flow_run_id=None,
                          started_by={"user": "test"}, parameters={},
                          counts={"files": 0, "documents": 0, "duplicates": 0, "quarantined": 0, "skipped": 0},
                          parts=[])


def test_a_second_writer_of_the_same_manifest_loses_with_a_clear_error(dest):
    store = open_store(dest)
    run_id = "20261122T153000Z-abcd"
    first = _manifest(run_id)
    commit_manifest(store, first)
    with pytest.raises(ManifestError, match="already committed"):
        commit_manifest(store, {**_manifest(run_id), "collection": "the other writer"})
    (kept,) = list(committed_manifests(store))
    assert kept["collection"] is None  # the first commit stands, untouched


def test_ingest_from_an_s3_prefix(prefect_harness, s3_server, seeds_dir, tmp_path):
    from archive_flows.ingest import ingest

    bucket = s3_server.create_bucket()
    client = s3_server.client()
    for path in seeds_dir.iterdir():
        client.put_object(Bucket=bucket, Key=f"incoming/batch-7/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=bucket, Key="incoming/other/not-this.txt", Body=b"outside the prefix")
    dest = str(tmp_path / "store")
    result = ingest(f"s3://{bucket}/incoming/batch-7/", dest=dest)
    assert result["counts"]["documents"] == 5 and result["counts"]["files"] == 5
    docs = {d["source_path"]: d["doc_id"] for d in open_dataset(dest, "documents").to_table().to_pylist()}
    assert docs == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in seeds_dir.iterdir()}


def test_missing_bucket_fails_with_exit_1_and_one_line(prefect_harness, s3_server, seeds_dir):
    env = {**os.environ, **s3_server.env}
    done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(seeds_dir), "--dest", "s3://no-such-bucket-here/x"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-bucket-here" in lines[0]
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in done.stderr + done.stdout


def _documents(dest):
    table = open_dataset(dest, "documents").to_table(
        columns=["doc_id", "text_sha256", "source_path", "title", "date", "char_count"])
    return sorted(table.to_pylist(), key=lambda d: d["doc_id"])


def test_server_stopping_mid_run_fails_cleanly_and_the_rerun_equals_a_clean_run(
        prefect_harness, s3_server, s3_bucket, seeds_dir, tmp_path, monkeypatch):
    import archive_flows.ingest as flow_module

    # Give up fast on a server that does not answer.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("ARCHIVE_S3_READ_TIMEOUT", "1")
    monkeypatch.setenv("ARCHIVE_S3_CONNECT_TIMEOUT", "1")
    real = flow_module.process_batch

    def stop_server_at_second_batch(store, source, run, index, refs, **kw):
        if index == 1:
            s3_server.pause()  # the server hangs: every request times out
        return real(store, source, run, index, refs, **kw)

    monkeypatch.setattr(flow_module, "process_batch", stop_server_at_second_batch)
    try:
        with pytest.raises(StoreError):
            # workers=1: the batches run in this process, where the patch is.
            flow_module.ingest(str(seeds_dir), dest=s3_bucket, batch_files=1, workers=1)
    finally:
        s3_server.resume()
    monkeypatch.setattr(flow_module, "process_batch", real)
    store = open_store(s3_bucket)
    assert list(committed_manifests(store)) == []  # nothing committed
    assert open_dataset(s3_bucket, "documents").count_rows() == 0

    result = flow_module.ingest(str(seeds_dir), dest=s3_bucket, batch_files=1)
    assert result["counts"]["documents"] == 5
    clean = str(tmp_path / "clean")
    flow_module.ingest(str(seeds_dir), dest=clean, batch_files=1)
    assert _documents(s3_bucket) == _documents(clean)
