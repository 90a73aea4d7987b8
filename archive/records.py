"""The record kinds as published: Arrow schemas beside the JSON Schemas that describe the same rows."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")
_SHA = pa.string()


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


DOCUMENT = pa.schema([
    _f("doc_id", _SHA),
    _f("text_sha256", _SHA),
    _f("run_id", pa.string()),
    _f("collection", pa.string(), True),
    _f("source_path", pa.string()),
    _f("object_key", pa.string()),
    _f("media_type", pa.string()),
    _f("puid", pa.string(), True),
    _f("encoding", pa.string(), True),
    _f("extractor", pa.string()),
    _f("extractor_version", pa.string()),
    _f("title", pa.string(), True),
    _f("date", pa.date32(), True),
    _f("date_text", pa.string(), True),
    _f("creator", pa.string(), True),
    _f("language", pa.string(), True),
    _f("publisher", pa.string(), True),
    _f("source", pa.string(), True),
    _f("rights", pa.string(), True),
    _f("description", pa.string(), True),
    _f("subject", pa.string(), True),
    _f("identifier", pa.string(), True),
    _f("type", pa.string(), True),
    _f("char_count", pa.int64()),
    _f("word_count", pa.int64()),
    # Documents whose text is OCR'd (null for the others): mean word confidence (0-1), share of words in the
    # dictionary of the OCR language, whether any page is below the quality thresholds, and the key of the ALTO
    # (word boxes and confidences) kept in the store. Absent from parts written before them: read as null.
    _f("ocr_confidence", pa.float64(), True),
    _f("dictionary_share", pa.float64(), True),
    _f("low_ocr_quality", pa.bool_(), True),
    _f("ocr_key", pa.string(), True),
    # A vendor's OCR (ALTO, hOCR, PAGE): the sha256 of the page image delivered with it (same folder and stem), kept
    # as an original and not OCR'd again; null otherwise, and in parts written before it.
    _f("page_image_sha256", _SHA, True),
    _f("text", pa.large_string()),
    _f("ingested_at", _TS),
])

FILE = pa.schema([
    _f("run_id", pa.string()),
    _f("path", pa.string()),
    _f("size", pa.int64(), True),
    _f("sha256", _SHA, True),
    _f("object_key", pa.string(), True),
    _f("media_type", pa.string(), True),
    _f("puid", pa.string(), True),
    _f("outcome", pa.string()),
    _f("reason", pa.string(), True),
    _f("detail", pa.string(), True),
    _f("doc_id", _SHA, True),
    _f("seen_at", _TS),
    # The container (ZIP, TAR, mbox, e-mail message) a file was unpacked from; null for a file of the source, and
    # in parts written before it.
    _f("container_sha256", _SHA, True),
])

QUARANTINE = pa.schema([
    _f("run_id", pa.string()),
    _f("path", pa.string()),
    _f("sha256", _SHA),
    _f("object_key", pa.string()),
    _f("size", pa.int64()),
    _f("media_type", pa.string()),
    _f("puid", pa.string(), True),
    _f("reason", pa.string()),
    _f("detail", pa.string()),
    _f("quarantined_at", _TS),
])

EVENT = pa.schema([
    _f("event_id", pa.string()),
    _f("run_id", pa.string()),
    _f("flow_run_id", pa.string(), True),
    _f("event_type", pa.string()),
    _f("event_time", _TS),
    _f("outcome", pa.string()),
    _f("detail", pa.string()),
    _f("object_sha256", _SHA, True),
    _f("source_path", pa.string(), True),
    _f("agent", pa.string()),
    _f("agent_version", pa.string()),
    _f("tool", pa.string(), True),
])

# One row per shared passage (schemas/reuse.schema.json says the same).
# Offsets count Unicode code points into each document's normalised text (the
# `text` column of documents), end exclusive: text[start:end] in Python,
# substring(text, start + 1, end - start) in DuckDB.
REUSE = pa.schema([
    _f("run_id", pa.string()),
    _f("doc_id_a", pa.string()),
    _f("doc_id_b", pa.string()),
    _f("text_sha256_a", pa.string(), True),  # the texts the passage was found in (null in rows before they were)
    _f("text_sha256_b", pa.string(), True),
    _f("start_a", pa.int64()),
    _f("end_a", pa.int64()),
    _f("start_b", pa.int64()),
    _f("end_b", pa.int64()),
    _f("passage_words", pa.int64()),
    _f("passage_text", pa.large_string()),
    _f("similarity", pa.float64()),
])

# One row per distinct band hash of a document's windows (schemas/reuse-band.schema.json).
REUSE_BANDS = pa.schema([
    _f("run_id", pa.string()),
    _f("doc_id", pa.string()),
    _f("text_sha256", pa.string()),
    _f("band", pa.int16()),
    _f("hash", pa.int64()),
    _f("indexed", pa.bool_()),
])

# One row per member of a cluster of texts that share a passage (schemas/reuse-cluster.schema.json).
REUSE_CLUSTERS = pa.schema([
    _f("run_id", pa.string()),
    _f("cluster_id", pa.string()),
    _f("doc_id", pa.string()),
    _f("text_sha256", pa.string(), True),
    _f("start", pa.int64()),
    _f("end", pa.int64()),
    _f("date", pa.date32(), True),
    _f("size", pa.int64()),
    _f("earliest_doc_id", pa.string(), True),
    _f("earliest_date", pa.date32(), True),
])

# One row per version of a record (schemas/record.schema.json): a file instance, by its recorded path, with its
# own description. The current view (archive.read.open_dataset) keeps each record's latest version.
RECORD = pa.schema([
    _f("record_id", pa.string()),
    _f("path", pa.string()),
    _f("version", pa.int64()),
    _f("run_id", pa.string()),
    _f("change", pa.string()),
    _f("changed_fields", pa.list_(pa.string())),
    _f("reason", pa.string(), True),
    _f("doc_id", _SHA),
    _f("collection", pa.string(), True),
    *(f for f in DOCUMENT if f.name in ("title", "date", "date_text", "creator", "language", "publisher", "source",
                                        "rights", "description", "subject", "identifier", "type")),
    _f("sidecar", pa.string(), True),
    _f("stated", pa.string(), True),
    _f("derived", pa.string()),
    _f("description_sha256", _SHA),
    _f("recorded_at", _TS),
])

# Published dataset name -> (Arrow schema, JSON Schema record kind).
DATASETS: dict[str, tuple[pa.Schema, str]] = {
    "documents": (DOCUMENT, "document"),
    "files": (FILE, "file"),
    "quarantine": (QUARANTINE, "quarantine"),
    "events": (EVENT, "event"),
    "reuse": (REUSE, "reuse"),
    "reuse_bands": (REUSE_BANDS, "reuse-band"),
    "reuse_clusters": (REUSE_CLUSTERS, "reuse-cluster"),
    "records": (RECORD, "record"),
}


def arrow_schema(dataset: str) -> pa.Schema:
    try:
        return DATASETS[dataset][0]
    except KeyError:
        raise ValueError(f"no dataset named {dataset!r}; known: {', '.join(DATASETS)}") from None


def to_table(dataset: str, rows: list[dict]) -> pa.Table:
    """Rows in their JSON form (ISO strings for dates and times) as an Arrow table."""
    schema = arrow_schema(dataset)
    converters = {
        f.name: _parse_timestamp if pa.types.is_timestamp(f.type) else dt.date.fromisoformat
        for f in schema
        if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)
    }
    columns = {f.name: [row[f.name] for row in rows] for f in schema}
    for name, convert in converters.items():
        columns[name] = [None if v is None else convert(v) for v in columns[name]]
    for f in schema:
        if pa.types.is_large_string(f.type):
            columns[f.name] = _texts(columns[f.name])
    return pa.table(columns, schema=schema)


# Texts joined into one chunk of a text column, up to so many bytes; a longer text is a chunk of its own.
TEXT_CHUNK_BYTES = 16 << 20


def _texts(values: list) -> pa.ChunkedArray:
    """Whole texts as a large_string column, each chunk made from the texts' UTF-8 bytes and wrapped as they are:
    an Arrow builder, growing, held a long text up to three times over (two of them in memory Arrow's allocator
    kept afterwards)."""
    if any(v is None for v in values):
        return pa.chunked_array([pa.array(values, pa.large_string())])
    chunks: list[pa.Array] = []
    pending: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            offsets = np.zeros(len(pending) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in pending], out=offsets[1:])
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            chunks.append(pa.LargeStringArray.from_buffers(len(pending), pa.py_buffer(offsets), pa.py_buffer(data)))
            pending, size = [], 0

    for value in values:
        encoded = value.encode("utf-8")
        if size + len(encoded) > TEXT_CHUNK_BYTES:
            flush()
        pending.append(encoded)
        size += len(encoded)
    flush()
    return pa.chunked_array(chunks, pa.large_string())


def json_form(row: dict) -> dict:
    """A row read back from Parquet in the JSON form to_table takes (ISO strings for dates and times)."""
    out = {}
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        elif isinstance(value, dt.date):
            value = value.isoformat()
        out[name] = value
    return out


def _parse_timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_now() -> str:
    """The current time as the records carry it: ISO 8601 UTC with microseconds and Z ("2026-12-02T17:34:19.266889Z").

    Every file's rows and events carry one or more: the date and time of the
    second are formatted once a second, not at every call (as datetime.now(utc).isoformat() would).
    """
    global _second
    micros = time.time_ns() // 1000
    seconds, fraction = divmod(micros, 1_000_000)
    if _second[0] != seconds:
        _second = (seconds, dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{fraction:06d}Z"


_second: tuple[int | None, str] = (None, "")  # (a second since the epoch, its date and time as utc_now writes them)
