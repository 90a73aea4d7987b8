"""Text reuse over the store: each ingest run's new documents against the archive through the persisted band
hashes (reuse_bands), and `archive reuse`, a complete recompute committed as a run of kind reuse."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import provenance as ev
from .provenance import RunContext
from .publish import (PartInfo, build_manifest, commit_manifest, committed_manifests, new_attempt, part_key, put_part,
                      write_part)
from .read import open_dataset
from .records import arrow_schema
from .reuse import (REUSE_BANDS, ReuseError, ReuseParams, ReuseStats, aligned_pair, band_scheme, candidate_pairs,
                    DocumentBands, document_bands, reuse_rows)
from .storage import Store
from .timing import StageTimer

TOOL = "archive.reuse: MinHash LSH band hashes + exact alignment"
ROWS_PER_PART = 50_000  # reuse and event rows per part file
BAND_ROWS_PER_PART = 1_000_000  # reuse_bands rows per part file (about 10 MB of Parquet)
BAND_ROWS_PER_GROUP = 65_536  # reuse_bands rows per Parquet row group, the most held while writing
# Band rows grouped at once: a partition larger than this is split again by further bits of the hash.
MAX_PARTITION_ROWS = 1_000_000
DOCUMENT_BATCH = 256  # documents per record batch read: texts held at once while sketching or loading
BAND_BATCH = 32_768  # reuse_bands rows per record batch read

OURS, FRESH = 1, 2  # roles of a document in an ingest run's search: this run's, or of a run committed meanwhile


# -- what manifests say about bands --------------------------------------------


def reuse_parameters(params: ReuseParams = ReuseParams()) -> dict:
    """The parameters an ingest run records under parameters.reuse: ReuseParams and the band scheme's name."""
    return {**asdict(params), "bands": band_scheme(params).name}


def manifest_band_scheme(manifest: dict) -> str | None:
    """The band scheme of the reuse_bands parts a committed run published, if any."""
    parameters = manifest.get("parameters") or {}
    if manifest["kind"] == "ingest":
        return (parameters.get("reuse") or {}).get("bands")
    if manifest["kind"] == "reuse":
        return parameters.get("bands")
    return None


def banded_runs(manifests: Iterable[dict], scheme: str) -> set[str]:
    """Ingest runs whose documents all have band hashes of scheme: from the run's own
    reuse step, or from a reuse run that computed them (parameters.bands_for_runs)."""
    banded = set()
    for m in manifests:
        if manifest_band_scheme(m) != scheme:
            continue
        if m["kind"] == "ingest":
            banded.add(m["run_id"])
        else:
            banded.update(m["parameters"].get("bands_for_runs") or ())
    return banded


def _band_parts(manifests: Iterable[dict], scheme: str) -> list[tuple[str, str]]:
    """(run, key) of every reuse_bands part of scheme the manifests list, run being the
    run whose documents the part describes: the ingest run itself, or for a reuse run
    the run its parameters.bands_for_runs files the part under."""
    found = []
    for m in manifests:
        if manifest_band_scheme(m) != scheme:
            continue
        owner = {}
        if m["kind"] == "reuse" and isinstance(m["parameters"].get("bands_for_runs"), dict):
            owner = {key: run for run, keys in m["parameters"]["bands_for_runs"].items() for key in keys}
        found.extend((owner.get(p["key"], m["run_id"]), p["key"]) for p in m["parts"] if p["dataset"] == "reuse_bands")
    return found


class _Texts:
    """Where the texts of documents are: documents parts by the run whose bands
    named them (a reuse run's bands name the documents of its bands_for_runs)."""

    def __init__(self, manifests: Iterable[dict], own: tuple[str, list[str]] | None = None):
        self.manifests = {m["run_id"]: m for m in manifests}
        self.own = own

    def parts(self, sources: Iterable[str]) -> list[str]:
        runs: set[str] = set()
        keys: list[str] = []
        for source in sources:
            if self.own is not None and source == self.own[0]:
                keys.extend(self.own[1])
                continue
            manifest = self.manifests.get(source)
            if manifest is None:
                continue
            if manifest["kind"] == "reuse":
                runs.update(manifest["parameters"].get("bands_for_runs") or ())
            else:
                runs.add(source)
        for run in sorted(runs):
            if run in self.manifests:
                keys.extend(p["key"] for p in self.manifests[run]["parts"] if p["dataset"] == "documents")
        return list(dict.fromkeys(keys))


