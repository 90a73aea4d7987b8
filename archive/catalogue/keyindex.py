"""Which doc_ids committed runs published, and which runs hold rows of a record, looked up by the ids' leading
bits instead of read from every part.

Each committed run that published documents has a doc-id index at index/doc_ids/run=<run_id>.idx: its doc_ids
as 32-byte digests, sorted, behind a fan-out table of their leading bits (about BUCKET digests a bucket, as git's
pack index); each run with records rows a record-id index at index/record_ids/run=<run_id>.idx (the UUIDs' 16
bytes). A lookup reads two fan-out entries and one bucket of each such run's index, through a memory map: what
an ingest holds and reads for its duplicate check and its records' next versions grows with its own files and
the number of runs, not with the documents and records the archive holds (bench/small_run.py).

The index is derived from the run's documents parts, never the record itself: written right after the run
commits, made again from the parts wherever it is missing or damaged (a crash between the manifest and the
index, a store older than the index), and left out of bags and exports; `archive gc` leaves index/ alone. An S3
store's indexes are copied once to a local cache (ARCHIVE_CACHE_DIR, else $XDG_CACHE_HOME/archive, else
~/.cache/archive), named by the sha256s of the parts they index, so a copy is never used for other parts.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow.parquet as pq

from ..errors import ObjectExistsError, ObjectNotFoundError, StoreError
from ..storage import LocalStore, Store, open_store

INDEX_PREFIX = "index/"
MAGIC = b"ARCKEY01"
_HEADER = struct.Struct("<8sQBB6x")  # magic, keys, fan-out bits, bytes a key
_FANOUT_PAIR = struct.Struct("<II")
BUCKET = 8  # digests a fan-out bucket holds on average
MAX_BITS = 28


@dataclass(frozen=True)
class Keys:
    """What an index holds: the ids of a dataset's column, width bytes each."""

    name: str  # the folder under index/
    dataset: str
    column: str
    width: int
    exact: bool  # each row of the dataset in one run has its own id (the index holds as many as the parts' rows)
    skip: tuple[str, ...] = ()  # kinds of run not indexed

    def to_bytes(self, key: str) -> bytes:
        return bytes.fromhex(key) if self.width == 32 else uuid.UUID(key).bytes


# (a reprocess run's documents are re-derived texts of documents an ingest published: not indexed again)
DOC_IDS = Keys("doc_ids", "documents", "doc_id", 32, True, skip=("reprocess",))
RECORD_IDS = Keys("record_ids", "records", "record_id", 16, False)


def index_key(run_id: str, keys: Keys = DOC_IDS) -> str:
    return f"{INDEX_PREFIX}{keys.name}/run={run_id}.idx"


