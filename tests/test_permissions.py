"""Permissions as an unprivileged process meets them: `archive ingest` on a source with a file and a folder
it cannot read, and into a DEST it cannot write.

Run as root, the suite starts the ingest without the capabilities that let root ignore file modes
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; `setpriv --bounding-set`), so the kernel checks the modes as for
any other user. (Switching to `nobody` is not possible here: the virtualenv's Python lives under /root.)
Run as another user, the ingest runs as that user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archive.read import open_dataset

pytestmark = pytest.mark.cli

REPO = Path(__file__).resolve().parent.parent
DROP = "-dac_override,-dac_read_search"


@pytest.fixture
def unprivileged(prefect_harness, tmp_path):
    """(command prefix, environment): `archive` as a process that file modes apply to."""
    from prefect.settings import PREFECT_API_URL

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("running as root without setpriv (util-linux): cannot drop privileges for this test")
        prefix = ["setpriv", f"--inh-caps={DROP}", f"--bounding-set={DROP}", "--"]
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0o000)
    readable = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'rb')"], capture_output=True)
    assert readable.returncode != 0, "the ingest process could read a mode-000 file: the test would prove nothing"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVE_"))}
    env.update({"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)})
    return prefix, env


def ingest_as(prefix, env, *args):
    return subprocess.run([*prefix, sys.executable, "-m", "archive_flows.cli", "ingest", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_unreadable_file_and_folder_are_skipped_with_reasons(unprivileged, seeds_dir, tmp_path):
    prefix, env = unprivileged
    source = tmp_path / "source"
    shutil.copytree(seeds_dir, source)
    (source / "sealed.txt").write_text("A page the ingest user may not read.", encoding="utf-8")
    (source / "sealed.txt").chmod(0o000)
    (source / "locked box").mkdir()
    (source / "locked box" / "inside.txt").write_text("Never seen.", encoding="utf-8")
    (source / "locked box").chmod(0o000)
    dest = tmp_path / "store"

    done = ingest_as(prefix, env, str(source), "--dest", str(dest), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["counts"] == {"files": 7, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 2,
                                "updated": 0}
    skipped = {p["path"]: p for p in result["problems"]}
    assert skipped["sealed.txt"]["reason"] == "unreadable"
    assert "Permission denied" in skipped["sealed.txt"]["detail"]
    assert skipped["locked box"]["reason"] == "unreadable"
    assert ("cannot be listed" in skipped["locked box"]["detail"]
            and "Permission denied" in skipped["locked box"]["detail"])
    # In the published files dataset too: every file and the unlisted folder accounted for.
    files = {r["path"]: r for r in open_dataset(str(dest), "files").to_table().to_pylist()}
    assert files["sealed.txt"]["outcome"] == "skipped" and files["sealed.txt"]["reason"] == "unreadable"
    assert files["locked box"]["outcome"] == "skipped"
    assert len(files) == 7


def test_a_dest_the_user_cannot_write_fails_at_start(unprivileged, seeds_dir, tmp_path):
    prefix, env = unprivileged
    dest = tmp_path / "read-only-store"
    dest.mkdir()
    dest.chmod(0o555)

    done = ingest_as(prefix, env, str(seeds_dir), "--dest", str(dest))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert "not writable" in line and str(dest) in line, line
    assert "Traceback" not in done.stderr
    assert list(dest.iterdir()) == []  # nothing written, not even a probe
