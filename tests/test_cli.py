"""The `archive` command as a user runs it: exit codes, summary, --json, errors naming file and reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from archive.read import open_dataset

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    """The environment for `archive` subprocesses: they use the harness's
    Prefect server instead of each starting an ephemeral one."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.pop("ARCHIVE_DEST", None)
    return env


def archive(*args, env, cwd=None):
    return subprocess.run([sys.executable, "-m", "archive_flows.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_ingest_json_then_runs(cli_env, seeds_dir, tmp_path):
    dest = tmp_path / "store"
    done = archive("ingest", str(seeds_dir), "--dest", str(dest), "--collection", "seeds", "--json",
                   "--extract-seconds", "5m", env=cli_env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "committed"
    manifest = json.loads((dest / "runs" / f"{result['run_id']}.json").read_text())
    assert (manifest["parameters"]["extract_seconds"], manifest["parameters"]["text_per_byte"]) == (300, 100)
    assert result["counts"] == {"files": 5, "documents": 5, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                "updated": 0}
    assert result["dest"] == str(dest)
    assert "Task run" not in done.stderr and "Flow run" not in done.stderr  # Prefect's chatter stays out

    listed = archive("runs", "--dest", str(dest), "--json", env=cli_env)
    assert listed.returncode == 0
    (run,) = json.loads(listed.stdout)
    assert run["run_id"] == result["run_id"] and run["collection"] == "seeds"
    assert run["started_by"]["user"]


def test_readable_summary_names_each_set_aside_file(cli_env, tmp_path):
    source = tmp_path / "batch"
    source.mkdir()
    (source / "ok.txt").write_text("A perfectly good page of text.", encoding="utf-8")
    (source / "blank page.txt").write_bytes(b"")
    env = {**cli_env, "ARCHIVE_DEST": str(tmp_path / "from-env")}
    done = archive("ingest", str(source), env=env)
    assert done.returncode == 0, done.stderr
    assert "committed to" in done.stdout
    assert "blank page.txt: quarantine empty: the file has no bytes" in done.stdout
    assert open_dataset(str(tmp_path / "from-env"), "documents").count_rows() == 1


def test_default_dest_is_archive_store_in_the_working_directory(cli_env, seeds_dir, tmp_path):
    done = archive("ingest", str(seeds_dir), "--json", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert open_dataset(str(tmp_path / "archive-store"), "documents").count_rows() == 5


def test_usage_errors_exit_2(cli_env, tmp_path):
    missing = archive("ingest", str(tmp_path / "no-such-folder"), env=cli_env)
    assert missing.returncode == 2
    assert "no-such-folder" in missing.stderr and "does not exist" in missing.stderr
    assert archive("ingest", env=cli_env).returncode == 2
    assert archive("frobnicate", env=cli_env).returncode == 2
    for flag, value in (("--extract-seconds", "0"), ("--ocr-page-seconds", "-5"), ("--text-per-byte", "nan")):
        refused = archive("ingest", str(tmp_path), "--dest", str(tmp_path / "store"), flag, value, env=cli_env)
        assert refused.returncode == 2 and flag in refused.stderr and "above zero" in refused.stderr
    assert not (tmp_path / "store").exists()


def test_unwritable_dest_fails_with_exit_1_and_one_line(cli_env, seeds_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = archive("ingest", str(seeds_dir), "--dest", str(blocker / "store"), env=cli_env)
    assert done.returncode == 1
    assert "not writable" in done.stderr and str(blocker) in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_failed_run_exits_1_and_commits_nothing(cli_env, seeds_dir, tmp_path):
    # A store key space that turns read-only after the start: the originals cannot be written.
    dest = tmp_path / "store"
    (dest / "objects").mkdir(parents=True)
    (dest / "objects" / "sha256").write_text("a file where a directory must go")
    done = archive("ingest", str(seeds_dir), "--dest", str(dest), env=cli_env)
    assert done.returncode == 1, done.stdout
    assert "nothing was committed" in done.stderr
    assert "objects/sha256/" in done.stderr  # names the key that failed
    assert "Traceback" not in done.stderr
    assert not (dest / "runs").exists() or not any((dest / "runs").iterdir())
    # In the Prefect UI: the flow run is Failed, with the batch's error as its message.
    from prefect import get_client

    with get_client(sync_client=True) as client:
        (run,) = [r for r in client.read_flow_runs(limit=200) if r.parameters.get("dest") == str(dest)]
        tasks = client.read_task_runs(limit=200)
    assert run.state.is_failed(), run.state
    assert "objects/sha256/" in (run.state.message or ""), run.state.message
    batches = [t for t in tasks if t.flow_run_id == run.id and t.name.startswith("process-batch")]
    assert batches and all(t.state.is_failed() for t in batches), [(t.name, t.state.name) for t in batches]


def test_progress_line_shows_done_total_and_rate():
    import io

    from archive_flows.output import Progress

    stream = io.StringIO()
    bar = Progress(stream)
    bar(1000, 5000, 2.0)
    bar(5000, 5000, 4.0)
    bar.close()
    out = stream.getvalue()
    assert "\r  1,000/5,000 files  500 files/s" in out
    assert "\r  5,000/5,000 files  1,250 files/s" in out
    assert out.endswith("\n")


def _flow_run_events(client, flow_run_id: str) -> set[str]:
    """Which of a heartbeat and a task run's end the Prefect server holds about a flow run and its task runs."""
    import datetime as dt

    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventRelatedFilter,
        EventResourceFilter,
    )

    since = EventOccurredFilter(since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    named = EventNameFilter(name=["prefect.flow-run.heartbeat", "prefect.task-run.Completed"])
    names = set()
    for where in ({"resource": EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])},
                  {"related": EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"])}):
        page = client.read_events(filter=EventFilter(occurred=since, event=named, **where), limit=50)
        names |= {event.event for event in page.events}
    return names


def _events_once_delivered(flow_run_id: str) -> set[str]:
    """A flow run's events, once the task runs' ends have reached the server. The command's process
    sends its events in order on one connection: what it sent before them has arrived too."""
    import time

    from prefect import get_client

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            names = _flow_run_events(client, flow_run_id)
            if "prefect.task-run.Completed" in names or time.monotonic() > deadline:
                return names
            time.sleep(0.2)  # (the server stores events as they arrive; polled, with a deadline)


def test_a_command_s_flow_runs_without_heartbeats_unless_a_frequency_is_set(cli_env, seeds_dir, tmp_path):
    from prefect.settings import Settings

    from archive_flows.context import heartbeats_configured

    runs = {}
    for label, extra in (("default", {}), ("configured", {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"})):
        dest = tmp_path / label
        done = archive("ingest", str(seeds_dir), "--dest", str(dest), "--json", env={**cli_env, **extra})
        assert done.returncode == 0, done.stderr
        manifest = json.loads((dest / json.loads(done.stdout)["manifest"]).read_text())
        runs[label] = _events_once_delivered(manifest["flow_run_id"])

    # Both runs' task runs reported their ends; only the run given a frequency sent a heartbeat.
    assert "prefect.task-run.Completed" in runs["default"] and "prefect.task-run.Completed" in runs["configured"]
    assert "prefect.flow-run.heartbeat" in runs["configured"]
    assert "prefect.flow-run.heartbeat" not in runs["default"]
    # What counts as configured: any source of the settings, the legacy name included; not Prefect's default.
    assert not heartbeats_configured(Settings())
    for name in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        os.environ[name] = "180"
        try:
            assert heartbeats_configured(Settings())
        finally:
            del os.environ[name]


def test_a_rerun_says_nothing_new_and_lists_only_what_is_new(cli_env, tmp_path):
    source, dest = tmp_path / "batch", str(tmp_path / "store")
    source.mkdir()
    (source / "ok.txt").write_text("A perfectly good page of text.", encoding="utf-8")
    (source / "blank.txt").write_bytes(b"")
    first = archive("ingest", str(source), "--dest", dest, env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "blank.txt: quarantine empty" in first.stdout and "Nothing new" not in first.stdout
    assert "files/s" not in first.stdout  # two files: a rate would only measure start-up

    again = archive("ingest", str(source), "--dest", dest, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "Nothing new: no document was added, and every file set aside was set aside before." in again.stdout
    assert "blank.txt" not in again.stdout
    assert "1 file(s) set aside as by an earlier run" in again.stdout

    (source / "spaces.txt").write_bytes(b" \t \n  \n")
    third = archive("ingest", str(source), "--dest", dest, env=cli_env)
    assert "Nothing new" not in third.stdout
    assert "spaces.txt: quarantine no-text" in third.stdout and "blank.txt" not in third.stdout
    assert ", new since the last run:" in third.stdout


def test_runs_shows_who_started_each_run(cli_env, seeds_dir, tmp_path):
    import getpass
    import socket

    dest = str(tmp_path / "store")
    assert archive("ingest", str(seeds_dir), "--dest", dest, "--json", env=cli_env).returncode == 0
    listed = archive("runs", "--dest", dest, env=cli_env)
    header, row, head = listed.stdout.splitlines()
    assert head.startswith("Head of the run log's hash chain:")
    assert "started by" in header
    assert f"{getpass.getuser()}@{socket.gethostname()}" in row


def test_lineage_takes_a_path_under_source_and_names_the_path_of_each_event(cli_env, seeds_dir, tmp_path):
    source, dest = tmp_path / "batch", str(tmp_path / "store")
    source.mkdir()
    seed = sorted(seeds_dir.iterdir())[0]
    (source / "a.txt").write_bytes(seed.read_bytes())
    (source / "copy of a.txt").write_bytes(seed.read_bytes())
    assert archive("ingest", str(source), "--dest", dest, "--json", env=cli_env).returncode == 0

    as_recorded = archive("lineage", "a.txt", "--dest", dest, env=cli_env)
    from_here = archive("lineage", "batch/a.txt", "--dest", dest, env=cli_env, cwd=tmp_path)
    absolute = archive("lineage", str(source / "a.txt"), "--dest", dest, env=cli_env)
    for done in (as_recorded, from_here, absolute):
        assert done.returncode == 0, done.stderr
        assert done.stdout == as_recorded.stdout
    details = [line.strip() for line in as_recorded.stdout.splitlines() if line.startswith("      ")]
    assert any(d.startswith("a.txt: ") for d in details) and any(d.startswith("copy of a.txt: ") for d in details)

    elsewhere = archive("lineage", str(tmp_path / "other" / "a.txt"), "--dest", dest, env=cli_env)
    assert elsewhere.returncode == 1 and "no file" in elsewhere.stderr


def test_a_reader_that_stops_early_gets_no_traceback(cli_env, seeds_dir, tmp_path):
    dest = str(tmp_path / "store")
    assert archive("ingest", str(seeds_dir), "--dest", dest, "--json", env=cli_env).returncode == 0
    seed = sorted(seeds_dir.iterdir())[0].name
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line, as `| head -0` does: every write fails
    try:
        done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "lineage", seed, "--dest", dest],
                              env=cli_env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr and "Exception" not in done.stderr


def test_every_argument_of_every_command_is_described_in_help():
    import argparse

    from archive_flows.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undescribed = [f"{name} {action.dest}" for name, sub in commands.choices.items() for action in sub._actions
                   if not action.help]
    assert not undescribed, undescribed


def test_text_from_files_reaches_the_terminal_escaped(capsys):
    """A title, path, detail or note taken from a file never reaches the terminal as escape codes."""
    import datetime as dt

    from archive_flows import output

    hostile = "Report \x1b[31mred\x1b[0m\x07 and \x1b]0;title\x07\rline"
    output.lineage_story({
        "sha256": "a" * 64, "original": {"key": "objects/x", "stored": True, "bytes": 1},
        "sources": [{"path": hostile, "run_id": "r", "outcome": "document", "reason": None, "media_type": "text/plain",
                     "puid": None}],
        "documents": [{"run_id": "r", "part": "p", "title": hostile, "char_count": 1, "text_sha256": "b" * 64,
                       "extractor": "x", "extractor_version": "1"}],
        "shares_text_with": [],
        "events": [{"event_time": dt.datetime(2026, 1, 1), "event_type": "ingestion", "outcome": "success",
                    "agent": "archive", "agent_version": "1", "tool": None, "run_id": "r", "flow_run_id": None,
                    "source_path": hostile, "detail": hostile}],
        "runs": [],
    })
    output.ingest_summary({"run_id": "r", "dest": "d", "manifest": "m", "bytes": 1, "seconds": 1.0,
                           "counts": {"files": 1, "documents": 1, "duplicates": 0, "quarantined": 0, "skipped": 0},
                           "problems": [], "notes": [hostile]})
    output.runs_table([{"run_id": "r", "kind": "ingest", "committed_at": "2026-01-01T00:00:00", "collection": hostile,
                        "started_by": {"user": "u", "host": "h"},
                        "counts": {"files": 1, "documents": 1, "duplicates": 0, "quarantined": 0, "skipped": 0}}])
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "\r" not in printed
    assert printed.count("Report \\x1b[31mred") >= 4  # shown, escaped: title, path, detail, note, collection


def test_lineage_says_when_a_document_that_shares_text_is_in_no_reprint_cluster_yet(capsys):
    from archive_flows import output

    story = {"sha256": "a" * 64, "original": {"key": "objects/x", "stored": True, "bytes": 1}, "sources": [],
             "documents": [], "events": [], "runs": [],
             "shares_text_with": [{"doc_id": "b" * 64, "similarity": 0.5, "passages": 1, "words": 80, "run_id": "r"}]}
    output.lineage_story({**story, "reuse_clusters": []})
    assert "in none yet; `archive reuse` groups" in capsys.readouterr().out
    output.lineage_story({**story, "reuse_clusters": [{
        "cluster_id": "c" * 32, "size": 2, "earliest_doc_id": None, "earliest_date": None, "run_id": "r2",
        "members": [{"doc_id": "a" * 64, "start": 0, "end": 9, "date": None},
                    {"doc_id": "b" * 64, "start": 3, "end": 12, "date": None}]}]})
    printed = capsys.readouterr().out
    assert "reprint cluster cccccccccccccccc: 2 documents" in printed and "in none yet" not in printed
    output.lineage_story({**story, "shares_text_with": []})
    assert "reprint clusters" not in capsys.readouterr().out


@pytest.mark.parametrize("dest_of", [lambda src: src / "archive-store", lambda src: src, lambda src: src.parent])
def test_a_dest_inside_the_source_or_around_it_is_refused_before_anything_is_written(cli_env, tmp_path, dest_of):
    source = tmp_path / "batch"
    source.mkdir()
    (source / "page.txt").write_text("A page of text.", encoding="utf-8")
    dest = dest_of(source)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    done = archive("ingest", str(source), "--dest", str(dest), env=cli_env)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("archive: ") and "inside" in line and str(source) in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no store made, no probe left


def test_overlap_of_sources_and_stores(tmp_path):
    from archive.sources import overlap

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert overlap(tmp_path / "a", tmp_path / "a" / "b")
    assert overlap(tmp_path / "link", tmp_path / "a" / "store")  # the same folder through a link
    assert overlap(tmp_path / "a" / "b", tmp_path / "a")
    assert overlap(tmp_path / "a", tmp_path / "ab") is None  # a name that only starts the same
    assert overlap("s3://bucket/in", "s3://bucket/in/store") and overlap("s3://bucket", "s3://bucket/store")
    assert overlap("s3://bucket/in", "s3://bucket/input") is None
    assert overlap("s3://bucket/in", "s3://other/in") is None and overlap(tmp_path, "s3://bucket") is None
