"""What a source holds besides plain files: only regular files are ever opened for reading (checked on the descriptor,
links followed), other kinds are skipped with their kind named; folders of any depth are walked; a file that changes
while it is read is quarantined `unstable` and the run goes on.

A read of a named pipe or a device blocks or never ends: the tests that could meet one run the ingest in a
subprocess with a timeout, so a regression fails instead of hanging the suite."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archive import fixity
from archive.fixity import FileChangedError, NotRegularFileError, open_for_reading, read_unchanged
from archive.ingest import commit_run, process_batch, streamed
from archive.ingest.summary import IngestOptions
from archive.provenance import RunContext, new_run_id
from archive.read import open_dataset
from archive.sources import LocalSource
from archive.storage import LocalStore, object_key

REPO = Path(__file__).resolve().parent.parent
TEXT = "Minutes of the harbour committee, read and approved at the meeting of the fourth.\n"


def _python(code: str, timeout: float = 120) -> dict:
    """Run code in a fresh interpreter (the library from this checkout), with a timeout: what it printed, as JSON."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _char_device(path: Path) -> bool:
    """A /dev/zero-like character device at path, where this process may make one (root)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))
    except (PermissionError, OSError):
        return False
    return True


def _batch(source: LocalSource, store: LocalStore, refs=None, **options):
    refs = sorted(source.iter_files(), key=lambda ref: ref.path) if refs is None else refs
    run = RunContext(new_run_id(), "sources", source.url)
    return run, process_batch(store, source, run, 0, refs, options=IngestOptions(**options))


# -- only regular files are opened --------------------------------------------------------------------------------


def test_the_opener_refuses_a_character_device_naming_its_kind():
    with pytest.raises(NotRegularFileError) as raised:
        open_for_reading("/dev/zero")
    assert raised.value.strerror == "character device, not a regular file"
    assert "/dev/zero" in str(raised.value)


def test_the_opener_refuses_a_folder_and_a_socket_and_reads_a_regular_file_blocking(tmp_path):
    with pytest.raises(NotRegularFileError, match="directory, not a regular file"):
        open_for_reading(tmp_path)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "sock"))
        (tmp_path / "link-to-sock").symlink_to(tmp_path / "sock")
        with pytest.raises(NotRegularFileError, match="socket, not a regular file"):
            open_for_reading(tmp_path / "link-to-sock")
    (tmp_path / "plain.txt").write_text(TEXT)
    with open_for_reading(tmp_path / "plain.txt", buffering=0) as stream:
        assert os.get_blocking(stream.fileno())  # O_NONBLOCK was only for the open
        assert stream.name == str(tmp_path / "plain.txt")
        assert read_unchanged(stream, len(TEXT)) == TEXT.encode()


def test_the_opener_refuses_a_named_pipe_and_a_link_to_one_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    found = _python(f"""
        import json
        from archive.fixity import NotRegularFileError, open_for_reading
        said = []
        for name in ("pipe", "link"):
            try:
                open_for_reading({str(tmp_path)!r} + "/" + name)
            except NotRegularFileError as exc:
                said.append(exc.strerror)
        print(json.dumps(said))
    """, timeout=60)
    assert found == ["named pipe (FIFO), not a regular file"] * 2


@pytest.mark.cli
def test_an_ingest_with_pipes_devices_and_links_to_them_in_the_source_finishes(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    source = tmp_path / "source"
    source.mkdir()
    (source / "minutes.txt").write_text(TEXT)
    os.mkfifo(source / "pipe")
    (source / "link-to-pipe").symlink_to(source / "pipe")
    (source / "link-to-minutes").symlink_to(source / "minutes.txt")
    devices = _char_device(source / "zero")
    if devices:
        (source / "link-to-zero").symlink_to(source / "zero")
    dest = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVE_"))}
    env.update({"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)})
    done = subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(source), "--dest", str(dest),
                           "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    files = {row["path"]: row for row in open_dataset(str(dest), "files").to_table().to_pylist()}
    assert sorted(files[name]["outcome"] for name in ("minutes.txt", "link-to-minutes")) == ["document", "duplicate"]
    for name in ("pipe", "link-to-pipe"):
        assert (files[name]["outcome"], files[name]["reason"]) == ("skipped", "not-a-regular-file")
        assert "named pipe (FIFO), not a regular file" in files[name]["detail"]
    if devices:
        for name in ("zero", "link-to-zero"):
            assert (files[name]["outcome"], files[name]["reason"]) == ("skipped", "not-a-regular-file")
            assert "character device, not a regular file" in files[name]["detail"]
    assert len(files) == (6 if devices else 4)


def test_a_file_swapped_for_a_pipe_or_a_device_after_the_walk_is_skipped_naming_its_kind(tmp_path):
    # The walk saw regular files; before they are read, each becomes a named pipe or a device (or a link's
    # target does): the read ahead, the read in turn, the streamed read of a large file and the sidecar's read
    # all check the descriptor they opened, and none waits on the pipe or reads the device.
    found = _python(f"""
        import json, os, stat
        from pathlib import Path
        from archive.ingest import load_descriptions, process_batch, readahead
        from archive.ingest.summary import IngestOptions
        from archive.provenance import RunContext, new_run_id
        from archive.sources import LocalSource
        from archive.storage import LocalStore

        source = Path({str(tmp_path)!r}) / "source"
        source.mkdir()
        for name in ("ahead.txt", "in-turn.txt", "large.txt", "target.txt", "device.txt", "kept.txt"):
            (source / name).write_text(name + ": " + {TEXT!r} * (40 if name in ("large.txt", "in-turn.txt") else 1))
        (source / "metadata.csv").write_text("filename,dc.title\\nkept.txt,Kept\\n")
        (source / "link.txt").symlink_to(source / "target.txt")
        src = LocalSource(source)
        refs = sorted(src.iter_files(), key=lambda ref: ref.path)
        for name in ("ahead.txt", "in-turn.txt", "large.txt", "target.txt", "metadata.csv"):
            (source / name).unlink()
            os.mkfifo(source / name)
        (source / "device.txt").unlink()
        try:
            os.mknod(source / "device.txt", stat.S_IFCHR | 0o666, os.makedev(1, 5))
            device = True
        except OSError:
            device = False
        readahead.READ_AHEAD_BYTES = 2048  # in-turn.txt (3,400 bytes) is read in its turn, not ahead
        descriptions = load_descriptions(src, [ref for ref in refs if ref.path == "metadata.csv"])
        summary = process_batch(LocalStore(source.parent / "store"), src, RunContext(new_run_id(), None, src.url), 0,
                                refs, options=IngestOptions(max_file_bytes=3000), descriptions=descriptions)
        print(json.dumps({{"device": device, "sidecar": descriptions.error, "counts": dict(summary.counts),
                          "problems": [[p.path, p.reason, p.detail] for p in summary.problems]}}))
    """)
    problems = {path: (reason, detail) for path, reason, detail in found["problems"]}
    pipe = ("not-a-regular-file", "named pipe (FIFO), not a regular file: nothing to read")
    for name in ("ahead.txt", "in-turn.txt", "large.txt", "link.txt", "target.txt", "metadata.csv"):
        assert problems[name] == pipe, name
    assert found["sidecar"] == "metadata.csv cannot be read: named pipe (FIFO), not a regular file"
    if found["device"]:
        assert problems["device.txt"] == ("not-a-regular-file",
                                          "character device, not a regular file: nothing to read")
    assert found["counts"] == {"document": 1, "skipped": 7}  # (without a device, device.txt is simply gone)


# -- any depth ----------------------------------------------------------------------------------------------------


def test_the_walk_keeps_its_order_folders_where_they_come(tmp_path):
    for name in ("b/d/e.txt", "b/c.txt", "a.txt", "b0.txt", "b/d0.txt", "c/f.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert [ref.path for ref in LocalSource(tmp_path).iter_files()] == [
        "a.txt", "b/c.txt", "b/d/e.txt", "b/d0.txt", "b0.txt", "c/f.txt"]


def test_a_tree_1500_folders_deep_is_walked_and_its_bottom_file_ingested(tmp_path):
    source = tmp_path / "deep"
    depth = 1500
    bottom = str(source)
    os.mkdir(bottom)
    try:
        for _ in range(depth):  # (os.makedirs recurses: one folder at a time; 3,000 characters, within PATH_MAX)
            bottom = os.path.join(bottom, "d")
            os.mkdir(bottom)
        with open(os.path.join(bottom, "bottom.txt"), "w") as f:
            f.write(TEXT)
        (source / "top.txt").write_text("The top of the tree: " + TEXT)
        src = LocalSource(source)
        refs = list(src.iter_files())
        assert [ref.path for ref in refs] == ["d/" * depth + "bottom.txt", "top.txt"]
        _, summary = _batch(src, LocalStore(tmp_path / "store"), refs)
        assert summary.counts == {"document": 2}
    finally:
        for level in range(depth, 0, -1):  # (shutil.rmtree recurses too: the tree is taken down from below)
            folder = os.path.join(source, *["d"] * level)
            for name in os.listdir(folder):
                os.unlink(os.path.join(folder, name))
            os.rmdir(folder)


# -- files that change while they are read ------------------------------------------------------------------------


@pytest.fixture
def notes(tmp_path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for i in range(4):
        (source / f"note-{i}.txt").write_text(f"Note {i}. " + TEXT * 3)
    (source / "growing.txt").write_text("The start of a report still being written. " + TEXT)
    return source


def _append_while_read(monkeypatch, target: Path, module, name: str) -> list[bytes]:
    """Append to target in the middle of its read, through module.name (a reader given the open stream first):
    the change is made by the read itself, at a known point, not by a race. Returns the bytes appended."""
    real, appended = getattr(module, name), []

    def reading(stream, *args, **kwargs):
        if stream.name != str(target):
            return real(stream, *args, **kwargs)

        class Appending:
            def fileno(self):
                return stream.fileno()

            @property
            def name(self):
                return stream.name

            def read(self, n=-1):
                chunk = stream.read(n)
                if chunk and not appended:
                    appended.append(b"More lines, written while the file was read.\n")
                    with open(target, "ab") as more:
                        more.write(appended[0])
                return chunk

        return real(Appending(), *args, **kwargs)

    monkeypatch.setattr(module, name, reading)
    return appended


def _committed(store: LocalStore, run: RunContext, summary) -> dict[str, dict]:
    commit_run(store, run, [summary], parameters={}, warnings=[])
    return {row["path"]: row for row in open_dataset(str(store.root), "files").to_table().to_pylist()}


def test_a_file_appended_to_while_it_is_read_is_quarantined_unstable_and_the_others_published(
        notes, tmp_path, monkeypatch):
    before = (notes / "growing.txt").read_bytes()
    appended = _append_while_read(monkeypatch, notes / "growing.txt", fixity, "_read_upto")
    store = LocalStore(tmp_path / "store")
    run, summary = _batch(LocalSource(notes), store)
    assert appended  # the file did change during its read
    files = _committed(store, run, summary)
    assert {path: row["outcome"] for path, row in files.items()} == {
        **{f"note-{i}.txt": "document" for i in range(4)}, "growing.txt": "quarantine"}
    row = files["growing.txt"]
    assert row["reason"] == "unstable"
    assert "changed while it was read" in row["detail"] and "ingest it again" in row["detail"]
    # What was read is kept: the bytes the file had when the read began (the read stops one byte past them).
    kept = store.get_bytes(object_key(row["sha256"]))
    assert kept == (before + appended[0])[:len(before) + 1]
    quarantine = open_dataset(str(store.root), "quarantine").to_table().to_pylist()
    assert [(q["path"], q["reason"]) for q in quarantine] == [("growing.txt", "unstable")]


def test_a_file_changed_between_the_walk_and_its_read_is_quarantined_unstable(notes, tmp_path):
    source = LocalSource(notes)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    with open(notes / "growing.txt", "a") as f:
        f.write("A last paragraph.\n")
    _, summary = _batch(source, LocalStore(tmp_path / "store"), refs)
    assert summary.counts == {"document": 4, "quarantine": 1}
    [problem] = summary.problems
    assert (problem.path, problem.reason) == ("growing.txt", "unstable")
    assert "changed since it was listed" in problem.detail


def test_a_file_over_the_limit_appended_to_while_it_is_hashed_is_kept_as_a_copy_and_quarantined_unstable(
        notes, tmp_path, monkeypatch):
    (notes / "growing.txt").write_text("A long report still being written. " + TEXT * 100)
    appended = _append_while_read(monkeypatch, notes / "growing.txt", streamed, "digest_unchanged")
    store = LocalStore(tmp_path / "store")
    run, summary = _batch(LocalSource(notes), store, max_file_bytes=2000)
    assert appended
    files = _committed(store, run, summary)
    assert [files[f"note-{i}.txt"]["outcome"] for i in range(4)] == ["document"] * 4
    row = files["growing.txt"]
    assert (row["outcome"], row["reason"]) == ("quarantine", "unstable")
    assert "changed while it was read" in row["detail"]
    # The copy kept is the file as it was when copied, its checksum its own.
    data = (notes / "growing.txt").read_bytes()
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size"] == len(data)
    assert store.get_bytes(object_key(row["sha256"])) == data


def test_a_file_over_the_limit_changed_before_the_store_copies_it_is_quarantined_unstable(notes, tmp_path):
    # The store reads the file again to keep it: the bytes it reads hash differently, and the store refuses them.
    # That failure is the file's (it changed), not the store's: the batch goes on.
    (notes / "growing.txt").write_text("A long report still being written. " + TEXT * 100)
    growing = str(notes / "growing.txt")

    class ChangingStore(LocalStore):
        def put_file(self, key, path, *, sha256=None):
            if path == growing:
                with open(path, "a") as f:
                    f.write("Written between the checksum and the copy.\n")
            return super().put_file(key, path, sha256=sha256)

    store = ChangingStore(tmp_path / "store")
    run, summary = _batch(LocalSource(notes), store, max_file_bytes=2000)
    files = _committed(store, run, summary)
    row = files["growing.txt"]
    assert (row["outcome"], row["reason"]) == ("quarantine", "unstable")
    assert "changed while it was copied into the store" in row["detail"]
    data = (notes / "growing.txt").read_bytes()
    assert store.get_bytes(object_key(row["sha256"])) == data
    assert [files[f"note-{i}.txt"]["outcome"] for i in range(4)] == ["document"] * 4
    # One message digest per file: the abandoned copy's events are gone.
    events = open_dataset(str(store.root), "events").to_table().to_pylist()
    assert len([e for e in events if e["source_path"] == "growing.txt"
                and e["event_type"] == "message digest calculation"]) == 1


def test_a_file_over_the_limit_that_is_stable_is_still_too_large(notes, tmp_path):
    (notes / "large.txt").write_text("A long and finished report. " + TEXT * 100)
    _, summary = _batch(LocalSource(notes), LocalStore(tmp_path / "store"), max_file_bytes=2000)
    assert summary.counts == {"document": 5, "quarantine": 1}
    assert [(p.path, p.reason) for p in summary.problems] == [("large.txt", "too-large")]


def test_read_unchanged_says_what_changed_and_keeps_the_bytes(tmp_path, monkeypatch):
    path = tmp_path / "log.txt"
    path.write_bytes(b"first line\n")
    appended = _append_while_read(monkeypatch, path, fixity, "_read_upto")
    with open_for_reading(path) as stream, pytest.raises(FileChangedError) as raised:
        read_unchanged(stream, 11)
    assert appended
    assert raised.value.data == b"first line\nM"  # up to one byte past what it had: a growing file is not chased
    assert "11 bytes" in raised.value.strerror and str(path) in str(raised.value)


def test_an_unexpected_failure_of_a_batch_names_the_file(notes, tmp_path, monkeypatch):
    from archive.ingest import batch

    real = batch.identify
    monkeypatch.setattr(batch, "identify", lambda data: real(data) if b"Note 2." not in data else 1 / 0)
    with pytest.raises(ZeroDivisionError) as raised:
        _batch(LocalSource(notes), LocalStore(tmp_path / "store"))
    assert any("note-2.txt" in note for note in raised.value.__notes__)