def _digests(ids: Iterable[str], keys: Keys = DOC_IDS) -> np.ndarray:
    """The ids as rows of big-endian uint64: compared row by row, ordered as their bytes."""
    raw = b"".join(keys.to_bytes(i) for i in ids)
    return np.frombuffer(raw, dtype=">u8").reshape(-1, keys.width // 8)


def _layout(count: int, bits: int, width: int) -> tuple[int, int]:
    """(offset of the digests, size of the file) of an index of count keys of width bytes and 2**bits buckets."""
    digests_at = _HEADER.size + 4 * ((1 << bits) + 1)
    digests_at += -digests_at % 8
    return digests_at, digests_at + width * count


def encode(ids: Iterable[str], keys: Keys = DOC_IDS) -> bytes:
    """The index of ids (each once, in any order)."""
    rows = _digests(ids, keys)
    if len(rows):
        rows = np.unique(rows, axis=0)  # (sorted row by row: the hex order)
    count = len(rows)
    if count >= 1 << 32:
        raise ValueError(f"{count} doc_ids are more than one index holds")
    bits = min(MAX_BITS, max(0, math.ceil(math.log2(count / BUCKET)))) if count > BUCKET else 0
    top = (rows[:, 0] >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(count, dtype=np.int64)
    fanout = np.zeros((1 << bits) + 1, dtype="<u4")
    np.cumsum(np.bincount(top, minlength=1 << bits), out=fanout[1:])
    digests_at, size = _layout(count, bits, keys.width)
    out = bytearray(size)
    _HEADER.pack_into(out, 0, MAGIC, count, bits, keys.width)
    out[_HEADER.size:_HEADER.size + fanout.nbytes] = fanout.tobytes()
    out[digests_at:] = np.ascontiguousarray(rows, dtype=">u8").tobytes()
    return bytes(out)


class KeyIndex:
    """One run's index over a buffer (bytes or a memory map): contains() looks digests up."""

    def __init__(self, buffer, expected: int | None = None, keys: Keys = DOC_IDS):
        if len(buffer) < _HEADER.size:
            raise ValueError("shorter than an index header")
        magic, count, bits, width = _HEADER.unpack_from(buffer, 0)
        if magic != MAGIC or bits > MAX_BITS or width != keys.width:
            raise ValueError(f"not an index of {keys.name}")
        digests_at, size = _layout(count, bits, width)
        if len(buffer) != size:
            raise ValueError(f"{len(buffer)} bytes where its header says {size}")
        if expected is not None and (count != expected if keys.exact else count > expected):
            raise ValueError(f"{count} {keys.name} where the run's {keys.dataset} parts hold {expected} rows")
        self.buffer, self.count, self.bits, self.width, self._digests_at = buffer, count, bits, width, digests_at
        self.fanout = np.frombuffer(buffer, dtype="<u4", count=(1 << bits) + 1, offset=_HEADER.size)
        self.rows = np.frombuffer(buffer, dtype=">u8", count=width // 8 * count,
                                  offset=digests_at).reshape(-1, width // 8)

    def holds(self, key: bytes) -> bool:
        """Whether one key (its width bytes) is in the index: its bucket's bytes searched, no array made."""
        if not self.count:
            return False
        top = int.from_bytes(key[:8], "big") >> (64 - self.bits) if self.bits else 0
        low, high = _FANOUT_PAIR.unpack_from(self.buffer, _HEADER.size + 4 * top)
        width, start = self.width, self._digests_at
        bucket = self.buffer[start + width * low:start + width * high]
        at = bucket.find(key)
        while at >= 0:
            if at % width == 0:
                return True
            at = bucket.find(key, at + 1)
        return False

    def contains(self, probes: np.ndarray) -> np.ndarray:
        """Whether each probe (a row of _digests) is in the index: the probes' buckets compared slot by slot."""
        found = np.zeros(len(probes), dtype=bool)
        if not self.count or not len(probes):
            return found
        top = (probes[:, 0] >> np.uint64(64 - self.bits)).astype(np.int64) if self.bits \
            else np.zeros(len(probes), dtype=np.int64)
        low, high = self.fanout[top].astype(np.int64), self.fanout[top + 1].astype(np.int64)
        for slot in range(int((high - low).max())):
            at = low + slot
            open_ = at < high
            rows = self.rows[at[open_]]
            found[open_] |= (rows == probes[open_]).all(axis=1)
        return found


class RunIndexes:
    """The indexes of the committed runs of manifests that have parts of keys.dataset (of kinds not in keys.skip).

    Each run's index is opened on first use in each process; picklable as the store's URL and the runs, so a
    batch worker opens what it needs itself."""

    def __init__(self, store: Store, manifests: Iterable[dict], keys: Keys):
        self.store, self.keys = store, keys
        # (run_id, (key, sha256) of each part, the rows the parts hold) of each indexed run
        self.runs = [(m["run_id"], tuple((p["key"], p["sha256"]) for p in parts), sum(p["rows"] for p in parts))
                     for m in manifests if m["kind"] not in keys.skip
                     for parts in [[p for p in m["parts"] if p["dataset"] == keys.dataset]] if parts]
        self._open: list[KeyIndex] | None = None

    def __getstate__(self):
        return {"url": self.store.url, "keys": self.keys, "runs": self.runs}

    def __setstate__(self, state):
        self.store, self.keys, self.runs = open_store(state["url"]), state["keys"], state["runs"]
        self._open = None

    def hits(self, ids: list[str]) -> Iterable[tuple[str, np.ndarray]]:
        """(run_id, whether it holds each of ids) of each indexed run."""
        if not ids or not self.runs:
            return
        probes = _digests(ids, self.keys)
        for (run_id, _, _), index in zip(self.runs, self._indexes()):
            yield run_id, index.contains(probes)

    def _indexes(self) -> list[KeyIndex]:
        if self._open is None:
            self._open = [open_index(self.store, run_id, parts, rows, self.keys) for run_id, parts, rows in self.runs]
        return self._open

    def among(self, ids: Iterable[str]) -> set[str]:
        """Those of ids that some indexed run holds."""
        ids = sorted(set(ids))
        found = np.zeros(len(ids), dtype=bool)
        for _, hit in self.hits(ids):
            found |= hit
        return {i for i, hit in zip(ids, found) if hit}

    def runs_holding(self, ids: Iterable[str]) -> set[str]:
        """The runs that hold any of ids."""
        return {run_id for run_id, hit in self.hits(sorted(set(ids))) if hit.any()}


class CommittedDocuments(RunIndexes):
    """The doc_ids the committed runs of manifests published (withdrawn ones too: their bytes met again are
    duplicates, never published a second time), as a container: `doc_id in committed`, or among() for many."""

    def __init__(self, store: Store, manifests: Iterable[dict]):
        super().__init__(store, manifests, DOC_IDS)

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, str) or not self.runs:
            return False
        key = self.keys.to_bytes(doc_id)
        return any(index.holds(key) for index in self._indexes())


class DocumentsOnceCommitted:
    """The doc_ids that are documents once a run commits: those it publishes, and (committed) those committed
    before."""

    def __init__(self, published: set[str], committed: CommittedDocuments | None = None):
        self.published, self.committed = published, committed

    def among(self, doc_ids: Iterable[str]) -> set[str]:
        doc_ids = set(doc_ids)
        before = self.committed.among(doc_ids - self.published) if self.committed is not None else set()
        return (doc_ids & self.published) | before


def runs_with_records(store: Store, manifests: list[dict], record_ids: Iterable[str]) -> list[dict]:
    """The manifests of the runs that hold a row of any of these records."""
    holding = RunIndexes(store, manifests, RECORD_IDS).runs_holding(record_ids)
    return [m for m in manifests if m["run_id"] in holding]


def open_index(store: Store, run_id: str, parts: tuple[tuple[str, str], ...], rows: int,
               keys: Keys = DOC_IDS) -> KeyIndex:
    """run_id's index: mapped from the store (local) or the cache (S3); made from the run's parts and stored when
    it is missing or damaged."""
    key = index_key(run_id, keys)
    if isinstance(store, LocalStore):
        path = store.arrow_path(key)
    else:
        named = hashlib.sha256("".join(sha256 for _, sha256 in parts).encode()).hexdigest()[:40]
        path = str(_cache_dir() / keys.name / f"{named}.idx")
        if not os.path.exists(path):
            try:
                _cache(path, store.get_bytes(key))
            except ObjectNotFoundError:
                pass
    try:
        return KeyIndex(_mapped(path), rows, keys)
    except (OSError, ValueError):
        pass
    data = _made(store, [part for part, _ in parts], keys)
    try:
        store.put_bytes(key, data)
    except ObjectExistsError:  # (another process made it: the same bytes, or a damaged copy this one replaces)
        if isinstance(store, LocalStore):
            store.delete(key)
            _put_quietly(store, key, data)
    except (StoreError, OSError):  # (used from memory: the next run tries again)
        pass
    if not isinstance(store, LocalStore):
        _cache(path, data)
    return KeyIndex(data, None, keys)


def write_indexes(store: Store, manifest: dict) -> None:
    """Store the indexes of a run that has just committed (its documents' doc_ids, its records' ids); a failure
    is left to the next lookup, which makes the index from the parts."""
    for keys in (DOC_IDS, RECORD_IDS):
        parts = [p["key"] for p in manifest["parts"] if p["dataset"] == keys.dataset]
        if not parts or manifest["kind"] in keys.skip:
            continue
        try:
            _put_quietly(store, index_key(manifest["run_id"], keys), _made(store, parts, keys))
        except (StoreError, OSError):
            pass


def _made(store: Store, parts: list[str], keys: Keys) -> bytes:
    """The index of the ids in these parts (their keys.column, the one column read, not the texts)."""
    ids: list[str] = []
    for key in parts:
        table = pq.read_table(store.arrow_path(key), columns=[keys.column], filesystem=store.arrow_filesystem())
        ids.extend(table.column(keys.column).to_pylist())
    return encode(ids, keys)


def _put_quietly(store: Store, key: str, data: bytes) -> None:
    try:
        store.put_bytes(key, data)
    except ObjectExistsError:
        pass


def _mapped(path: str):
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size == 0:
            raise ValueError("empty")
        return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)


def _cache_dir() -> Path:
    base = os.environ.get("ARCHIVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "archive")
    return Path(base) / "index"


def _cache(path: str, data: bytes) -> None:
    """Keep data at path, whole or not at all (a temporary file renamed into place)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
