"""The search for candidate pairs over band rows on local disk, grouped a partition at a time, with SQLite."""

from __future__ import annotations

import io
import os
import sqlite3
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..storage import Store
from .align import reuse_rows
from .bands import DOCUMENT_BATCH, _batches, _heads, _text_digests
from .pairs import PairKeys, pair_key
from .parallel import aligned_pairs, grouped
from .params import ReuseError, ReuseParams, ReuseStats
from .sketch import searched_text
from .stars import pick_stars

# Band rows grouped at once: a partition larger than this is split again by further bits of the hash.
MAX_PARTITION_ROWS = 1_000_000
# Candidate pairs held in memory (8 bytes each) before they are made distinct and go to SQLite; pairs inserted
# at once.
MAX_PENDING_PAIRS = 2_000_000
INSERT_PAIRS = 65_536
OURS, FRESH = 1, 2  # roles of a document in an ingest run's search: this run's, or of a run committed meanwhile

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
        unsigned = np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64)
        which = ((unsigned >> shift) & np.uint64(0xFF)).astype(np.intp)
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
            CREATE TABLE docs (doc_id TEXT PRIMARY KEY, key INTEGER NOT NULL, role INTEGER NOT NULL,
                               source TEXT NOT NULL) WITHOUT ROWID;
            CREATE INDEX docs_by_key ON docs (key);
            CREATE TABLE pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
        """)
        self.partitions = _Partitions(os.path.join(directory, "bands"), max_rows)
        self.band_rows = 0

    def close(self) -> None:
        self.db.close()

    def _register(self, doc_id: str, sha: str, role: int, source: str) -> int:
        self.db.execute("INSERT INTO texts (sha, role) VALUES (?, ?) "
                        "ON CONFLICT (sha) DO UPDATE SET role = role | excluded.role", (sha, role))
        (key,) = self.db.execute("SELECT key FROM texts WHERE sha = ?", (sha,)).fetchone()
        self.db.execute("INSERT INTO docs (doc_id, key, role, source) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (doc_id) DO UPDATE SET role = role | excluded.role", (doc_id, key, role, source))
        return key

    def add_document(self, doc_id: str, sha: str, hashes: np.ndarray, indexed: np.ndarray, *, role: int = 0,
                     source: str) -> None:
        key = self._register(doc_id, sha, role, source)
        for start in range(0, len(hashes), self.partitions.max_rows):  # (a long text's rows, in pieces)
            piece = hashes[start:start + self.partitions.max_rows]
            self.partitions.add(piece, np.full(len(piece), key, dtype=np.int32),
                                indexed[start:start + self.partitions.max_rows])
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

    def find_pairs(self, executor: Executor | None = None, workers: int = 2) -> int:
        """Group the band rows; the candidate pairs of texts go to SQLite. Their number. With executor, the
        partitions are grouped in its processes (about workers of them), 2 per worker at a time."""
        roles = None
        if self.restrict is not None:
            (top,) = self.db.execute("SELECT coalesce(max(key), 0) FROM texts").fetchone()
            roles = np.zeros(top + 1, dtype=np.uint8)
            for key, role in self.db.execute("SELECT key, role FROM texts WHERE role != 0"):
                roles[key] = role
        pending: list[np.ndarray] = []  # pairs found, as codes, not yet in SQLite
        held = 0
        for pairs in grouped(self.partitions.groups(), self.max_bucket, executor, workers):
            if roles is not None and len(pairs):
                a, b = roles[pairs >> 32], roles[pairs & 0xFFFFFFFF]
                if self.restrict == "ours":
                    keep = ((a | b) & OURS) != 0
                else:
                    keep = ((a & OURS) & ((b & FRESH) >> 1)) | (((a & FRESH) >> 1) & (b & OURS))
                    keep = keep != 0
                pairs = pairs[keep]
            if len(pairs):
                pending.append(pairs)
                held += len(pairs)
                if held > MAX_PENDING_PAIRS:
                    pending = [np.unique(np.concatenate(pending))]
                    held = len(pending[0])
                    if held > MAX_PENDING_PAIRS // 2:
                        self._insert_pairs(pending)
                        pending, held = [], 0
        self._insert_pairs(pending)
        (count,) = self.db.execute("SELECT count(*) FROM pairs").fetchone()
        return count

    def _insert_pairs(self, pending: list[np.ndarray]) -> None:
        """Pairs (a << 32 | b) into SQLite, each once: two texts that share text share many band hashes, in many
        partitions, and their pair is inserted once, not once a partition."""
        if pending:
            codes = np.unique(np.concatenate(pending))
            for at in range(0, len(codes), INSERT_PAIRS):  # (as Python ints: 100 bytes a pair, a slice at a time)
                chunk = codes[at:at + INSERT_PAIRS]
                self.db.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?)",
                                    zip((chunk >> 32).tolist(), (chunk & 0xFFFFFFFF).tolist()))

    def needed_sources(self) -> list[str]:
        """The runs whose documents hold the texts of candidate pairs (as add_* named them)."""
        self.db.execute("UPDATE texts SET needed = 1 WHERE key IN (SELECT a FROM pairs UNION SELECT b FROM pairs)")
        return [s for (s,) in self.db.execute(
            "SELECT DISTINCT d.source FROM docs d JOIN texts t ON t.key = d.key WHERE t.needed = 1 ORDER BY 1")]

    def load_texts(self, batches: Iterable[pa.RecordBatch], params: ReuseParams = ReuseParams()) -> None:
        """Keep the texts of candidate pairs from documents record batches (text_sha256, text), each
        checked against its sha256: offsets must point into the very text published. What is kept
        of a text is its searched_text (a long text's first params.max_text_chars characters)."""
        for batch in batches:
            self._load_batch(batch, params)
            del batch  # (before the next is read: a long text's memory goes back once its file is read)
        missing = self.db.execute("SELECT d.doc_id FROM texts t JOIN docs d ON d.key = t.key "
                                  "WHERE t.needed = 1 AND t.body IS NULL LIMIT 1").fetchone()
        if missing:
            raise ReuseError(missing[0], "its text is in no documents part of the runs whose band hashes name it")

    def _load_batch(self, batch: pa.RecordBatch, params: ReuseParams) -> None:
        shas = batch.column("text_sha256").to_pylist()
        wanted = {sha for (sha,) in self.db.execute(
            f"SELECT sha FROM texts WHERE needed = 1 AND body IS NULL AND sha IN ({','.join('?' * len(shas))})",
            shas)}
        if not wanted:
            return
        rows = [i for i, sha in enumerate(shas) if sha in wanted]
        column = batch.column("text")
        for i, digest, head in zip(rows, _text_digests(column, rows), _heads(column, params, rows)):
            sha = shas[i]
            if sha not in wanted:
                continue
            if digest != sha:
                raise ReuseError(batch.column("doc_id")[i].as_py() if "doc_id" in batch.schema.names else sha,
                                 f"its text does not hash to its text_sha256 {sha}")
            self.db.execute("UPDATE texts SET body = ? WHERE sha = ?", (searched_text(head, params), sha))
            wanted.discard(sha)

    def _docs(self, key: int) -> list[tuple[str, int]]:
        return self.db.execute("SELECT doc_id, role FROM docs WHERE key = ? ORDER BY doc_id", (key,)).fetchall()

    def _text(self, key: int) -> tuple[str, str]:
        """(text_sha256, the searched text) of a text."""
        return self.db.execute("SELECT sha, body FROM texts WHERE key = ?", (key,)).fetchone()

    def doc_pairs(self, docs_a: list[tuple[str, int]], docs_b: list[tuple[str, int]]) -> Iterator[tuple[str, str]]:
        for doc_a, role_a in docs_a:
            for doc_b, role_b in docs_b:
                if doc_a == doc_b:
                    continue
                if self.restrict == "ours" and not (role_a | role_b) & OURS:
                    continue
                if self.restrict == "fresh" and not ((role_a & OURS and role_b & FRESH)
                                                     or (role_a & FRESH and role_b & OURS)):
                    continue
                yield doc_a, doc_b

    def text_pairs(self) -> Iterator[tuple[int, str, str, list, int, str, str, list, tuple | None]]:
        """(key_a, sha_a, text_a, docs_a, key_b, sha_b, text_b, docs_b, star) of each candidate pair, by stars
        (stars.py): the texts with most candidate partners (then the longest, then by text_sha256) are pivots,
        each with the partners no earlier pivot took. The pairs of one star come first, a task at a time, star
        being (its task, the pivot's key, text_sha256 and text): a task is the pairs of a block of the star's
        members (STAR_BLOCK of them, by key) with each other and with the pivot, or the pairs across two
        blocks. The pairs of texts of two stars follow (star None), by their two pivots. The texts of the last
        tasks are kept (_TextCache)."""
        _pick_stars(self.db)
        cursor = self.db.execute("""
            SELECT p.a, p.b, sa.pivot = sb.pivot AS same, sa.pivot,
                   CASE WHEN sa.block < 0 THEN sb.block WHEN sb.block < 0 THEN sa.block
                        ELSE min(sa.block, sb.block) END AS low,
                   CASE WHEN sa.block < 0 THEN sb.block WHEN sb.block < 0 THEN sa.block
                        ELSE max(sa.block, sb.block) END AS high
            FROM pairs p JOIN stars sa ON sa.key = p.a JOIN stars sb ON sb.key = p.b
            ORDER BY same DESC, min(sa.pivot, sb.pivot), max(sa.pivot, sb.pivot), low, high, p.a, p.b""")
        cache = _TextCache(lambda key: (*self._text(key), self._docs(key)))
        while True:
            chunk = cursor.fetchmany(1024)
            if not chunk:
                return
            for a, b, same, pivot, low, high in chunk:
                star = ((pivot, low, high), pivot, *cache.get(pivot)[:2]) if same else None
                yield (a, *cache.get(a), b, *cache.get(b), star)


def _pick_stars(db: sqlite3.Connection) -> None:
    """The stars table of a search's database: each text of a candidate pair, its pivot and its block
    (stars.pick_stars)."""
    (count,) = db.execute("SELECT count(*) FROM pairs").fetchone()
    pairs = np.fromiter((value for row in db.execute("SELECT a, b FROM pairs") for value in row),
                        dtype=np.int64, count=2 * count).reshape(-1, 2)
    offered = db.execute("""
        SELECT t.key, coalesce(length(t.body), 0) AS chars
        FROM (SELECT k, count(*) AS n FROM (SELECT a AS k FROM pairs UNION ALL SELECT b FROM pairs)
              GROUP BY k) d JOIN texts t ON t.key = d.k
        ORDER BY d.n DESC, chars DESC, t.sha""").fetchall()
    preferred = np.array([key for key, _ in offered], dtype=np.int64)
    chars = np.array([length for _, length in offered], dtype=np.int64)
    keys, pivots, blocks = pick_stars(pairs[:, 0], pairs[:, 1], preferred, chars)
    db.executescript("DROP TABLE IF EXISTS stars; CREATE TABLE stars (key INTEGER PRIMARY KEY, "
                     "pivot INTEGER NOT NULL, block INTEGER NOT NULL);")
    db.executemany("INSERT INTO stars VALUES (?, ?, ?)", zip(keys.tolist(), pivots.tolist(), blocks.tolist()))


# Characters of texts _TextCache keeps.
CACHED_TEXT_CHARS = 4 << 20


class _TextCache:
    """(sha, text, docs) by text key, as fetch gives them, the latest up to CACHED_TEXT_CHARS characters kept."""

    def __init__(self, fetch: Callable[[int], tuple[str, str, list]]):
        self.fetch = fetch
        self._kept: dict[int, tuple[str, str, list]] = {}
        self._chars = 0

    def get(self, key: int) -> tuple[str, str, list]:
        found = self._kept.get(key)
        if found is None:
            found = self.fetch(key)
            while self._kept and self._chars + len(found[1]) > CACHED_TEXT_CHARS:  # the oldest go first
                self._chars -= len(self._kept.pop(next(iter(self._kept)))[1])
            self._kept[key] = found
            self._chars += len(found[1])
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


def _align_pairs(search: _Search, run_id: str, params: ReuseParams, stats: ReuseStats,
                 emit: Callable[[list[dict]], None], seen: PairKeys | None = None,
                 executor: Executor | None = None, workers: int = 2) -> None:
    """Align each candidate pair of texts once (with executor, in its worker processes: aligned_pairs); its rows
    go to every pair of documents carrying the two texts, but for the pairs in seen (each added to it). A search
    gives each pair of documents once (each document is of one text), so seen is only needed across searches."""
    for sha_a, text_a, docs_a, sha_b, text_b, docs_b, passages, similarity in aligned_pairs(
            search.text_pairs(), params, stats, executor, workers):
        for doc_a, doc_b in search.doc_pairs(docs_a, docs_b):
            if seen is not None:
                pair = pair_key(doc_a, doc_b)
                if pair in seen:
                    continue
                seen.add(pair)
            rows = reuse_rows(run_id, doc_a, text_a, doc_b, text_b, passages, similarity, sha_a, sha_b)
            stats.rows += len(rows)
            emit(rows)


def _load_texts(search: _Search, store: Store, texts: _Texts, params: ReuseParams) -> None:
    sources = search.needed_sources()
    if sources:
        search.load_texts(_batches(store, "documents", texts.parts(sources), ["doc_id", "text_sha256", "text"],
                                   DOCUMENT_BATCH), params)
