"""A batch begins to read the next files while it works on one: ahead, bounded, in order, let go with the batch."""

import hashlib
import os

import pytest

from archive.errors import StoreError
from archive.ingest import batch, process_batch, readahead
from archive.provenance import RunContext, new_run_id
from archive.sources import LocalSource
from archive.sources import local as source_module
from archive.storage import LocalStore, object_key


class WatchedSource(LocalSource):
    """A real directory source that notes, in order, which files were begun ahead (prefetch) and read."""

    def __init__(self, root):
        super().__init__(root)
        self.log: list[tuple[str, str]] = []  # ("prefetch" | "read", path)
        self.handles = []

    def prefetch(self, ref):
        self.log.append(("prefetch", ref.path))
        handle = super().prefetch(ref)
        self.handles.append(handle)
        watched = self

        class Watched:
            def result(self):
                watched.log.append(("read", ref.path))
                return handle.result()

            def close(self):
                handle.close()

        return Watched()

    def read(self, ref):
        self.log.append(("read", ref.path))
        return super().read(ref)

    def ahead_of(self, path: str) -> list[str]:
        """The other files begun, and not yet read, when path was read."""
        before = self.log[:self.log.index(("read", path))]
        return [p for kind, p in before if kind == "prefetch" and p != path and ("read", p) not in before]


class NamedStore(LocalStore):
    def __init__(self, root, source_dir):
        super().__init__(root)
        self.names = {object_key(hashlib.sha256(p.read_bytes()).hexdigest()): p.name for p in source_dir.iterdir()}


@pytest.fixture
def source_dir(seed_copy):
    for i in range(20):
        (seed_copy / f"note-{i:02d}.txt").write_text(
            f"Note {i} of the harbour committee: the minutes were read again.\n" * 20)
    return seed_copy


def _batch(source, store):
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    return refs, process_batch(store, source, RunContext(new_run_id(), "reads", source.url), 0, refs)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_next_files_are_begun_while_the_batch_works_on_this_one(tmp_path, source_dir, monkeypatch):
    hints = []
    real_fadvise = os.posix_fadvise
    monkeypatch.setattr(source_module.os, "posix_fadvise",
                        lambda fd, offset, length, advice: (hints.append(advice),
                                                            real_fadvise(fd, offset, length, advice)))
    source = WatchedSource(source_dir)
    refs, summary = _batch(source, NamedStore(tmp_path / "dest", source_dir))
    paths = [ref.path for ref in refs]
    assert [p for kind, p in source.log if kind == "read"] == paths  # each file read once, in the batch's order
    assert sorted(p for kind, p in source.log if kind == "prefetch") == sorted(paths)  # every one begun ahead
    assert readahead.READ_AHEAD_FILES - 1 >= 1
    assert source.ahead_of("note-00.txt") == paths[paths.index("note-00.txt") + 1:][:readahead.READ_AHEAD_FILES - 1]
    assert hints and set(hints) == {os.POSIX_FADV_WILLNEED}  # the kernel was asked for the pages
    assert summary.counts == {"document": len(refs)}
    for ref in refs:  # and each document's original is the bytes of its own file
        data = (source_dir / ref.path).read_bytes()
        assert (tmp_path / "dest" / object_key(hashlib.sha256(data).hexdigest())).read_bytes() == data
    assert all(handle._stream.closed for handle in source.handles)


def test_reads_are_begun_at_most_so_many_files_ahead(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(readahead, "READ_AHEAD_FILES", 3)
    source = WatchedSource(source_dir)
    refs, summary = _batch(source, NamedStore(tmp_path / "dest", source_dir))
    assert summary.counts == {"document": len(refs)}
    assert max(len(source.ahead_of(ref.path)) for ref in refs) == 2  # the file being worked on and 2 after it


def test_a_file_larger_than_the_read_ahead_bound_is_read_when_its_turn_comes(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(readahead, "READ_AHEAD_BYTES", 4096)
    (source_dir / "note-07.txt").write_text("A long note of the harbour committee. " * 200)  # 7,600 bytes
    source = WatchedSource(source_dir)
    refs, summary = _batch(source, NamedStore(tmp_path / "dest", source_dir))
    begun = {p for kind, p in source.log if kind == "prefetch"}
    assert "note-07.txt" not in begun and {"note-06.txt", "note-08.txt"} <= begun
    assert [p for kind, p in source.log if kind == "read"] == [ref.path for ref in refs]
    assert summary.counts == {"document": len(refs)}


def test_a_file_that_cannot_be_opened_ahead_is_skipped_in_its_turn_with_the_reason(tmp_path, source_dir):
    source = WatchedSource(source_dir)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    (source_dir / "note-05.txt").unlink()  # gone between the walk and the read
    summary = process_batch(NamedStore(tmp_path / "dest", source_dir), source,
                            RunContext(new_run_id(), "reads", source.url), 0, refs)
    assert summary.counts == {"document": len(refs) - 1, "skipped": 1}
    assert [(p.path, p.reason) for p in summary.problems] == [("note-05.txt", "unreadable")]
    assert "No such file" in summary.problems[0].detail


def test_a_failing_batch_lets_go_of_the_files_begun_ahead(tmp_path, source_dir):
    class FailingStore(NamedStore):
        def put_bytes(self, key, data, *, sha256=None):
            if self.names.get(key) == "note-03.txt":
                raise StoreError(key, "the disk said no")
            return super().put_bytes(key, data, sha256=sha256)

    source = WatchedSource(source_dir)
    before = _open_descriptors()
    with pytest.raises(StoreError, match="the disk said no"):
        _batch(source, FailingStore(tmp_path / "dest", source_dir))
    assert ("prefetch", "note-05.txt") in source.log and ("read", "note-05.txt") not in source.log
    assert all(handle._stream.closed for handle in source.handles)
    assert _open_descriptors() <= before


def test_a_batch_is_freed_when_it_returns_not_left_to_the_cycle_collector(tmp_path, source_dir, monkeypatch):
    # An exception kept in a local of the frame that caught it (a file that is not UTF-8, a file gone before
    # its read) once held that frame and its callers' frames, the batch's documents with them, in a reference
    # cycle: tens of megabytes a batch that lived until Python's cycle collector came by.
    import gc
    import weakref

    (source_dir / "cp1252.txt").write_bytes(
        "The committee\u2019s caf\u00e9 minutes, read again.\n".encode("cp1252") * 20)
    (source_dir / "binary.txt").write_bytes(bytes(range(128, 256)) * 40)  # decodes as nothing: quarantined
    source = LocalSource(source_dir)
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    (source_dir / "note-05.txt").unlink()  # gone between the walk and the read: the read ahead keeps the error
    made = []
    real_init = batch.BatchProcessor.__init__
    monkeypatch.setattr(batch.BatchProcessor, "__init__",
                        lambda self, *a, **k: (made.append(weakref.ref(self)), real_init(self, *a, **k))[1])
    gc.collect()
    gc.disable()
    try:
        summary = process_batch(LocalStore(tmp_path / "dest"), source,
                                RunContext(new_run_id(), "reads", source.url), 0, refs)
        assert summary.counts["skipped"] == 1 and summary.counts["document"] >= len(refs) - 3
        assert made and made[0]() is None  # freed by reference counting alone
    finally:
        gc.enable()
