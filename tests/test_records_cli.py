"""The archivist's commands: correct (archive ingest again), withdraw, verify after a purge, re-derive, lineage and
runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.cli

SEED, TAKEN = "000_1b6d2751a6b6d7cc.txt", "002_bdbfc77629c1cea2.txt"


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("ARCHIVE_DEST", None)
    return env


def archive(*args, env):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_correct_then_withdraw_with_purge_as_an_archivist_would(cli_env, seeds_dir, tmp_path):
    source, dest = tmp_path / "seeds", str(tmp_path / "store")
    shutil.copytree(seeds_dir, source)
    (source / "metadata.csv").write_text(f"filename,dc.title,dc.date\n{SEED},Envoy,2021-01-20\n"
                                         f"{TAKEN},Press release,2021-01-20\n", encoding="utf-8")
    assert archive("ingest", str(source), "--dest", dest, env=cli_env).returncode == 0
    (source / "metadata.csv").write_text(f"filename,dc.title,dc.date\n{SEED},Envoy (corrected),2021-01-21\n"
                                         f"{TAKEN},Press release (corrected),2021-01-20\n", encoding="utf-8")
    corrected = archive("ingest", str(source), "--dest", dest, env=cli_env)
    assert corrected.returncode == 0, corrected.stderr
    assert "2 records updated" in corrected.stdout and "Nothing new" not in corrected.stdout
    again = archive("ingest", str(source), "--dest", dest, "--json", env=cli_env)
    assert json.loads(again.stdout)["counts"]["updated"] == 0

    story = archive("lineage", str(source / SEED), "--dest", dest, env=cli_env)
    assert story.returncode == 0, story.stderr
    assert "version 1" in story.stdout and "version 2" in story.stdout
    assert "metadata (title, date): Envoy (corrected), 2021-01-21" in story.stdout

    taken = archive("withdraw", TAKEN, "--reason", "takedown request", "--purge", "--dest", dest, env=cli_env)
    assert taken.returncode == 0, taken.stderr
    assert "1 record(s) withdrawn, 1 document(s) left the current views, 1 original(s) purged" in taken.stdout
    assert "Reason: takedown request" in taken.stdout
    verify = archive("verify", "--dest", dest, env=cli_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all hold (1 original(s) purged by withdrawal runs" in verify.stdout
    assert "purged objects/sha256/" in verify.stdout and "takedown request" in verify.stdout
    runs = archive("runs", "--dest", dest, env=cli_env)
    assert "withdrawal" in runs.stdout and "withdrew 1 record(s)" in runs.stdout
    gone = archive("lineage", TAKEN, "--dest", dest, env=cli_env)
    assert "withdrawn; reason: takedown request" in gone.stdout and "MISSING" not in gone.stdout
    assert "(purged by withdrawal run " in gone.stdout

    # Re-derive from the kept originals: the extractors have not changed, so no text version is published; the
    # withdrawn document is not among the current ones.
    redone = archive("reprocess", "--format", "text", "--dest", dest, env=cli_env)
    assert redone.returncode == 0, redone.stderr
    assert "4 document(s) re-derived, 0 with a new text version, 4 unchanged, 0 not re-derived" in redone.stdout
    assert archive("reprocess", "--doc", "0" * 64, "--dest", dest, env=cli_env).returncode == 1

    unknown = archive("withdraw", "no-such.txt", "--reason", "typo", "--dest", dest, env=cli_env)
    assert unknown.returncode == 1 and "no record at 'no-such.txt'" in unknown.stderr and "nothing was withdrawn" \
        in unknown.stderr
    assert archive("withdraw", SEED, "--dest", dest, env=cli_env).returncode == 2  # --reason is required
