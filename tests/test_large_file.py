"""A 2 GiB (sparse) file among the seeds: streamed, never held in memory, kept under its checksum and
quarantined as too-large by the default limit; the other files go on. About 30 s of I/O: run by
`make stress` (ARCHIVE_STRESS=1), not by `make test` (whose too-large test uses a small limit instead)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from archive.read import open_dataset
from archive.storage import LocalStore, object_key

pytestmark = [pytest.mark.cli, pytest.mark.skipif(not os.environ.get("ARCHIVE_STRESS"),
                                                  reason="2 GiB of I/O: run by make stress (ARCHIVE_STRESS=1)")]

SIZE = 2 << 30
MEMORY_LIMIT_MIB = 600  # a process that held the file would need more than 2,048


def test_a_2_gib_sparse_file_is_streamed_kept_and_quarantined_too_large(prefect_harness, seeds_dir, tmp_path):
    from prefect.settings import PREFECT_API_URL

    source = tmp_path / "source"
    shutil.copytree(seeds_dir, source)
    big = source / "reel-scan.raw"
    with open(big, "wb") as stream:  # sparse: 2 GiB long, a few blocks on disk
        stream.write(b"RAW\x00" * 1024)
        stream.truncate(SIZE)
    digest = hashlib.sha256()
    with open(big, "rb") as stream:
        while chunk := stream.read(8 << 20):
            digest.update(chunk)
    expected = digest.hexdigest()

    dest = tmp_path / "store"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(source), "--dest", str(dest),
                           "--json", "--workers", "1"], env=env, capture_output=True, text=True, timeout=600)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["counts"] == {"files": 6, "documents": 5, "duplicates": 0, "quarantined": 1, "skipped": 0,
                                "updated": 0}
    (problem,) = result["problems"]
    assert problem["path"] == "reel-scan.raw" and problem["reason"] == "too-large"
    assert f"{SIZE} bytes exceeds the limit" in problem["detail"] and "original kept" in problem["detail"]

    # Kept whole, under the checksum of all its bytes.
    kept = LocalStore(dest).size(object_key(expected))
    assert kept == SIZE
    (row,) = open_dataset(str(dest), "quarantine").to_table().to_pylist()
    assert row["sha256"] == expected and row["reason"] == "too-large"
    # Streamed: the ingest process never came near the file's size in memory.
    assert before < MEMORY_LIMIT_MIB * 1024, "an earlier child process already used more memory than the limit"
    assert peak_mib < MEMORY_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB"
    print(f"2 GiB sparse file: ingest peak RSS {peak_mib:.0f} MiB, {result['seconds']:.1f} s in the flow")
