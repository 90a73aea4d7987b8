"""A batch reads the next files while it works on one: overlapped, bounded, in order, stopped with the batch."""

import hashlib
import threading

import pytest

from archive import ingest
from archive.errors import StoreError
from archive.ingest import process_batch
from archive.provenance import RunContext, new_run_id
from archive.source import LocalSource
from archive.store import LocalStore, object_key

WAIT = 30  # seconds: a bound on waits for an event that the code under test must cause, never reached when it does


class WatchedSource(LocalSource):
    """A real directory source that notes which thread read which file, in what order, and how far the reads
    ran ahead of the batch's work (started minus worked on)."""

    def __init__(self, root):
        super().__init__(root)
        self._watch = threading.Lock()
        self.reads: list[tuple[str, str]] = []  # (path, thread name)
        self.started: dict[str, threading.Event] = {}
        self.worked_on = 0
        self.most_ahead = 0

    def event(self, path: str) -> threading.Event:
        with self._watch:
            return self.started.setdefault(path, threading.Event())

    def read(self, ref):
        with self._watch:
            self.reads.append((ref.path, threading.current_thread().name))
            self.most_ahead = max(self.most_ahead, len(self.reads) - self.worked_on)
        self.event(ref.path).set()
        return super().read(ref)


class WatchedStore(LocalStore):
    """Counts the originals the batch has worked on; may wait, while storing one, for a read to have begun."""

    def __init__(self, root, source: WatchedSource, wait_for: dict[str, str] | None = None):
        super().__init__(root)
        self.source, self.wait_for, self.waited = source, wait_for or {}, {}
        self.names = {}

    def put_bytes(self, key, data, *, sha256=None):
        path = self.names.get(key)
        if path in self.wait_for:
            self.waited[path] = self.source.event(self.wait_for[path]).wait(WAIT)
        with self.source._watch:
            self.source.worked_on += 1
        return super().put_bytes(key, data, sha256=sha256)


@pytest.fixture
def source_dir(tmp_path, seeds_dir):
    folder = tmp_path / "source"
    folder.mkdir()
    for path in sorted(seeds_dir.iterdir()):
        (folder / path.name).write_bytes(path.read_bytes())
    for i in range(20):
        (folder / f"note-{i:02d}.txt").write_text(f"Note {i} of the harbour committee: the minutes were read again.\n" * 20)
    return folder


def _batch(tmp_path, source, store):
    refs = sorted(source.iter_files(), key=lambda ref: ref.path)
    for ref in refs:
        data = (source.root / ref.path).read_bytes()
        store.names[object_key(hashlib.sha256(data).hexdigest())] = ref.path
    return refs, process_batch(store, source, RunContext(new_run_id(), "reads", source.url), 0, refs)


def test_the_next_file_is_read_while_the_batch_works_on_this_one(tmp_path, source_dir):
    """Storing the first note waits for the second note's read to have begun: without a read ahead it begins
    only after the first is done, and the wait would run out."""
    source = WatchedSource(source_dir)
    store = WatchedStore(tmp_path / "dest", source, wait_for={"note-00.txt": "note-01.txt"})
    refs, summary = _batch(tmp_path, source, store)
    assert store.waited == {"note-00.txt": True}
    assert [path for path, _ in source.reads] == [ref.path for ref in refs]  # each file once, in the batch's order
    assert {thread for _, thread in source.reads} == {"read-ahead_0"}
    assert summary.counts == {"document": len(refs)}
    for ref in refs:  # and each document's original is the bytes of its own file
        data = (source_dir / ref.path).read_bytes()
        assert (tmp_path / "dest" / object_key(hashlib.sha256(data).hexdigest())).read_bytes() == data


def test_reads_run_at_most_so_many_files_ahead(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(ingest, "READ_AHEAD_FILES", 3)
    source = WatchedSource(source_dir)
    store = WatchedStore(tmp_path / "dest", source)
    refs, summary = _batch(tmp_path, source, store)
    assert summary.counts == {"document": len(refs)}
    # The file being worked on and the three after it; more would be a read ahead without bound.
    assert source.most_ahead <= 4


def test_a_file_larger_than_the_read_ahead_bound_is_read_when_its_turn_comes(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(ingest, "READ_AHEAD_BYTES", 4096)
    (source_dir / "note-07.txt").write_text("A long note of the harbour committee. " * 200)  # 7,600 bytes
    source = WatchedSource(source_dir)
    store = WatchedStore(tmp_path / "dest", source)
    refs, summary = _batch(tmp_path, source, store)
    threads = dict(source.reads)
    assert threads["note-07.txt"] == "MainThread"
    assert threads["note-06.txt"] == threads["note-08.txt"] == "read-ahead_0"
    assert summary.counts == {"document": len(refs)}


def test_a_failing_batch_stops_its_reads(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(ingest, "READ_AHEAD_FILES", 2)
    source = WatchedSource(source_dir)

    class FailingStore(WatchedStore):
        def put_bytes(self, key, data, *, sha256=None):
            if self.names.get(key) == "note-03.txt":
                raise StoreError(key, "the disk said no")
            return super().put_bytes(key, data, sha256=sha256)

    store = FailingStore(tmp_path / "dest", source)
    with pytest.raises(StoreError, match="the disk said no"):
        _batch(tmp_path, source, store)
    read = [path for path, _ in source.reads]
    assert "note-03.txt" in read and len(read) < len(list(source.iter_files()))  # not the rest of the batch
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]  # and no reader left behind
