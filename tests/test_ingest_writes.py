"""A batch's originals on their way into a store that takes several writes at once: bounded, settled, recorded."""

import hashlib
import threading

import pytest

from archive.ingest import originals, process_batch
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import LocalStore, object_key


class WatchedStore(LocalStore):
    """A real directory store that takes four writes at once and notes the most bytes it was writing at once."""

    concurrent_writes = 4

    def __init__(self, root):
        super().__init__(root)
        self._watch = threading.Lock()
        self.writing = self.most_writing = 0

    def put_bytes(self, key, data, *, sha256=None):
        with self._watch:
            self.writing += len(data)
            self.most_writing = max(self.most_writing, self.writing)
        try:
            return super().put_bytes(key, data, sha256=sha256)
        finally:
            with self._watch:
                self.writing -= len(data)


@pytest.fixture
def source_dir(seed_copy):
    for i in range(6):  # 3 MiB text files, each different
        (seed_copy / f"big-{i}.txt").write_bytes(
            (f"volume {i}: " + "the harbour committee met again. " * 100_000).encode()[:3 << 20])
    (seed_copy / "copy-of-big-0.txt").write_bytes((seed_copy / "big-0.txt").read_bytes())
    return seed_copy


def test_bytes_on_their_way_stay_under_the_bound_and_every_original_is_stored_and_recorded(tmp_path, source_dir,
                                                                                          monkeypatch):
    monkeypatch.setattr(originals, "WRITE_BYTES_IN_FLIGHT", 8 << 20)
    store = WatchedStore(tmp_path / "dest")
    source = open_source(source_dir)
    run = RunContext(new_run_id(), "writes", str(source_dir))
    summary = process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda ref: ref.path))

    assert 0 < store.most_writing <= 8 << 20  # two 3 MiB files at most, never three
    assert summary.counts == {"document": 11, "duplicate": 1}
    for ref in source.iter_files():
        digest = hashlib.sha256((source_dir / ref.path).read_bytes()).hexdigest()
        assert (tmp_path / "dest" / object_key(digest)).read_bytes() == (source_dir / ref.path).read_bytes()


def test_a_file_larger_than_the_bound_goes_alone(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(originals, "WRITE_BYTES_IN_FLIGHT", 1 << 20)
    store = WatchedStore(tmp_path / "dest")
    source = open_source(source_dir)
    run = RunContext(new_run_id(), "writes", str(source_dir))
    process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda ref: ref.path))
    assert store.most_writing == 3 << 20


def test_a_failed_write_fails_the_batch_naming_the_file_and_leaves_no_parts(tmp_path, source_dir):
    from archive.errors import StoreError

    class FailingStore(WatchedStore):
        def put_bytes(self, key, data, *, sha256=None):
            if len(data) == 3 << 20:
                raise StoreError(key, "the disk said no")
            return super().put_bytes(key, data, sha256=sha256)

    store = FailingStore(tmp_path / "dest")
    source = open_source(source_dir)
    run = RunContext(new_run_id(), "writes", str(source_dir))
    with pytest.raises(StoreError, match=r"the disk said no \(while storing the original of big-0.txt\)"):
        process_batch(store, source, run, 0, sorted(source.iter_files(), key=lambda ref: ref.path))
    assert not list(store.list("datasets/"))
