"""The parts a reuse search writes and reads: band hashes (reuse_bands), reuse rows and their events."""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import provenance as ev
from ..catalogue.view import TextVersions
from ..provenance import RunContext
from ..publish import PartInfo, new_attempt, part_key, put_part, write_part
from ..records import REUSE_BANDS, arrow_schema
from ..storage import Store
from ..timing import StageTimer
from .candidates import HashFilter
from .params import ReuseParams, ReuseStats
from .sketch import DocumentBands, band_scheme, document_bands

TOOL = "archive.reuse: MinHash LSH band hashes + alignment through OCR noise"
ROWS_PER_PART = 50_000  # reuse and event rows per part file
PASSAGE_CHARS_PER_PART = 16 << 20  # characters of passage_text in a reuse part, at most about
BAND_ROWS_PER_PART = 1_000_000  # reuse_bands rows per part file
BAND_ROWS_PER_GROUP = 65_536  # reuse_bands rows per Parquet row group, about the most held while writing
BAND_ROWS_AT_ONCE = 4 * BAND_ROWS_PER_GROUP  # the most made a table at once (one long document's rows, in pieces)
DOCUMENT_BATCH = 256  # documents per record batch read: texts held at once while sketching or loading
BAND_BATCH = 32_768  # reuse_bands rows per record batch read
LET_GO_BYTES = 64 << 20  # a part file of more bytes (uncompressed) is handed back to the system once read
DERIVING = ("ingest", "reprocess")  # the kinds of run whose documents parts hold texts (reprocess: new versions)


# -- what manifests say about bands --------------------------------------------


def reuse_parameters(params: ReuseParams = ReuseParams()) -> dict:
    """The parameters an ingest run records under parameters.reuse: ReuseParams and the band scheme's name."""
    return {**asdict(params), "bands": band_scheme(params).name}


def manifest_band_scheme(manifest: dict) -> str | None:
    """The band scheme of the reuse_bands parts a committed run published, if any."""
    parameters = manifest.get("parameters") or {}
    if manifest["kind"] in DERIVING:
        return (parameters.get("reuse") or {}).get("bands")
    if manifest["kind"] == "reuse":
        return parameters.get("bands")
    return None


def banded_runs(manifests: Iterable[dict], scheme: str) -> set[str]:
    """Ingest (and reprocess) runs whose documents all have band hashes of scheme: from the run's own
    reuse step, or from a reuse run that computed them (parameters.bands_for_runs)."""
    banded = set()
    for m in manifests:
        if manifest_band_scheme(m) != scheme:
            continue
        if m["kind"] in DERIVING:
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
        found.extend((owner.get(p["key"], m["run_id"]), p["key"])
                     for p in m["parts"] if p["dataset"] == "reuse_bands")
    return found


# -- reading parts ---------------------------------------------------------------


