"""S3 Object Lock retention (ARCHIVE_S3_RETENTION): originals and manifests written under it, the rest not; a bucket
without Object Lock refused at once, in one line."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid

import pytest
from botocore.exceptions import ClientError

from archive.errors import ConfigurationError
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import S3Store
from archive.storage.s3_retention import Retention

pytestmark = pytest.mark.cli


def locked_bucket(s3_server) -> str:
    name = f"locked-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_retention_is_parsed_or_refused():
    assert Retention.parse("governance:30") == Retention("GOVERNANCE", 30)
    assert Retention.parse(" Compliance:3650 ") == Retention("COMPLIANCE", 3650)
    for bad in ("governance", "legal:30", "compliance:0", "governance:-1", "30"):
        with pytest.raises(ConfigurationError, match="MODE:DAYS"):
            Retention.parse(bad)


def test_a_bucket_without_object_lock_is_refused_in_one_line(s3_server, seeds_dir, tmp_path, monkeypatch):
    bucket = s3_server.create_bucket()
    with pytest.raises(ConfigurationError, match=f"s3://{bucket} has no S3 Object Lock"):
        S3Store(bucket, "archive", retention=Retention("GOVERNANCE", 30))
    env = {**os.environ, "ARCHIVE_S3_RETENTION": "governance:30"}
    done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(seeds_dir), "--dest",
                           f"s3://{bucket}/archive"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # refused before anything is written, as an unwritable DEST is
    assert done.stderr.strip().count("\n") == 0 and "has no S3 Object Lock" in done.stderr
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing written


def test_originals_and_manifests_are_kept_under_retention(s3_server, seeds_dir, monkeypatch):
    monkeypatch.setenv("ARCHIVE_S3_RETENTION", "governance:30")
    bucket = locked_bucket(s3_server)
    store = S3Store.from_url(f"s3://{bucket}/archive")
    source = open_source(str(seeds_dir))
    run = RunContext(new_run_id(), None, source.url)
    commit_run(store, run, [process_batch(store, source, run, 0, list(source.iter_files()))], parameters={},
               warnings=[])
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    kept = [k for k in keys if k.startswith(("archive/objects/", "archive/runs/"))]
    assert len([k for k in kept if "/objects/" in k]) == 5 and len([k for k in kept if "/runs/" in k]) == 1
    soon, later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=d) for d in (29, 31))
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        if key in kept:
            assert head["ObjectLockMode"] == "GOVERNANCE", key
            assert soon < head["ObjectLockRetainUntilDate"] < later, key
        else:  # part files, locks: not kept for good by themselves
            assert "ObjectLockMode" not in head, key
    # The server holds a kept version against deletion.
    original = next(k for k in kept if "/objects/" in k)
    version = client.head_object(Bucket=bucket, Key=original)["VersionId"]
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=original, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
