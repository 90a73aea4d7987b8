"""With AWS credentials in the environment, the secret key appears nowhere the pipeline writes or says:
not in the CLI's output (with --verbose and --debug, failures included), not in any object of the store
(manifests, events, every Parquet part read back as values), not in exported provenance or bags, not in
Prefect's logs, flow run parameters or artifacts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.flow


def test_the_secret_key_is_in_no_output_object_log_or_artifact(prefect_harness, s3_server, seeds_dir, tmp_path):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    secret = s3_server.secret_key
    env = {**os.environ, **s3_server.env, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("ARCHIVE_DEST", None)
    said: list[str] = []

    def archive(*args, expect=0):
        done = subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        said.extend([done.stdout, done.stderr])
        assert done.returncode == expect, done.stdout + done.stderr
        return done

    bucket = s3_server.create_bucket()
    client = s3_server.client()
    for seed in seeds_dir.iterdir():
        client.put_object(Bucket=bucket, Key=f"incoming/{seed.name}", Body=seed.read_bytes())
    dest = f"s3://{bucket}/archive"

    first = json.loads(archive("ingest", str(seeds_dir), "--dest", dest, "--verbose", "--debug", "--json").stdout)
    second = json.loads(archive("ingest", f"s3://{bucket}/incoming", "--dest", dest, "--verbose", "--json").stdout)
    archive("runs", "--dest", dest)
    archive("verify", "--dest", dest, "--verbose")
    archive("lineage", sorted(p.name for p in seeds_dir.iterdir())[0], "--dest", dest)
    archive("prov", first["run_id"], "--dest", dest)
    archive("prov", first["run_id"], "--dest", dest, "--format", "provn")
    archive("bag", first["run_id"], str(tmp_path / "bag"), "--dest", dest)
    archive("gc", "--dest", dest, "--older-than", "0s", "--json")
    # Failures, with tracebacks: a bucket that does not exist, credentials the server rejects.
    archive("ingest", str(seeds_dir), "--dest", "s3://no-such-bucket-for-secrets/x", "--debug", "--verbose", expect=1)
    with s3_server.authenticating():
        archive("ingest", str(seeds_dir), "--dest", dest, "--debug", "--verbose", expect=1)
        archive("runs", "--dest", dest, "--debug", expect=1)

    # Every object of the bucket, as bytes and, for Parquet, as the values it holds.
    stored: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            stored.append(body.decode("latin-1"))
            if item["Key"].endswith(".parquet"):
                stored.append(json.dumps(pq.read_table(io.BytesIO(body)).to_pylist(), default=str))
    assert any('"run_id"' in text and first["run_id"] in text for text in stored), "the manifests were not read"
    assert sum(text.startswith("[{") for text in stored) >= 8, "the Parquet parts were not read as values"

    exported = [p.read_bytes().decode("latin-1") for p in (tmp_path / "bag").rglob("*") if p.is_file()]
    assert any(first["run_id"] in text for text in exported)

    # What Prefect recorded: logs, flow runs and their parameters, artifacts; the newest, as the suite's server
    # also holds every earlier test's.
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort, LogSort

    with get_client(sync_client=True) as prefect:
        logs = [f"{log.name} {log.message}" for log in prefect.read_logs(limit=200, sort=LogSort.TIMESTAMP_DESC)]
        runs = [json.dumps(r.model_dump(mode="json"))
                for r in prefect.read_flow_runs(limit=200, sort=FlowRunSort.EXPECTED_START_TIME_DESC)]
        artifacts = [json.dumps(a.model_dump(mode="json"))
                     for a in prefect.read_artifacts(limit=200, sort=ArtifactSort.CREATED_DESC)]
    assert logs, "the --verbose runs left no Prefect logs to check"
    assert any(second["run_id"].lower() in text for text in artifacts), "the run's artifacts were not read"
    assert any(dest in text for text in runs), "the flow runs' parameters were not read"

    for where, texts in {"the CLI's output": said, "the store": stored, "the bag": exported, "Prefect's logs": logs,
                         "Prefect's flow runs": runs, "Prefect's artifacts": artifacts}.items():
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"the secret key is in {where}: {leaks[0][:500]}"
    # The failures did say what went wrong, by name (so the check above looked at real error text).
    assert any("no-such-bucket-for-secrets" in text for text in said)