def _batches(store: Store, dataset: str, keys: list[str], columns: list[str],
             batch_size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of the given part files (committed or not), one file and one row group at a time.

    Parquet's own reader, not a dataset scanner: a scanner reads ahead of a slow
    consumer and holds far more in memory; this reads what is asked for."""
    filesystem = store.arrow_filesystem()
    schema = arrow_schema(dataset)
    target = pa.schema([schema.field(c) for c in columns])
    for key in keys:
        with filesystem.open_input_file(store.arrow_path(key)) as stream:
            reader = pq.ParquetFile(stream)
            size = sum(reader.metadata.row_group(i).total_byte_size for i in range(reader.metadata.num_row_groups))
            # (yield from: this frame holds no batch while the consumer works)
            yield from map(lambda batch: batch.cast(target),
                           reader.iter_batches(batch_size=batch_size, columns=columns, use_threads=False))
            del reader
        if size > LET_GO_BYTES:
            # Arrow's allocator keeps what it freed for its next arrays: a long text's (read, decompressed and
            # decoded, some 2.5 times its size) goes back to the system, for the work that follows.
            pa.default_memory_pool().release_unused()


def _heads(texts: pa.Array, params: ReuseParams, rows: list[int] | None = None) -> list[str]:
    """The texts (of these rows) as str, each cut to its first params.max_text_chars + 1 characters where Arrow
    holds it (all that searched_text reads of a text): a long text is never made a str whole."""
    if len(texts) and pc.max(pc.binary_length(texts)).as_py() > params.max_text_chars:  # (bytes >= characters)
        texts = pc.utf8_slice_codeunits(texts, 0, params.max_text_chars + 1)
    if rows is not None:
        texts = texts.take(pa.array(rows, pa.int64()))
    return texts.to_pylist()


def _text_digests(texts: pa.Array, rows: list[int]) -> list[str]:
    """The sha256 hex of the texts of these rows, hashed where Arrow holds their UTF-8 bytes (no copy)."""
    texts = texts.cast(pa.large_string())
    _, offsets, data = texts.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[texts.offset:texts.offset + len(texts) + 1]
    data = memoryview(data) if data is not None else memoryview(b"")
    return [hashlib.sha256(data[offsets[row]:offsets[row + 1]]).hexdigest() for row in rows]


def _sketched(store: Store, document_parts: list[str], params: ReuseParams, stats: ReuseStats,
              wanted: Callable[[str], bool] = lambda doc_id: True,
              current: TextVersions | None = None) -> Iterator[tuple[str, str, DocumentBands]]:
    """(doc_id, text_sha256, band hashes) of the documents in these parts that wanted() takes, whose text
    is current (if current is given: not one a re-derivation replaced) and that are long enough to
    sketch; counted in stats. A long text is read, but made a str only as far as its searched_text
    goes (_heads)."""
    for batch in _batches(store, "documents", document_parts, ["doc_id", "text_sha256", "text"], DOCUMENT_BATCH):
        columns = batch.column("doc_id").to_pylist(), batch.column("text_sha256").to_pylist()
        fresh = current.is_current(batch.column("doc_id"), batch.column("text_sha256")).to_pylist() \
            if current is not None else [True] * batch.num_rows
        texts = _heads(batch.column("text"), params)
        del batch
        for doc_id, sha, text, is_fresh in zip(*columns, texts, fresh):
            if not is_fresh or not wanted(doc_id):
                continue
            bands = _counted_bands(text, params, stats)
            if bands is not None:
                yield doc_id, sha, bands


def _counted_bands(text: str, params: ReuseParams, stats: ReuseStats) -> DocumentBands | None:
    """document_bands of a text, counted in stats (texts cut, too short, windows, the seconds it took)."""
    stats.texts_cut += len(text) > params.max_text_chars
    with StageTimer(stats.timings, "signatures"):
        bands = document_bands(text, params)
    if bands is None:
        stats.too_short += 1
        return None
    stats.windows_indexed += bands.windows_indexed
    stats.windows_queried += bands.windows_queried
    return bands


def sketch_batch(store: Store, run_id: str, documents: Iterable[tuple[str, str, str]],
                 params: ReuseParams = ReuseParams()) -> tuple[list[PartInfo], dict]:
    """The band hashes of a batch's documents ((doc_id, text_sha256, text) each), written as reuse_bands parts of
    run_id (uncommitted: the run's reuse step lists them), in the batch's process, where the texts already are.
    Returns the parts and what was sketched (documents, too_short, texts_cut, windows_indexed, windows_queried,
    seconds). Memory: one document's band hashes and a row group of rows (see _BandWriter)."""
    stats = ReuseStats()
    writer = _BandWriter(store, run_id, new_attempt())
    for doc_id, sha, text in documents:
        stats.documents += 1
        bands = _counted_bands(text, params, stats)
        if bands is not None:
            writer.add(doc_id, sha, bands)
    parts = writer.close()
    return parts, {"documents": stats.documents, "too_short": stats.too_short, "texts_cut": stats.texts_cut,
                   "windows_indexed": stats.windows_indexed, "windows_queried": stats.windows_queried,
                   "seconds": stats.timings["signatures"]}


def sketch_table(store: Store, run_id: str, table: pa.Table, params: ReuseParams = ReuseParams()) -> tuple[
        list[PartInfo], dict]:
    """sketch_batch of a documents table (doc_id, text_sha256, text), DOCUMENT_BATCH rows at a time, each text made
    a str only as far as its searched_text goes (_heads)."""
    def documents() -> Iterator[tuple[str, str, str]]:
        for batch in table.select(["doc_id", "text_sha256", "text"]).to_batches(max_chunksize=DOCUMENT_BATCH):
            texts = _heads(batch.column("text"), params)
            yield from zip(batch.column("doc_id").to_pylist(), batch.column("text_sha256").to_pylist(), texts)

    return sketch_batch(store, run_id, documents(), params)


def _scan_bands(store: Store, parts: list[tuple[str, str]], wanted: HashFilter | None,
                on_rows: Callable[[pa.RecordBatch, str], None], current: TextVersions | None = None) -> int:
    """Stream reuse_bands parts a record batch at a time; with wanted, only rows whose hash it
    may hold; with current, only rows of current texts (not of a text a re-derivation replaced).
    Returns the rows passed on."""
    passed = 0
    columns = ["doc_id", "text_sha256", "hash", "indexed"]
    for run_id, key in parts:
        for batch in _batches(store, "reuse_bands", [key], columns, BAND_BATCH):
            if current is not None and len(current.redone):
                batch = batch.filter(current.is_current(batch.column("doc_id"), batch.column("text_sha256")))
            if wanted is not None:
                mask = wanted.contains(batch.column("hash").to_numpy(zero_copy_only=False))
                if not mask.any():
                    continue
                batch = batch.filter(pa.array(mask))
            passed += batch.num_rows
            on_rows(batch, run_id)
    return passed


# -- writing parts ---------------------------------------------------------------


# reuse_bands as written: its strings as Arrow dictionaries (a document's doc_id once, not once a row), the file
# without Arrow's schema, so that readers see REUSE_BANDS itself (Parquet strings, dictionary-encoded either way).
_WRITTEN = pa.schema([field.with_type(pa.dictionary(pa.int32(), field.type)) if field.type == pa.string() else field
                      for field in REUSE_BANDS])


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
        codes = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        doc_ids = pa.array([doc_id for doc_id, _, _ in self._pending], pa.string())
        shas = pa.array([sha for _, sha, _ in self._pending], pa.string())
        columns = [np.concatenate([getattr(bands, name) for _, _, bands in self._pending])
                   for name in ("bands", "hashes", "indexed")]
        self._pending, self._pending_rows = [], 0
        # A long document's rows are not all made strings at once.
        for start in range(0, len(codes), BAND_ROWS_AT_ONCE):
            at = pa.array(codes[start:start + BAND_ROWS_AT_ONCE])
            band, hashes, indexed = (column[start:start + BAND_ROWS_AT_ONCE] for column in columns)
            self._write(pa.table({
                "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(at), dtype=np.int32)),
                                                         pa.array([self.run_id], pa.string())),
                "doc_id": pa.DictionaryArray.from_arrays(at, doc_ids),
                "text_sha256": pa.DictionaryArray.from_arrays(at, shas),
                "band": pa.array(band, pa.int16()),
                "hash": pa.array(hashes, pa.int64()),
                "indexed": pa.array(indexed, pa.bool_()),
            }, schema=_WRITTEN))

    def _write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._buffer = io.BytesIO()
            # (No dictionary for the hashes: nearly all distinct, it would be built, outgrow its page and be dropped.)
            self._writer = pq.ParquetWriter(self._buffer, _WRITTEN, compression="zstd", write_statistics=True,
                                            use_dictionary=[n for n in REUSE_BANDS.names if n != "hash"],
                                            store_schema=False)
        self._writer.write_table(table.cast(_WRITTEN))
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
    """reuse rows and their events (one per pair of documents), flushed as parts of ROWS_PER_PART rows, or sooner
    once the reuse rows' passages hold PASSAGE_CHARS_PER_PART characters: a passage through OCR noise is often a
    whole reprinted story, and 50,000 of them held as rows were hundreds of megabytes."""

    def __init__(self, store: Store, run: RunContext, attempt: str, first_index: int = 0):
        self.store, self.run, self.attempt = store, run, attempt
        self.index = {"reuse": first_index, "events": first_index}
        self.rows: dict[str, list[dict]] = {"reuse": [], "events": []}
        self.parts: list[PartInfo] = []
        self.pairs = 0
        self.passages = 0
        self._chars = 0  # of the passages of the reuse rows held

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        first = rows[0]
        self.rows["reuse"].extend(rows)
        self._chars += sum(len(row["passage_text"]) for row in rows)
        self.rows["events"].append(pair_event(self.run, first))
        self.pairs += 1
        self.passages += len(rows)
        self._flush()

    def _flush(self, final: bool = False) -> None:
        for dataset, rows in self.rows.items():
            full = len(rows) >= ROWS_PER_PART or (dataset == "reuse" and self._chars >= PASSAGE_CHARS_PER_PART)
            if rows and (final or full):
                if dataset == "reuse":
                    self._chars = 0
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