def _batches(store: Store, dataset: str, keys: list[str], columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of the given part files (committed or not), one file and one row group at a time.

    Parquet's own reader, not a dataset scanner: a scanner reads ahead of a slow
    consumer (three times the memory, measured), this reads what is asked for."""
    filesystem = store.arrow_filesystem()
    schema = arrow_schema(dataset)
    for key in keys:
        with filesystem.open_input_file(store.arrow_path(key)) as stream:
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=batch_size, columns=columns, use_threads=False):
                yield batch.cast(pa.schema([schema.field(c) for c in columns]))


# -- writing parts -----------------------------------------------------------------


class _BandWriter:
    """reuse_bands parts written from arrays, a row group at a time: never a Python object per row."""

    def __init__(self, store: Store, run_id: str, attempt: str, first_index: int = 0):
        self.store, self.run_id, self.attempt = store, run_id, attempt
        self.index = first_index
        self.parts: list[PartInfo] = []
        self._pending: list[tuple[str, str, object]] = []
        self._pending_rows = 0
        self._buffer: io.BytesIO | None = None
        self._writer: pq.ParquetWriter | None = None
        self._part_rows = 0

    def add(self, doc_id: str, text_sha256: str, bands) -> None:
        """One document's band hashes (a DocumentBands)."""
        if len(bands) == 0:
            return
        self._pending.append((doc_id, text_sha256, bands))
        self._pending_rows += len(bands)
        if self._pending_rows >= BAND_ROWS_PER_GROUP:
            self._write_pending()

    def add_table(self, table: pa.Table) -> None:
        """Rows already in the reuse_bands schema (read back from a part)."""
        self._write_pending()
        for start in range(0, table.num_rows, BAND_ROWS_PER_GROUP):
            self._write(table.slice(start, BAND_ROWS_PER_GROUP).cast(REUSE_BANDS))

    def _write_pending(self) -> None:
        if not self._pending:
            return
        counts = [len(bands) for _, _, bands in self._pending]
        codes = pa.array(np.repeat(np.arange(len(counts), dtype=np.int32), counts))
        rows = int(sum(counts))
        table = pa.table({
            "run_id": pa.array([self.run_id], pa.string()).take(pa.array(np.zeros(rows, dtype=np.int32))),
            "doc_id": pa.array([doc_id for doc_id, _, _ in self._pending], pa.string()).take(codes),
            "text_sha256": pa.array([sha for _, sha, _ in self._pending], pa.string()).take(codes),
            "band": pa.array(np.concatenate([bands.bands for _, _, bands in self._pending]), pa.int16()),
            "hash": pa.array(np.concatenate([bands.hashes for _, _, bands in self._pending]), pa.int64()),
            "indexed": pa.array(np.concatenate([bands.indexed for _, _, bands in self._pending]), pa.bool_()),
        }, schema=REUSE_BANDS)
        self._pending, self._pending_rows = [], 0
        self._write(table)

    def _write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._buffer = io.BytesIO()
            self._writer = pq.ParquetWriter(self._buffer, REUSE_BANDS, compression="zstd", write_statistics=True)
        self._writer.write_table(table)
        self._part_rows += table.num_rows
        if self._part_rows >= BAND_ROWS_PER_PART:
            self._close_part()

    def _close_part(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        key = part_key("reuse_bands", self.run_id, self.index, self.attempt)
        self.parts.append(put_part(self.store, "reuse_bands", key, self._buffer.getvalue(), self._part_rows))
        self.index += 1
        self._writer, self._buffer, self._part_rows = None, None, 0

    def close(self) -> list[PartInfo]:
        """Write what is pending as a last part (a later add starts a new part); all parts written."""
        self._write_pending()
        self._close_part()
        return self.parts


class _RowWriter:
    """reuse rows and their events (one per pair of documents), flushed as parts of ROWS_PER_PART rows."""

    def __init__(self, store: Store, run: RunContext, attempt: str, first_index: int = 0):
        self.store, self.run, self.attempt = store, run, attempt
        self.index = {"reuse": first_index, "events": first_index}
        self.rows: dict[str, list[dict]] = {"reuse": [], "events": []}
        self.parts: list[PartInfo] = []
        self.pairs = 0
        self.passages = 0

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        first = rows[0]
        self.rows["reuse"].extend(rows)
        self.rows["events"].append(pair_event(self.run, first))
        self.pairs += 1
        self.passages += len(rows)
        self._flush()

    def _flush(self, final: bool = False) -> None:
        for dataset, rows in self.rows.items():
            if rows and (final or len(rows) >= ROWS_PER_PART):
                key = part_key(dataset, self.run.run_id, self.index[dataset], self.attempt)
                self.parts.append(write_part(self.store, dataset, key, rows))
                self.index[dataset] += 1
                self.rows[dataset] = []

    def close(self) -> list[PartInfo]:
        self._flush(final=True)
        return self.parts


def pair_event(run: RunContext, row: dict) -> dict:
    """The provenance event of one pair of documents that share passages (object: doc_id_a)."""
    return run.event(ev.METADATA_EXTRACTION, ev.SUCCESS,
                     f"shares text with document {row['doc_id_b']} (pair similarity {row['similarity']:.3f})",
                     sha256=row["doc_id_a"], tool=TOOL)


# -- the search: band rows on local disk, grouped a partition at a time ---------------

_BAND_ROW = np.dtype([("hash", "<i8"), ("key", "<i4"), ("indexed", "?")])  # 13 bytes, packed


class _Partitions:
    """Band rows (hash, text key, indexed) spread over 256 files by a byte of the
    hash, so that each file can be grouped on its own: every row of a hash is in
    the same file. A file of more than max_rows rows is split again by the next
    byte when it is read, so that no more than about max_rows rows are ever in
    memory, however many there are."""

    FANOUT = 256

    def __init__(self, directory: str, max_rows: int = MAX_PARTITION_ROWS, level: int = 0):
        os.makedirs(directory, exist_ok=True)
        self.directory, self.max_rows, self.level = directory, max_rows, level
        self._files: dict[int, io.BufferedWriter] = {}
        self.rows = 0

    def add(self, hashes: np.ndarray, keys: np.ndarray, indexed: np.ndarray) -> None:
        if len(hashes) == 0:
            return
        rows = np.empty(len(hashes), dtype=_BAND_ROW)
        rows["hash"], rows["key"], rows["indexed"] = hashes, keys, indexed
        shift = np.uint64(56 - 8 * self.level)
        which = ((np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64) >> shift) & np.uint64(0xFF)).astype(np.intp)
        order = np.argsort(which, kind="stable")
        rows, which = rows[order], which[order]
        bounds = np.searchsorted(which, np.arange(self.FANOUT + 1))
        for number in np.flatnonzero(np.diff(bounds)).tolist():
            stream = self._files.get(number)
            if stream is None:
                stream = self._files[number] = open(self._path(number), "ab")
            stream.write(rows[bounds[number]:bounds[number + 1]].tobytes())
        self.rows += len(hashes)

    def _path(self, number: int) -> str:
        return os.path.join(self.directory, f"{number:03d}.bin")

    def groups(self) -> Iterator[np.ndarray]:
        """Each partition's rows, once; the files are removed as they are read."""
        for stream in self._files.values():
            stream.close()
        numbers, self._files = sorted(self._files), {}
        for number in numbers:
            path = self._path(number)
            rows = os.path.getsize(path) // _BAND_ROW.itemsize
            if rows > self.max_rows and self.level < 7:
                deeper = _Partitions(path + ".split", self.max_rows, self.level + 1)
                with open(path, "rb") as stream:
                    while True:
                        chunk = np.fromfile(stream, dtype=_BAND_ROW, count=self.max_rows)
                        if len(chunk) == 0:
                            break
                        deeper.add(chunk["hash"], chunk["key"], chunk["indexed"])
                os.remove(path)
                yield from deeper.groups()
            else:
                chunk = np.fromfile(path, dtype=_BAND_ROW)
                os.remove(path)
                yield chunk


class _Search:
    """One search for the pairs of texts that share LSH buckets, in a temporary directory:
    band rows in _Partitions, documents, texts, candidate pairs and the texts of those pairs
    in SQLite. Texts are keyed by text_sha256, so documents with identical texts are one
    text: never a pair (duplicates, not reuse), and each gets the rows of the other.

    restrict: None, every pair; "ours", pairs with a text of this run (role OURS);
    "fresh", pairs of a text of this run and a text of a run committed meanwhile (FRESH).
    """

    def __init__(self, directory: str, restrict: str | None = None, max_rows: int = MAX_PARTITION_ROWS,
                 max_bucket: int | None = None):
        os.makedirs(directory, exist_ok=True)
        self.restrict = restrict
        self.max_bucket = max_bucket
        self.db = sqlite3.connect(os.path.join(directory, "search.sqlite"), isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", "cache_size = -16384"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript("""
            CREATE TABLE texts (key INTEGER PRIMARY KEY, sha TEXT NOT NULL UNIQUE, role INTEGER NOT NULL,
                                needed INTEGER NOT NULL DEFAULT 0, body TEXT);
            CREATE TABLE docs (doc_id TEXT PRIMARY KEY, key INTEGER NOT NULL, role INTEGER NOT NULL, source TEXT NOT NULL)
                WITHOUT ROWID;
            CREATE INDEX docs_by_key ON docs (key);
            CREATE TABLE pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
        """)
        self.partitions = _Partitions(os.path.join(directory, "bands"), max_rows)
        self.band_rows = 0

    def close(self) -> None:
        self.db.close()

    def _register(self, doc_id: str, sha: str, role: int, source: str) -> int:
        self.db.execute("INSERT INTO texts (sha, role) VALUES (?, ?) ON CONFLICT (sha) DO UPDATE SET role = role | excluded.role",
                        (sha, role))
        (key,) = self.db.execute("SELECT key FROM texts WHERE sha = ?", (sha,)).fetchone()
        self.db.execute("INSERT INTO docs (doc_id, key, role, source) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (doc_id) DO UPDATE SET role = role | excluded.role", (doc_id, key, role, source))
        return key

    def add_document(self, doc_id: str, sha: str, hashes: np.ndarray, indexed: np.ndarray, *, role: int = 0,
                     source: str) -> None:
        key = self._register(doc_id, sha, role, source)
        self.partitions.add(hashes, np.full(len(hashes), key, dtype=np.int32), indexed)
        self.band_rows += len(hashes)

    def add_rows(self, batch: pa.RecordBatch | pa.Table, *, role: int = 0, source: str) -> None:
        """Band rows as read from reuse_bands (doc_id, text_sha256, hash, indexed)."""
        if batch.num_rows == 0:
            return
        encoded = pc.dictionary_encode(batch.column("doc_id"))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        shas = batch.column("text_sha256").take(pa.array(first)).to_pylist()
        keys = np.array([self._register(doc_id, sha, role, source)
                         for doc_id, sha in zip(encoded.dictionary.to_pylist(), shas)], dtype=np.int32)
        self.partitions.add(batch.column("hash").to_numpy(zero_copy_only=False), keys[codes],
                            batch.column("indexed").to_numpy(zero_copy_only=False))
        self.band_rows += batch.num_rows

    def find_pairs(self) -> int:
        """Group the band rows; the candidate pairs of texts go to SQLite. Their number."""
        roles = None
        if self.restrict is not None:
            (top,) = self.db.execute("SELECT coalesce(max(key), 0) FROM texts").fetchone()
            roles = np.zeros(top + 1, dtype=np.uint8)
            for key, role in self.db.execute("SELECT key, role FROM texts WHERE role != 0"):
                roles[key] = role
        for rows in self.partitions.groups():
            pairs = candidate_pairs(rows["hash"], rows["key"], rows["indexed"], self.max_bucket)
            if roles is not None and len(pairs):
                a, b = roles[pairs[:, 0]], roles[pairs[:, 1]]
                if self.restrict == "ours":
                    keep = ((a | b) & OURS) != 0
                else:
                    keep = ((a & OURS) & ((b & FRESH) >> 1)) | (((a & FRESH) >> 1) & (b & OURS))
                    keep = keep != 0
                pairs = pairs[keep]
            if len(pairs):
                self.db.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?)", pairs.tolist())
        (count,) = self.db.execute("SELECT count(*) FROM pairs").fetchone()
        return count

    def needed_sources(self) -> list[str]:
        """The runs whose documents hold the texts of candidate pairs (as add_* named them)."""
        self.db.execute("UPDATE texts SET needed = 1 WHERE key IN (SELECT a FROM pairs UNION SELECT b FROM pairs)")
        return [s for (s,) in self.db.execute(
            "SELECT DISTINCT d.source FROM docs d JOIN texts t ON t.key = d.key WHERE t.needed = 1 ORDER BY 1")]

    def load_texts(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Keep the texts of candidate pairs from documents record batches (text_sha256, text),
        each checked against its sha256: offsets must point into the very text published."""
        for batch in batches:
            shas = batch.column("text_sha256").to_pylist()
            wanted = {sha for (sha,) in self.db.execute(
                f"SELECT sha FROM texts WHERE needed = 1 AND body IS NULL AND sha IN ({','.join('?' * len(shas))})", shas)}
            if not wanted:
                continue
            rows = [i for i, sha in enumerate(shas) if sha in wanted]
            texts = batch.column("text").take(pa.array(rows, pa.int64())).to_pylist()
            for i, text in zip(rows, texts):
                sha = shas[i]
                if sha not in wanted:
                    continue
                if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
                    raise ReuseError(batch.column("doc_id")[i].as_py() if "doc_id" in batch.schema.names else sha,
                                     f"its text does not hash to its text_sha256 {sha}")
                self.db.execute("UPDATE texts SET body = ? WHERE sha = ?", (text, sha))
                wanted.discard(sha)
        missing = self.db.execute(
            "SELECT d.doc_id FROM texts t JOIN docs d ON d.key = t.key WHERE t.needed = 1 AND t.body IS NULL LIMIT 1").fetchone()
        if missing:
            raise ReuseError(missing[0], "its text is in no documents part of the runs whose band hashes name it")

    def _docs(self, key: int) -> list[tuple[str, int]]:
        return self.db.execute("SELECT doc_id, role FROM docs WHERE key = ? ORDER BY doc_id", (key,)).fetchall()

    def _body(self, key: int) -> str:
        return self.db.execute("SELECT body FROM texts WHERE key = ?", (key,)).fetchone()[0]

    def doc_pairs(self, docs_a: list[tuple[str, int]], docs_b: list[tuple[str, int]]) -> Iterator[tuple[str, str]]:
        for doc_a, role_a in docs_a:
            for doc_b, role_b in docs_b:
                if doc_a == doc_b:
                    continue
                if self.restrict == "ours" and not (role_a | role_b) & OURS:
                    continue
                if self.restrict == "fresh" and not ((role_a & OURS and role_b & FRESH) or (role_a & FRESH and role_b & OURS)):
                    continue
                yield doc_a, doc_b

    def text_pairs(self) -> Iterator[tuple[str, list, str, list]]:
        """(text_a, docs_a, text_b, docs_b) of each candidate pair, by key."""
        cursor = self.db.execute("SELECT a, b FROM pairs ORDER BY a, b")
        current, text_a, docs_a = None, None, None
        while True:
            chunk = cursor.fetchmany(1024)
            if not chunk:
                return
            for a, b in chunk:
                if a != current:
                    current, text_a, docs_a = a, self._body(a), self._docs(a)
                yield text_a, docs_a, self._body(b), self._docs(b)


def _align_pairs(search: _Search, run_id: str, params: ReuseParams, stats: ReuseStats,
                 emit: Callable[[list[dict]], None], seen: set[tuple[str, str]] | None = None) -> None:
    """Align each candidate pair of texts once; its rows go to every pair of documents carrying the two texts."""
    for text_a, docs_a, text_b, docs_b in search.text_pairs():
        stats.candidate_pairs += 1
        alignment = aligned_pair(text_a, text_b, params, stats)
        if alignment is None:
            continue
        similarity = alignment.similarity
        for doc_a, doc_b in search.doc_pairs(docs_a, docs_b):
            pair = (doc_a, doc_b) if doc_a < doc_b else (doc_b, doc_a)
            if seen is not None:
                if pair in seen:
                    continue
                seen.add(pair)
            rows = reuse_rows(run_id, doc_a, text_a, doc_b, text_b, alignment.passages, similarity)
            stats.rows += len(rows)
            emit(rows)


def _sketched(store: Store, document_parts: list[str], params: ReuseParams, stats: ReuseStats,
              wanted: Callable[[str], bool] = lambda doc_id: True) -> Iterator[tuple[str, str, DocumentBands]]:
    """(doc_id, text_sha256, band hashes) of the documents in these parts that wanted() takes and that
    are long enough to sketch; counted in stats."""
    for batch in _batches(store, "documents", document_parts, ["doc_id", "text_sha256", "text"], DOCUMENT_BATCH):
        for doc_id, sha, text in zip(*(batch.column(c).to_pylist() for c in ("doc_id", "text_sha256", "text"))):
            if not wanted(doc_id):
                continue
            with StageTimer(stats.timings, "signatures"):
                bands = document_bands(text, params)
            if bands is None:
                stats.too_short += 1
                continue
            stats.windows_indexed += bands.windows_indexed
            stats.windows_queried += bands.windows_queried
            yield doc_id, sha, bands


def _scan_bands(store: Store, parts: list[tuple[str, str]], wanted: np.ndarray | None,
                on_rows: Callable[[pa.RecordBatch, str], None]) -> int:
    """Stream reuse_bands parts a record batch at a time; with wanted (sorted unique hashes),
    only rows whose hash is in it. Returns the rows passed on."""
    passed = 0
    columns = ["doc_id", "text_sha256", "hash", "indexed"]
    for run_id, key in parts:
        for batch in _batches(store, "reuse_bands", [key], columns, BAND_BATCH):
            if wanted is not None:
                hashes = batch.column("hash").to_numpy(zero_copy_only=False)
                at = np.searchsorted(wanted, hashes)
                mask = wanted[np.minimum(at, len(wanted) - 1)] == hashes
                if not mask.any():
                    continue
                batch = batch.filter(pa.array(mask))
            passed += batch.num_rows
            on_rows(batch, run_id)
    return passed


def _load_texts(search: _Search, store: Store, texts: _Texts) -> None:
    sources = search.needed_sources()
    if sources:
        search.load_texts(_batches(store, "documents", texts.parts(sources), ["doc_id", "text_sha256", "text"],
                                   DOCUMENT_BATCH))


# -- the reuse step of an ingest run -----------------------------------------------------------


@dataclass
class RunReuse:
    """What an ingest run's reuse step hands its commit: keys and counts, never rows."""

    run_id: str
    params: ReuseParams
    scheme: str
    document_parts: list[str]  # this run's (uncommitted) documents parts the texts were read from
    documents: list[str]  # doc_ids of this run's new documents, as the step saw them
    seen_runs: list[str]  # committed runs whose band hashes the step has compared with this run's
    parts: list[PartInfo] = field(default_factory=list)  # reuse, reuse_bands and events parts, uncommitted
    stats: dict = field(default_factory=dict)
    next_index: int = 0


@dataclass
class SettledReuse:
    """The step's parts and figures as the manifest lists them, once settled under the commit lock."""

    parts: list[PartInfo]
    figures: dict
    notes: list[str]
    caught_up: list[str] = field(default_factory=list)  # runs committed after the step looked, compared under the lock


def find_run_reuse(store: Store, run: RunContext, document_parts: list[str], params: ReuseParams = ReuseParams(), *,
                   first_index: int = 0, workdir: str | None = None) -> RunReuse:
    """The reuse step of an ingest run, before its commit: the heavy part, outside the commit lock.

    Reads this run's new documents from its uncommitted documents parts,
    computes their band hashes (document_bands) and writes them as this run's
    reuse_bands parts; streams the reuse_bands parts of every committed run
    with the same band scheme, part by part, keeping the rows whose hash this
    run's documents have; pairs (among this run's documents, and between them
    and committed ones) whose rows share a hash, at least one of the two rows
    from an indexed window; aligns each pair exactly and writes the reuse rows
    and one event per pair of documents as parts of this run. Runs committed
    while it worked are caught up with before it returns (settle_run_reuse
    does the same, under the lock, for any committed after that).

    Only pairs with at least one document of this run are written: pairs of
    committed documents were found by the runs that committed them (or by a
    reuse run). Committed documents without band hashes of this scheme (runs
    before band hashes existed, or run with reuse off) are not seen until
    `archive reuse` computes theirs.

    Memory: proportional to this run, not to the archive: the sorted array of
    this run's distinct band hashes (8 bytes each, about 1.7 per word), one
    record batch of a part at a time, and the grouping of this run's rows and
    the committed rows that matched them (see publish_reuse for the bound).
    Measured (bench/reuse_scale.py, a run of 1,000 documents of ~300 words):
    87, 87 and 102 MB above the process's size after its imports against
    archives of 2,000, 20,000 and 100,000 documents. Reading is what grows
    with the archive: every committed reuse_bands part of the scheme, once
    (about 8 bytes of Parquet per band row; 12 s at 100,000 documents).
    """
    scheme = band_scheme(params)
    stats = ReuseStats()
    attempt = new_attempt()
    bands_out = _BandWriter(store, run.run_id, attempt)
    rows_out = _RowWriter(store, run, attempt, first_index)
    manifests = [m for m in committed_manifests(store) if m["run_id"] != run.run_id]
    texts = _Texts(manifests, own=(run.run_id, document_parts))
    step = RunReuse(run.run_id, params, scheme.name, list(document_parts), [], [m["run_id"] for m in manifests])
    emitted: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
        search = _Search(os.path.join(tmp, "run"), restrict="ours", max_bucket=params.max_bucket_texts)
        own: list[np.ndarray] = []
        seen_docs: set[str] = set()
        def first_time(doc_id: str) -> bool:
            if doc_id in seen_docs:  # two batches of this run published it: the commit keeps one
                return False
            seen_docs.add(doc_id)
            step.documents.append(doc_id)
            stats.documents += 1
            return True

        for doc_id, sha, bands in _sketched(store, document_parts, params, stats, first_time):
            bands_out.add(doc_id, sha, bands)
            search.add_document(doc_id, sha, bands.hashes, bands.indexed, role=OURS, source=run.run_id)
            own.append(bands.hashes)
        step.parts.extend(bands_out.close())
        wanted = np.unique(np.concatenate(own)) if own else np.empty(0, dtype=np.int64)
        if len(wanted):
            with StageTimer(stats.timings, "lsh"):
                matched = _scan_bands(store, _band_parts(manifests, scheme.name), wanted,
                                      lambda batch, run_id: search.add_rows(batch, source=run_id))
                stats_extra = {"committed_band_rows_matched": matched}
                search.find_pairs()
            with StageTimer(stats.timings, "fetch"):
                _load_texts(search, store, texts)
            _align_pairs(search, run.run_id, params, stats, rows_out.add, emitted)
        else:
            stats_extra = {"committed_band_rows_matched": 0}
        search.close()
        step.parts.extend(rows_out.close())
        step.next_index = max(rows_out.index.values())
        step.stats = _step_stats(stats, rows_out, stats_extra)
        # Runs committed while this one searched: caught up with here, outside the
        # lock, so that the commit rarely has any left to do.
        for _ in range(3):
            if not _catch_up(store, run, step, emitted, tmp):
                break
    return step


def _step_stats(stats: ReuseStats, rows_out: _RowWriter, extra: dict) -> dict:
    return {
        "documents": stats.documents, "too_short": stats.too_short, "windows_indexed": stats.windows_indexed,
        "windows_queried": stats.windows_queried, "candidate_pairs": stats.candidate_pairs,
        "pairs": rows_out.pairs, "passages": rows_out.passages, **extra,
        "seconds": {k: round(v, 3) for k, v in stats.timings.items()},
    }


def _catch_up(store: Store, run: RunContext, step: RunReuse, emitted: set[tuple[str, str]], tmp: str) -> bool:
    """Compare this run's band hashes with those of runs committed since the step
    last looked; write the pairs found as further parts of the step. False when
    no run has committed since."""
    seen = set(step.seen_runs)
    manifests = [m for m in committed_manifests(store) if m["run_id"] != run.run_id]
    fresh = [m for m in manifests if m["run_id"] not in seen]
    if not fresh:
        return False
    fresh_parts = _band_parts(fresh, step.scheme)
    own_parts = [(run.run_id, p.key) for p in step.parts if p.dataset == "reuse_bands"]
    if fresh_parts and own_parts:
        _pairs_with_fresh(store, run, step, manifests, fresh_parts, own_parts, emitted, tmp)
    step.seen_runs.extend(m["run_id"] for m in fresh)  # only once their pairs are written
    return True


def _pairs_with_fresh(store: Store, run: RunContext, step: RunReuse, manifests: list[dict],
                      fresh_parts: list[tuple[str, str]], own_parts: list[tuple[str, str]],
                      emitted: set[tuple[str, str]], tmp: str) -> None:
    stats = ReuseStats()
    own = [batch.column("hash").to_numpy(zero_copy_only=False)
           for _, key in own_parts for batch in _batches(store, "reuse_bands", [key], ["hash"], BAND_BATCH)]
    wanted = np.unique(np.concatenate(own))
    directory = tempfile.mkdtemp(prefix="catch-up-", dir=tmp)
    search = _Search(directory, restrict="fresh", max_bucket=step.params.max_bucket_texts)
    matched: list[np.ndarray] = []

    def fresh_rows(batch, run_id):
        matched.append(batch.column("hash").to_numpy(zero_copy_only=False))
        search.add_rows(batch, role=FRESH, source=run_id)

    _scan_bands(store, fresh_parts, wanted, fresh_rows)
    if matched:
        # Only this run's rows in the buckets the fresh rows fell in can make new pairs.
        _scan_bands(store, own_parts, np.unique(np.concatenate(matched)),
                    lambda batch, run_id: search.add_rows(batch, role=OURS, source=run_id))
        search.find_pairs()
        texts = _Texts(manifests, own=(run.run_id, step.document_parts))
        _load_texts(search, store, texts)
        rows_out = _RowWriter(store, run, new_attempt(), step.next_index)
        _align_pairs(search, run.run_id, step.params, stats, rows_out.add, emitted)
        step.parts.extend(rows_out.close())
        step.next_index = max(rows_out.index.values())
        step.stats["candidate_pairs"] = step.stats.get("candidate_pairs", 0) + stats.candidate_pairs
    search.close()


def settle_run_reuse(store: Store, run: RunContext, step: RunReuse, published: Iterable[str],
                     workdir: str | None = None) -> SettledReuse:
    """Under the commit lock, after reconcile: the step's parts as the manifest will list them.

    First the pairs with runs committed since the step last looked (usually
    none: then nothing is read but the manifests). Then the documents
    reconcile unpublished (another run committed the same bytes meanwhile):
    their band hashes go, and so does every row and event of a pair in which
    neither document is published by this run (the run that committed them
    has those). A pair of such a document with one this run does publish is
    kept, the other run having never seen this run's document, provided the
    committed text is the one aligned (same text_sha256); otherwise it is
    dropped and a note says so.
    """
    published = set(published)
    notes: list[str] = []
    # A copy: a commit retried after a failure here starts again from what the step left.
    step = replace(step, seen_runs=list(step.seen_runs), parts=list(step.parts), stats=dict(step.stats))
    seen_before = len(step.seen_runs)
    if any(p.dataset == "reuse_bands" for p in step.parts):
        fresh = [m for m in committed_manifests(store) if m["run_id"] not in set(step.seen_runs) and m["run_id"] != run.run_id]
        if fresh:
            emitted = _pairs_in(store, [p for p in step.parts if p.dataset == "reuse"])
            with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
                _catch_up(store, run, step, emitted, tmp)
    parts = list(step.parts)
    unpublished = set(step.documents) - published
    if unpublished:
        parts, note = _unpublish(store, run, step, parts, unpublished, published)
        notes.extend(note)
    pairs = _pairs_in(store, [p for p in parts if p.dataset == "reuse"])
    figures = {
        "documents": len(set(step.documents) & published),
        "band_rows": sum(p.rows for p in parts if p.dataset == "reuse_bands"),
        "runs_compared": len(step.seen_runs),
        "candidate_pairs": step.stats.get("candidate_pairs", 0),
        "pairs": len(pairs),
        "passages": sum(p.rows for p in parts if p.dataset == "reuse"),
    }
    return SettledReuse(parts, figures, notes, step.seen_runs[seen_before:])


def _pairs_in(store: Store, reuse_parts: list[PartInfo]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for batch in _batches(store, "reuse", [p.key for p in reuse_parts], ["doc_id_a", "doc_id_b"], BAND_BATCH):
        pairs.update(zip(batch.column("doc_id_a").to_pylist(), batch.column("doc_id_b").to_pylist()))
    return pairs


def _read_rows(store: Store, part: PartInfo) -> list[dict]:
    return pq.read_table(io.BytesIO(store.get_bytes(part.key)), schema=arrow_schema(part.dataset)).to_pylist()


def _unpublish(store: Store, run: RunContext, step: RunReuse, parts: list[PartInfo], unpublished: set[str],
               published: set[str]) -> tuple[list[PartInfo], list[str]]:
    notes = []
    attempt = new_attempt()
    reuse_parts = [p for p in parts if p.dataset == "reuse"]
    rows = [r for p in reuse_parts for r in _read_rows(store, p)]
    kept = [r for r in rows if r["doc_id_a"] in published or r["doc_id_b"] in published]
    partners = {d for r in kept for d in (r["doc_id_a"], r["doc_id_b"]) if d in unpublished}
    if partners:
        ours = _text_shas(_batches(store, "documents", step.document_parts, ["doc_id", "text_sha256"], BAND_BATCH), partners)
        theirs = _text_shas(open_dataset(store, "documents").to_batches(
            columns=["doc_id", "text_sha256"], filter=pc.field("doc_id").isin(sorted(partners))), partners)
        differ = {d for d in partners if ours.get(d) != theirs.get(d)}
        if differ:
            before = len(kept)
            kept = [r for r in kept if r["doc_id_a"] not in differ and r["doc_id_b"] not in differ]
            notes.append(f"reuse: {before - len(kept)} passage(s) dropped: {len(differ)} document(s) another run committed "
                         "meanwhile have a text other than the one this run aligned")
    new_parts = [p for p in parts if p.dataset not in ("reuse", "events")]
    if len(kept) != len(rows):
        writer = _RowWriter(store, run, attempt, step.next_index)
        by_pair: dict[tuple[str, str], list[dict]] = {}
        for row in kept:
            by_pair.setdefault((row["doc_id_a"], row["doc_id_b"]), []).append(row)
        for pair_rows in by_pair.values():
            writer.add(pair_rows)
        new_parts.extend(writer.close())
        notes.append(f"reuse: {len(rows) - len(kept)} passage(s) of {len(unpublished)} document(s) another run committed "
                     "meanwhile left to that run")
    else:
        new_parts.extend(p for p in parts if p.dataset in ("reuse", "events"))
    bands = [p for p in new_parts if p.dataset == "reuse_bands"]
    kept_parts = []
    writer = _BandWriter(store, run.run_id, attempt, first_index=len(bands))
    gone = pa.array(sorted(unpublished), pa.string())
    for part in bands:
        table = pq.read_table(io.BytesIO(store.get_bytes(part.key)), schema=REUSE_BANDS)
        mask = pc.invert(pc.is_in(table.column("doc_id"), value_set=gone))
        if pc.all(mask).as_py():
            kept_parts.append(part)
        else:
            writer.add_table(table.filter(mask))
    return [p for p in new_parts if p.dataset != "reuse_bands"] + kept_parts + writer.close(), notes


def _text_shas(batches: Iterable[pa.RecordBatch], doc_ids: set[str]) -> dict[str, str]:
    found = {}
    for batch in batches:
        for doc_id, sha in zip(batch.column("doc_id").to_pylist(), batch.column("text_sha256").to_pylist()):
            if doc_id in doc_ids:
                found[doc_id] = sha
    return found


# -- archive reuse: a complete recompute ----------------------------------------------------------


def publish_reuse(store: Store, run: RunContext, params: ReuseParams = ReuseParams(), *,
                  workdir: str | None = None, max_partition_rows: int = MAX_PARTITION_ROWS) -> dict:
    """Find the passages all committed documents share and commit them as the reuse dataset of one run.

    Band hashes come from the committed reuse_bands parts of this band scheme;
    the documents of ingest runs that have none (committed before band hashes
    existed, or with reuse off) are read and sketched, and their band hashes
    published as this run's reuse_bands parts, each run's in parts of their own
    (parameters.bands_for_runs: run id -> part keys), so that later ingest runs
    compare with them too and know whose texts they are. The band
    rows are grouped by hash on local disk (candidate_pairs on each
    partition), the candidate pairs aligned exactly.

    Each reuse run is a complete answer over the documents of the ingest runs
    committed when it started (parameters.documents_of_runs); the current
    answer is the latest reuse run plus the ingest runs it did not cover,
    which is what open_dataset(dest, "reuse") reads.

    Memory: flat in the number of documents. Band rows go to 256 files in a
    temporary directory (workdir, else $TMPDIR) and are grouped one file at a
    time, a file of more than max_partition_rows rows (13 bytes each) being
    split again first; doc_ids, text sha256s, candidate pairs and the texts of
    candidate pairs are in a temporary SQLite database (16 MB of page cache);
    Parquet is read one record batch (and one row group) at a time. At once it
    holds one partition (at most max_partition_rows rows: 13 MB, some 55 MB
    while grouping, with the default 1,000,000; 256 files of that take 250
    million band rows, some 150 million words, before any is split again), one
    documents row group, and the two texts of one pair. Measured
    (bench/reuse_scale.py, documents of ~300 words): 72, 80 and 96 MB above
    the process's size after its imports for 2,000, 20,000 and 100,000
    documents, where datasketch's in-memory MinHashLSH took 126 and 780 MB for
    2,000 and 20,000. Temporary disk: 13 bytes per band row (about 22 bytes per
    word of the archive) plus the texts of candidate pairs.
    """
    scheme = band_scheme(params)
    manifests = list(committed_manifests(store))
    ingests = [m for m in manifests if m["kind"] == "ingest"]
    banded = banded_runs(manifests, scheme.name)
    unbanded = [m for m in ingests if m["run_id"] not in banded]
    stats = ReuseStats()
    attempt = new_attempt()
    bands_out = _BandWriter(store, run.run_id, attempt)
    rows_out = _RowWriter(store, run, attempt)
    sketched = 0
    bands_for_runs: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="archive-reuse-", dir=workdir) as tmp:
        search = _Search(tmp, max_rows=max_partition_rows, max_bucket=params.max_bucket_texts)
        with StageTimer(stats.timings, "lsh"):
            _scan_bands(store, _band_parts(manifests, scheme.name), None,
                        lambda batch, run_id: search.add_rows(batch, source=run_id))
        for manifest in unbanded:
            written = len(bands_out.parts)
            keys = [p["key"] for p in manifest["parts"] if p["dataset"] == "documents"]
            for doc_id, sha, bands in _sketched(store, keys, params, stats):
                bands_out.add(doc_id, sha, bands)
                search.add_document(doc_id, sha, bands.hashes, bands.indexed, source=manifest["run_id"])
                sketched += 1
            # Each run's band hashes in parts of their own, so that readers know whose texts they are.
            bands_for_runs[manifest["run_id"]] = [p.key for p in bands_out.close()[written:]]
        with StageTimer(stats.timings, "lsh"):
            search.find_pairs()
        with StageTimer(stats.timings, "fetch"):
            _load_texts(search, store, _Texts(manifests))
        _align_pairs(search, run.run_id, params, stats, rows_out.add)
        search.close()
    parts = bands_out.close() + rows_out.close()
    documents = sum(p["rows"] for m in ingests for p in m["parts"] if p["dataset"] == "documents")
    counts = {"documents": documents, "pairs": rows_out.pairs, "passages": rows_out.passages,
              "candidate_pairs": stats.candidate_pairs, "documents_sketched": sketched,
              "band_rows": search.band_rows}
    parameters = {**asdict(params), "bands": scheme.name, "documents_of_runs": [m["run_id"] for m in ingests],
                  "bands_for_runs": bands_for_runs}
    manifest = build_manifest(
        run_id=run.run_id, kind="reuse", collection=None, source=store.url, started_at=run.started_at,
        flow_run_id=run.flow_run_id, started_by=run.started_by, parameters=parameters, counts=counts, parts=parts)
    return {"run_id": run.run_id, "manifest": commit_manifest(store, manifest), "counts": counts,
            "seconds": {k: round(v, 3) for k, v in stats.timings.items()}}


# -- reading -------------------------------------------------------------------------------


def latest_reuse_run(store: Store) -> str | None:
    """The latest run of kind reuse (by run id: the one that started last), if any."""
    runs = [m["run_id"] for m in committed_manifests(store) if m["kind"] == "reuse"]
    return max(runs) if runs else None


def shared_with(store: Store, doc_id: str) -> list[dict]:
    """The documents doc_id shares passages with, per the current reuse answer
    (open_dataset(store, "reuse"): the latest reuse run and the ingest runs after it);
    run_id names the run that found each pair."""
    table = open_dataset(store, "reuse").to_table(
        filter=(pc.field("doc_id_a") == doc_id) | (pc.field("doc_id_b") == doc_id))
    found: dict[str, dict] = {}
    for row in table.to_pylist():
        other = row["doc_id_b"] if row["doc_id_a"] == doc_id else row["doc_id_a"]
        entry = found.setdefault(other, {"doc_id": other, "similarity": row["similarity"], "passages": 0, "words": 0,
                                         "run_id": row["run_id"]})
        entry["passages"] += 1
        entry["words"] += row["passage_words"]
    return sorted(found.values(), key=lambda e: (-e["similarity"], e["doc_id"]))
