"""One batch of an ingest run: every file read once, hashed, identified, stored, made a document or set aside."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import provenance as ev
from .claims import DocumentClaims
from .errors import ObjectExistsError, SourceError, StoreError
from .extract import ExtractionError, Extracted, extract
from .fixity import TOOL as DIGEST_TOOL, digest_file, open_for_reading, sha256_hex
from .identify import EMPTY, Format, identify
from .normalise import Description, describe_texts, language_tool_version, normalise_text
from .provenance import RunContext
from .publish import PartInfo, new_attempt, part_key, write_part, write_table_part
from .records import to_table, utc_now
from .sources import FileRef, Prefetch, Source
from .storage import Store, object_key
from .validate import describe_problems, problems
from .timing import StageTimer

DEFAULT_MAX_FILE_BYTES = 256 << 20
# Quarantined and skipped files a batch reports back by name (the rest are counted).
REPORTED_PROBLEMS = 200

DC_FIELDS = ("title", "date", "creator", "language", "publisher", "source", "rights", "description", "subject", "identifier", "type")
# Bytes of originals a batch may have on their way into a store that takes several writes at once.
WRITE_BYTES_IN_FLIGHT = 64 << 20
# The files a batch begins to read ahead of the one it works on (see BatchProcessor._read_ahead): at most
# so many, of at most so many bytes together; a larger file is read when its turn comes.
READ_AHEAD_FILES = 8
READ_AHEAD_BYTES = 32 << 20
# A batch turns its files into documents (extract, normalise, describe) so many at a time, of so many bytes
# at most (a larger file goes alone): their bytes wait in memory (see BatchProcessor._make_documents).
DOCUMENTS_TOGETHER = 64
DOCUMENTS_TOGETHER_BYTES = 16 << 20
STAGES = ("read_hash", "identify", "store_originals", "extract", "normalise", "validate", "write_parts")


@dataclass(frozen=True)
class IngestOptions:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # larger files are kept but quarantined as too-large
    batch_files: int = 1000
    batch_bytes: int = 64 << 20


@dataclass(frozen=True)
class Descriptions:
    """The batch's sidecar metadata.csv: where it is in the source, what it says, or why it cannot be used."""

    path: str | None = None  # the sidecar's path inside the source (None: given with --metadata, or none)
    sidecar: object | None = None  # archive.metadata.Sidecar
    error: str | None = None  # the sidecar as a whole is unusable

    def lookup(self, path: str) -> tuple[dict[str, str] | None, str | None]:
        """(Dublin Core values for the file at path, or a problem naming the line, column and value)."""
        if self.sidecar is None:
            return None, None
        row = self.sidecar.lookup(path)
        if row is not None:
            return row.dublin_core, None
        problems = [p for p in self.sidecar.problems_for(path) if p.severity == "error"]
        if problems:
            return None, f"{self.sidecar.source_name} " + "; ".join(str(p) for p in problems)
        return None, None


def load_descriptions(source: Source, refs_at_root: Iterable[FileRef] = (), explicit: bytes | None = None,
                      explicit_name: str | None = None) -> Descriptions:
    """Read the sidecar: explicit bytes (--metadata FILE), else metadata.csv at the source root."""
    from .metadata import SIDECAR_NAME, SidecarError, load_sidecar

    path, data, name = None, explicit, explicit_name or SIDECAR_NAME
    if data is None:
        for ref in refs_at_root:
            if ref.path == SIDECAR_NAME and not ref.skip_reason:
                path = ref.path
                try:
                    data = source.read(ref)
                except OSError as exc:
                    return Descriptions(path, None, f"{SIDECAR_NAME} cannot be read: {exc.strerror or exc}")
                break
    if data is None:
        return Descriptions()
    try:
        return Descriptions(path, load_sidecar(data, source_name=name))
    except SidecarError as exc:
        return Descriptions(path, None, str(exc))


@dataclass(frozen=True)
class Problem:
    path: str
    outcome: str
    reason: str
    detail: str


@dataclass
class BatchSummary:
    """What a batch task returns: counts and part infos, never the data itself."""

    index: int
    counts: Counter = field(default_factory=Counter)
    parts: list[PartInfo] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # doc_ids this batch published
    # Originals found already stored but not as committed documents (a crashed run's, say): checked again at
    # commit, under the commit lock, in case `archive gc` removed them while this run ran.
    reused_originals: list[str] = field(default_factory=list)
    # Documents this batch found, when it ended, that an earlier batch of the run publishes (doc_id -> that
    # batch's index): made duplicates here (archive.claims); checked at commit against that batch's documents.
    earlier_documents: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    bytes_read: int = 0


class BatchProcessor:
    """Turns a batch of FileRefs into rows of the four datasets and writes them as parts."""

    def __init__(
        self,
        store: Store,
        source: Source,
        run: RunContext,
        index: int,
        *,
        known: frozenset[str] | set[str] = frozenset(),
        options: IngestOptions = IngestOptions(),
        descriptions: Descriptions = Descriptions(),
        claims: DocumentClaims | None = None,
    ):
        self.store, self.source, self.run, self.index = store, source, run, index
        self.known, self.options, self.descriptions = known, options, descriptions
        self.claims = claims  # the run's other batches' documents (None: the commit settles duplicates alone)
        self.summary = BatchSummary(index)
        self.attempt = new_attempt()
        self.documents: list[dict] = []
        self.files: list[dict] = []
        self.quarantine: list[dict] = []
        self.events: list[dict] = []
        self.first_path: dict[str, str] = {}  # sha256 -> first path in this batch
        # Originals on their way into the store (see _store_original), oldest first.
        self._writes: dict[str, tuple[FileRef, str, int, dict, Future]] = {}
        self._writer: ThreadPoolExecutor | None = None
        # Files kept and waiting to be made documents together (see _make_documents), oldest first.
        self._waiting: list[tuple[FileRef, str, Format, bytes]] = []
        self.documents_key = part_key("documents", run.run_id, index, self.attempt)

    def _time(self, stage: str) -> StageTimer:
        return StageTimer(self.summary.timings, stage)

    # -- outcomes ---------------------------------------------------------

    def _file_row(self, ref: FileRef, outcome: str, *, sha256=None, fmt: Format | None = None,
                  reason=None, detail=None, doc_id=None, size=None) -> None:
        self.files.append({
            "run_id": self.run.run_id,
            "path": ref.path,
            "size": size if size is not None else ref.size,
            "sha256": sha256,
            "object_key": object_key(sha256) if sha256 else None,
            "media_type": fmt.media_type if fmt else None,
            "puid": fmt.puid if fmt else None,
            "outcome": outcome,
            "reason": reason,
            "detail": detail,
            "doc_id": doc_id,
            "seen_at": utc_now(),
        })
        self.summary.counts[outcome] += 1
        if outcome in ("quarantine", "skipped") and len(self.summary.problems) < REPORTED_PROBLEMS:
            self.summary.problems.append(Problem(ref.path, outcome, reason, detail))

    def _skip(self, ref: FileRef, reason: str, detail: str) -> None:
        self.events.append(self.run.event(ev.INGESTION, ev.FAILURE, f"not ingested ({reason}): {detail}", path=ref.path))
        self._file_row(ref, "skipped", reason=reason, detail=detail)

    def _quarantine(self, ref: FileRef, sha256: str, size: int, fmt: Format, reason: str, detail: str) -> None:
        self.quarantine.append({
            "run_id": self.run.run_id,
            "path": ref.path,
            "sha256": sha256,
            "object_key": object_key(sha256),
            "size": size,
            "media_type": fmt.media_type,
            "puid": fmt.puid,
            "reason": reason,
            "detail": detail,
            "quarantined_at": utc_now(),
        })
        self.events.append(self.run.event(ev.QUARANTINE, ev.FAILURE, f"{reason}: {detail}", sha256=sha256, path=ref.path))
        self._file_row(ref, "quarantine", sha256=sha256, fmt=fmt, reason=reason, detail=detail, size=size)

    # -- the steps --------------------------------------------------------

    def process(self, refs: Iterable[FileRef]) -> BatchSummary:
        reads = self._read_ahead(refs)
        try:
            for ref, pending in reads:
                self.process_file(ref, pending)
            self._make_documents()
            self._settle_writes()
        finally:
            reads.close()  # (on a failure too: no file stays open)
            self._stop_writer()  # (and no write)
        self._claim_documents()
        self.write_parts()
        return self.summary

    def _claim_documents(self) -> None:
        """The documents an earlier batch of this run publishes become duplicates here, before any part is
        written, instead of being unpublished at commit (see archive.claims)."""
        if self.claims is None or not self.documents:
            return
        try:
            earlier = self.claims.claim(self.index, {d["doc_id"]: d["source_path"] for d in self.documents})
        except (OSError, EOFError):  # the claims' process is gone: the commit settles the copies instead
            return
        if not earlier:
            return
        self.documents = [d for d in self.documents if d["doc_id"] not in earlier]
        self.events = [e for e in self.events if not (e["event_type"] == ev.PUBLICATION and e["object_sha256"] in earlier)]
        self.events += _make_duplicates(self.run, self.summary, self.files, {
            doc_id: ("duplicate-in-run", f"same bytes as {path} in this run") for doc_id, (_, path) in earlier.items()})
        self.summary.earlier_documents = {doc_id: index for doc_id, (index, _) in earlier.items()}

    def _read_ahead(self, refs: Iterable[FileRef]) -> Iterator[tuple[FileRef, Prefetch | None]]:
        """Each ref with its file's read begun ahead of its turn (Source.prefetch; None: read it in turn),
        READ_AHEAD_FILES ahead at most: the disk reads the next files while this thread works on one."""
        pending: deque[tuple[FileRef, Prefetch | None, int]] = deque()  # (ref, its read, the bytes it asked for)
        try:
            for ref in refs:
                size = ref.size or 0
                ahead = (not ref.skip_reason and ref.size is not None and size <= self.options.max_file_bytes
                         and size <= READ_AHEAD_BYTES)
                while pending and (len(pending) >= READ_AHEAD_FILES
                                   or (ahead and sum(n for *_, n in pending) + size > READ_AHEAD_BYTES)):
                    yield from _hand_over(pending)
                handle = self.source.prefetch(ref) if ahead else None
                pending.append((ref, handle, size if handle is not None else 0))
            while pending:
                yield from _hand_over(pending)
        finally:  # a batch that fails or stops keeps no file open
            for _, handle, _ in pending:
                if handle is not None:
                    handle.close()

    def process_file(self, ref: FileRef, pending: Prefetch | None = None) -> None:
        """One file, its bytes from pending (a read begun earlier) or read now."""
        if ref.skip_reason:
            self._skip(ref, ref.skip_reason, ref.skip_detail or ref.skip_reason)
            return
        if ref.size is not None and ref.size > self.options.max_file_bytes:
            self._too_large(ref)
            return
        with self._time("read_hash"):
            try:
                data = pending.result() if pending is not None else self.source.read(ref)
            except (PermissionError, FileNotFoundError, IsADirectoryError, OSError) as exc:
                self._skip(ref, "unreadable", f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
                return
            sha256 = sha256_hex(data)
        self.summary.bytes_read += len(data)
        self.events.append(self.run.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {len(data)} bytes",
                                          sha256=sha256, path=ref.path, tool=DIGEST_TOOL))
        with self._time("identify"):
            fmt = identify(data)
        self.events.append(self.run.event(ev.FORMAT_IDENTIFICATION, ev.SUCCESS,
                                          f"{fmt.media_type}{' ' + fmt.puid if fmt.puid else ''} ({fmt.name}), from content",
                                          sha256=sha256, path=ref.path, tool="archive.identify"))
        with self._time("store_originals"):
            if not self._store_original(ref, sha256, data=data):
                return
        if ref.path == self.descriptions.path:
            self._sidecar_file(ref, sha256, fmt, len(data))
            return
        if self._is_duplicate(ref, sha256, fmt, len(data)):
            return
        if fmt is EMPTY:
            self._quarantine(ref, sha256, len(data), fmt, "empty", "the file has no bytes")
            return
        if self._waiting and sum(len(d) for *_, d in self._waiting) + len(data) > DOCUMENTS_TOGETHER_BYTES:
            self._make_documents()
        self._waiting.append((ref, sha256, fmt, data))
        if len(self._waiting) >= DOCUMENTS_TOGETHER:
            self._make_documents()

    def _store_original(self, ref: FileRef, sha256: str, *, data: bytes | None = None, path: str | None = None) -> bool:
        """Keep the original under its checksum, once. False if the store refused it.

        Where the store takes several writes at once (S3), the bytes go in the
        background and the batch goes on, and so does the look (HEAD) at an
        original expected there already (a re-run's); every write and look has
        ended, and been checked, before the batch writes its parts (_settle_writes).
        """
        key = object_key(sha256)
        if key in self._writes:  # the same bytes earlier in this batch, still on their way
            self._settle_write(key)
        # A committed document's original is expected in the store: look before
        # sending the bytes. Otherwise look first only where looking is cheap.
        probe = sha256 in self.known or sha256 in self.first_path or self.store.probe_before_put
        # The event is made now (its time is when the store was asked), its detail once the write has ended.
        event = self.run.event(ev.INGESTION, ev.SUCCESS, "", sha256=sha256, path=ref.path)
        self.events.append(event)
        expected = len(data) if data is not None else os.path.getsize(path)
        if data is not None and self.store.concurrent_writes > 1:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(self.store.concurrent_writes, thread_name_prefix="store-original")
            for pending, (*_, done) in list(self._writes.items()):
                if done.done() and done.exception() is not None:
                    self._settle_write(pending)  # a failed write ends the batch now, not at its end
            # The bytes on their way stay in memory: a few files, WRITE_BYTES_IN_FLIGHT at most
            # (a larger file goes alone).
            while self._writes and (len(self._writes) >= 2 * self.store.concurrent_writes
                                    or self._bytes_in_flight() + expected > WRITE_BYTES_IN_FLIGHT):
                self._settle_write(next(iter(self._writes)))  # the oldest
            future = self._writer.submit(self._write_original, key, sha256, data, None, probe)
            self._writes[key] = (ref, sha256, expected, event, future)
            return True
        self._record_original(ref, key, sha256, expected, event, self._write_original, key, sha256, data, path, probe)
        return True

    def _write_original(self, key: str, sha256: str, data: bytes | None, path: str | None, probe: bool):
        """(what the store said of the write, or None; the size already stored, or None). Any thread."""
        stored = self.store.size(key) if probe else None
        result = None
        if stored is None:
            try:
                result = (self.store.put_bytes(key, data, sha256=sha256) if data is not None
                          else self.store.put_file(key, path, sha256=sha256))
            except ObjectExistsError:
                # There already (a concurrent writer's, or one we did not look for).
                stored = self.store.size(key)
                if stored is None:
                    raise StoreError(key, "the store refused the write as existing, yet holds no object there")
        return result, stored

    def _record_original(self, ref: FileRef, key: str, sha256: str, expected: int, event: dict, write, *args) -> None:
        # A store failure is not the file's fault: StoreError leaves the batch
        # (the task is retried, then the run fails with nothing committed).
        try:
            result, stored = write(*args)
            if result is not None:
                if result.stored_sha256 is not None and result.stored_sha256 != sha256:
                    raise StoreError(key, f"store holds sha256 {result.stored_sha256}, expected {sha256}")
                detail = f"original stored at {key}" + (f" (store reports sha256 {result.stored_sha256})" if result.stored_sha256 else "")
            else:
                if stored != expected:
                    raise StoreError(key, f"the stored original has {stored} bytes, these bytes are {expected}: "
                                          "the stored copy is damaged (run archive verify)")
                detail = f"original already in store at {key}; not uploaded again"
                if sha256 not in self.known:
                    self.summary.reused_originals.append(key)
        except StoreError as exc:
            raise StoreError(exc.key, f"{exc.reason} (while storing the original of {ref.path})") from exc
        event["detail"] = detail

    def _bytes_in_flight(self) -> int:
        return sum(expected for _, _, expected, _, _ in self._writes.values())

    def _settle_write(self, key: str) -> None:
        """Wait for the background write of key, and check and record it."""
        ref, sha256, expected, event, future = self._writes.pop(key)
        self._record_original(ref, key, sha256, expected, event, future.result)

    def _settle_writes(self) -> None:
        with self._time("store_originals"):
            while self._writes:
                self._settle_write(next(iter(self._writes)))

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._writer = None
        self._writes.clear()

    def _sidecar_file(self, ref: FileRef, sha256: str, fmt: Format, size: int) -> None:
        """The metadata.csv is kept like any original but describes the others instead of becoming a document."""
        d = self.descriptions
        if d.error:
            self._quarantine(ref, sha256, size, fmt, "invalid-metadata", f"{d.error}; no descriptive metadata was applied")
            return
        sidecar = d.sidecar
        rejected = len({p.line for p in sidecar.errors})
        detail = (f"descriptive metadata for this batch: {len(sidecar.rows)} row(s) used, {rejected} rejected"
                  + (f" ({'; '.join(str(p) for p in sidecar.problems[:5])}{'; ...' if len(sidecar.problems) > 5 else ''})"
                     if sidecar.problems else ""))
        self.events.append(self.run.event(ev.VALIDATION, ev.WARNING if sidecar.problems else ev.SUCCESS,
                                          f"{ref.path}: {detail}", sha256=sha256, path=ref.path, tool="jsonschema"))
        self._file_row(ref, "skipped", sha256=sha256, fmt=fmt, reason="sidecar-metadata", detail=detail, size=size)

    def _too_large(self, ref: FileRef) -> None:
        """Keep the bytes (streamed, never whole in memory) but make no document."""
        with self._time("read_hash"):
            try:
                local = self.source.local_path(ref)
                spool = None
                if local is None:
                    spool = tempfile.NamedTemporaryFile(prefix="archive-spool-", delete=False)
                    with self.source.open(ref) as stream, spool:
                        shutil.copyfileobj(stream, spool, 1 << 20)
                    local = spool.name
                digests, size = digest_file(local)
            except OSError as exc:
                self._skip(ref, "unreadable", f"cannot be read: {exc.strerror or exc}")
                return
        try:
            sha256 = digests["sha256"]
            with open_for_reading(local) as stream:
                fmt = identify(stream.read(8192))
            self.events.append(self.run.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {size} bytes (streamed)",
                                              sha256=sha256, path=ref.path, tool=DIGEST_TOOL))
            with self._time("store_originals"):
                self._store_original(ref, sha256, path=local)
            self._quarantine(ref, sha256, size, fmt, "too-large",
                             f"{size} bytes exceeds the limit of {self.options.max_file_bytes} bytes (max_file_bytes); "
                             "original kept, no text extracted")
        finally:
            if spool is not None:
                os.unlink(spool.name)

    def _is_duplicate(self, ref: FileRef, sha256: str, fmt: Format, size: int) -> bool:
        if sha256 in self.known:
            reason, detail = "duplicate-of-committed", f"same bytes as document {sha256}, published by an earlier run"
        elif sha256 in self.first_path:
            reason, detail = "duplicate-in-run", f"same bytes as {self.first_path[sha256]} in this run"
        else:
            self.first_path[sha256] = ref.path
            return False
        self.events.append(self.run.event(ev.DEDUPLICATION, ev.SUCCESS, detail, sha256=sha256, path=ref.path))
        self._file_row(ref, "duplicate", sha256=sha256, fmt=fmt, reason=reason, detail=detail, doc_id=sha256, size=size)
        return True

    def _make_documents(self) -> None:
        """The documents of the files waiting: extracted and normalised one by one, then described together.

        Text code on one file after another, instead of between the reads,
        hashes, writes and Parquet of each file, runs with its tables and
        numpy's code in the processor's caches. In the library loop over
        10,000 files (4 alternating pairs each): language identification
        0.28 -> 0.19 ms a text when the descriptions were made together (user
        time A/B 0.92), and extraction and normalisation together as well took
        user time A/B 0.90 again.
        """
        waiting, self._waiting = self._waiting, []
        made = []
        for ref, sha256, fmt, data in waiting:
            text = self._text(ref, sha256, fmt, data)
            if text:
                made.append((ref, sha256, fmt, len(data), *text))
        del waiting  # (the files' bytes: only their texts are needed from here on)
        if not made:
            return
        with self._time("normalise"):
            descriptions = describe_texts([text for *_, text in made])
        for (ref, sha256, fmt, size, extracted, text), description in zip(made, descriptions):
            self._publish_document(ref, sha256, fmt, size, extracted, text, description)

    def _text(self, ref: FileRef, sha256: str, fmt: Format, data: bytes) -> tuple[Extracted, str] | None:
        """The file's text, extracted and normalised, or None (quarantined: no text to be had)."""
        size = len(data)
        with self._time("extract"):
            try:
                extracted = extract(data, fmt)
            except ExtractionError as exc:
                self._quarantine(ref, sha256, size, fmt, exc.reason, exc.detail)
                return None
            except (StoreError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - third-party parsers fail in any way on hostile bytes
                self._quarantine(ref, sha256, size, fmt, "corrupt",
                                 f"the {fmt.media_type} extractor failed: {type(exc).__name__}: {exc}")
                return None
        with self._time("normalise"):
            text = normalise_text(extracted.text)
            if not text:
                self._quarantine(ref, sha256, size, fmt, "no-text",
                                 f"decoded as {extracted.encoding or extracted.extractor} but only whitespace or invisible characters remain")
                return None
        tool = f"{extracted.extractor} {extracted.extractor_version}"
        notes = "; ".join(extracted.notes)
        self.events.append(self.run.event(
            ev.NORMALIZATION, ev.SUCCESS,
            f"text extracted{' as ' + extracted.encoding if extracted.encoding else ''}"
            f"{' (' + notes + ')' if notes else ''}; normalised (line endings, NFC, spacing, line-break hyphens): "
            f"{len(text)} characters",
            sha256=sha256, path=ref.path, tool=tool))
        return dataclasses.replace(extracted, text=""), text  # (the raw text is not kept beside the normalised one)

    def _publish_document(self, ref: FileRef, sha256: str, fmt: Format, size: int, extracted: Extracted, text: str,
                          description: Description) -> None:
        values = {name: None for name in DC_FIELDS}
        values.update(title=description.title, date=description.date, language=description.language)
        origin = {name: "text" for name, v in values.items() if v is not None}
        for name, value in extracted.metadata.items():
            if name in values and value:
                values[name], origin[name] = value, extracted.extractor
        sidecar, problem = self.descriptions.lookup(ref.path)
        if problem:
            self._quarantine(ref, sha256, size, fmt, "invalid-metadata", problem)
            return
        for name, value in (sidecar or {}).items():
            if name in values and value:
                values[name], origin[name] = value, "metadata.csv"
        # date holds a full calendar date; date_text the date at the precision it was stated.
        date_text = values.pop("date")
        values["date"] = date_text if date_text and len(date_text) == 10 else None
        values["date_text"] = date_text
        self.events.append(self.run.event(
            ev.METADATA_EXTRACTION, ev.WARNING if description.notes else ev.SUCCESS,
            "; ".join([f"{k} from {v}" for k, v in sorted(origin.items())] + list(description.notes)) or "no descriptive metadata found",
            sha256=sha256, path=ref.path, tool=f"py3langid {language_tool_version()}"))
        document = {
            "doc_id": sha256,
            "text_sha256": sha256_hex(text.encode("utf-8")),
            "run_id": self.run.run_id,
            "collection": self.run.collection,
            "source_path": ref.path,
            "object_key": object_key(sha256),
            "media_type": fmt.media_type,
            "puid": fmt.puid,
            "encoding": extracted.encoding,
            "extractor": extracted.extractor,
            "extractor_version": extracted.extractor_version,
            **values,
            "char_count": description.char_count,
            "word_count": description.word_count,
            "text": text,
            "ingested_at": utc_now(),
        }
        with self._time("validate"):
            found = problems("document", document)
        if found:
            detail = describe_problems(found)
            self.events.append(self.run.event(ev.VALIDATION, ev.FAILURE, f"document record fails {_schema('document')}: {detail}",
                                              sha256=sha256, path=ref.path, tool="jsonschema"))
            self._quarantine(ref, sha256, size, fmt, "invalid-metadata", detail)
            return
        self.events.append(self.run.event(ev.VALIDATION, ev.SUCCESS, f"document record valid against {_schema('document')}",
                                          sha256=sha256, path=ref.path, tool="jsonschema"))
        self.events.append(self.run.event(ev.PUBLICATION, ev.SUCCESS, f"document published in {self.documents_key}",
                                          sha256=sha256, path=ref.path))
        self.documents.append(document)
        self.summary.documents.append(sha256)
        self._file_row(ref, "document", sha256=sha256, fmt=fmt, doc_id=sha256, size=size)

    def write_parts(self) -> None:
        self._settle_writes()  # the parts only ever name originals that are in the store
        with self._time("validate"):
            # Events all come from RunContext.event; validating the first of each
            # type and outcome catches a wrong shape at a fraction of the cost
            # (the tests validate every event row).
            shapes: dict[tuple, dict] = {}
            for event in self.events:
                shapes.setdefault((event["event_type"], event["outcome"], event["object_sha256"] is None), event)
            for kind, rows in (("file", self.files), ("quarantine", self.quarantine), ("event", list(shapes.values()))):
                for row in rows:
                    found = problems(kind, row)
                    if found:  # our own bug, not the input's: fail loudly
                        raise ValueError(f"{kind} row for {row.get('path') or row.get('source_path')!r} is invalid: "
                                         f"{describe_problems(found)}")
        with self._time("write_parts"):
            run_id = self.run.run_id
            for dataset, rows in (("documents", self.documents), ("files", self.files),
                                  ("quarantine", self.quarantine), ("events", self.events)):
                if rows:
                    key = self.documents_key if dataset == "documents" else part_key(dataset, run_id, self.index, self.attempt)
                    self.summary.parts.append(write_part(self.store, dataset, key, rows))
            self.store.flush()  # originals and parts durable before the batch reports them


def _hand_over(pending: deque) -> Iterator[tuple[FileRef, Prefetch | None]]:
    """The oldest of pending, its file closed once it has been worked on (or the work stopped)."""
    ref, handle, _ = pending.popleft()
    try:
        yield ref, handle
    finally:
        if handle is not None:
            handle.close()


def _schema(kind: str) -> str:
    from .validate import schema_id

    return schema_id(kind)


def process_batch(store: Store, source: Source, run: RunContext, index: int, refs: list[FileRef], *,
                  known: frozenset[str] | set[str] = frozenset(), options: IngestOptions = IngestOptions(),
                  descriptions: Descriptions = Descriptions(), claims: DocumentClaims | None = None) -> BatchSummary:
    """Ingest one batch; its parts are in the store (uncommitted) when this returns.

    claims: the run's DocumentClaims, shared by its batches: a document an earlier batch publishes becomes a
    duplicate in this batch's parts at once (without, the commit unpublishes it: the same outcome, dearer).
    """
    return BatchProcessor(store, source, run, index, known=known, options=options, descriptions=descriptions,
                          claims=claims).process(refs)


def check_reused_originals(store: Store, summaries: list[BatchSummary]) -> None:
    """Fail the commit if an original this run relied on without uploading it is gone.

    A run does not upload an original the store already holds. When that copy
    belongs to no committed run (left by a crashed run), `archive gc` may remove
    it while this run goes on; call this under the commit lock, which gc also
    holds while deleting, so what it finds stays true until the manifest lands.
    """
    sizes = store.sizes(sorted({key for s in summaries for key in s.reused_originals}))
    for key, size in sizes.items():
        if size is None:
            raise StoreError(key, "this run found the original already stored and did not upload it, but it was "
                                  "removed before the commit (archive gc?); nothing was committed: run the ingest again")


def reconcile(store: Store, run: RunContext, summaries: list[BatchSummary], committed: set[str]) -> list[str]:
    """Make each doc_id a document once: a doc_id that two batches of this run
    published, or that another run committed while this one ran, stays only in
    the first place and becomes a duplicate elsewhere. Rewrites only the parts
    of affected batches (new keys; the old ones are never listed). Returns notes.

    Fails if a document a batch left to an earlier batch (archive.claims) is not among that batch's documents."""
    by_index = {s.index: s for s in summaries}
    published: dict[int, set[str]] = {}  # (made for the batches named only)
    for summary in summaries:
        for doc_id, index in summary.earlier_documents.items():
            if index not in published:
                published[index] = set(by_index[index].documents) if index in by_index else set()
            if doc_id not in published[index]:
                # Only if the source changed between attempts of a batch: the copy was not published anywhere.
                raise SourceError(f"batch {summary.index} found document {doc_id} published by batch {index}, "
                                  f"which no longer publishes it (did a file change during the run?); nothing was "
                                  f"committed: run the ingest again")
    owner: dict[str, int] = {}
    drop: dict[int, dict[str, str]] = {}
    for summary in sorted(summaries, key=lambda s: s.index):
        for doc_id in summary.documents:
            if doc_id in committed:
                drop.setdefault(summary.index, {})[doc_id] = "duplicate-of-committed"
            elif doc_id in owner:
                drop.setdefault(summary.index, {})[doc_id] = "duplicate-in-run"
            else:
                owner[doc_id] = summary.index
    for index, doc_ids in drop.items():
        _rewrite_batch(store, run, by_index[index], doc_ids)
        # One batch at a time, its Arrow buffers handed back before the next: two at a
        # time was 35% faster but raised the run's peak RSS by 40% (30,000 files: 488 -> 343 MiB).
        pa.default_memory_pool().release_unused()
    return [f"batch {index}: {len(doc_ids)} document(s) turned out to be duplicates at commit and were unpublished"
            for index, doc_ids in drop.items()]


def _rewrite_batch(store: Store, run: RunContext, summary: BatchSummary, doc_ids: dict[str, str]) -> None:
    attempt = new_attempt()
    old = {p.dataset: p for p in summary.parts}
    documents_key = part_key("documents", run.run_id, summary.index, attempt)

    def table(dataset: str) -> pa.Table | None:
        return pq.read_table(io.BytesIO(store.get_bytes(old[dataset].key))) if dataset in old else None

    def rows(dataset: str) -> list[dict]:
        found = table(dataset)
        return [] if found is None else [_jsonable(r) for r in found.to_pylist()]

    # Documents (their texts are most of a batch's bytes) and events (six or so a file) are
    # filtered as Arrow tables, never made Python rows; the files rows change, so they are rows.
    dropped = pa.array(sorted(doc_ids), pa.string())
    documents = table("documents")
    if documents is not None:
        documents = documents.filter(pc.invert(pc.is_in(documents["doc_id"], value_set=dropped)))
    events = table("events")
    if events is not None:
        publication = pc.equal(events["event_type"], ev.PUBLICATION)
        if "documents" in old:
            moved = pc.replace_substring(events["detail"], old["documents"].key, documents_key)
            events = events.set_column(events.schema.get_field_index("detail"), "detail",
                                       pc.if_else(publication, moved, events["detail"]))
        unpublished = pc.fill_null(pc.and_(publication, pc.is_in(events["object_sha256"], value_set=dropped)), False)
        events = events.filter(pc.invert(unpublished))
    files = rows("files")
    deduplicated = _make_duplicates(run, summary, files, {
        doc_id: (reason, "same bytes as a document another run committed while this one ran" if reason == "duplicate-of-committed"
                 else "same bytes as a document another batch of this run published")
        for doc_id, reason in doc_ids.items()}, "; unpublished at commit")
    if deduplicated:
        added = to_table("events", deduplicated)
        events = added if events is None else pa.concat_tables([events.cast(added.schema), added])
    parts = [p for p in summary.parts if p.dataset not in ("documents", "files", "events")]
    for dataset, new_table in (("documents", documents), ("events", events)):
        if new_table is not None and new_table.num_rows:
            key = documents_key if dataset == "documents" else part_key(dataset, run.run_id, summary.index, attempt)
            parts.append(write_table_part(store, dataset, key, new_table))
    if files:
        parts.append(write_part(store, "files", part_key("files", run.run_id, summary.index, attempt), files))
    summary.parts = parts


def _make_duplicates(run: RunContext, summary: BatchSummary, files: list[dict], found: dict[str, tuple[str, str]],
                     note: str = "") -> list[dict]:
    """The files rows of these documents (doc_id -> (reason, detail)) become duplicates, and the summary's counts
    and documents follow; returns the deduplication events (their detail + note), for the caller's events."""
    events = []
    for row in files:
        if row["outcome"] == "document" and row["doc_id"] in found:
            reason, detail = found[row["doc_id"]]
            row.update(outcome="duplicate", reason=reason, detail=detail)
            events.append(run.event(ev.DEDUPLICATION, ev.SUCCESS, detail + note, sha256=row["sha256"], path=row["path"]))
            summary.counts["document"] -= 1
            summary.counts["duplicate"] += 1
    summary.documents = [d for d in summary.documents if d not in found]
    return events


def _jsonable(row: dict) -> dict:
    """A row read back from Parquet in the JSON form to_table takes."""
    import datetime as dt

    out = {}
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        elif isinstance(value, dt.date):
            value = value.isoformat()
        out[name] = value
    return out


def publish_run_events(store: Store, run: RunContext, index: int, counts: dict[str, int],
                       warnings: Iterable[str] = ()) -> PartInfo:
    """The run's own events, written as the last events part: who or what started
    it, and what it published. They concern the run, not one object."""
    who = run.started_by
    starter = f"deployment {who['deployment']}" if who.get("deployment") else f"user {who.get('user')} on host {who.get('host')}"
    events = [
        run.event(ev.INGESTION, ev.SUCCESS, f"run {run.run_id} of {run.source} started by {starter} at {run.started_at}"
                  + (f" for collection {run.collection}" if run.collection else "")),
        *(run.event(ev.VALIDATION, ev.WARNING, warning) for warning in warnings),
        run.event(ev.PUBLICATION, ev.SUCCESS, "run committed: " + ", ".join(f"{v} {k}" for k, v in counts.items())),
    ]
    return write_part(store, "events", part_key("events", run.run_id, index, new_attempt()), events)


def unmatched_rows(descriptions: Descriptions, seen: Iterable[str]) -> list[str]:
    """Sidecar rows naming files the source does not have: a typo or a missing file, said in words."""
    if descriptions.sidecar is None:
        return []
    return [f"{descriptions.sidecar.source_name} line {row.line} describes {row.filename!r}, which is not in the source"
            for row in descriptions.sidecar.unmatched(seen)]


def store_sidecar(store: Store, data: bytes) -> str:
    """Keep a sidecar given from outside the source (--metadata) like any original."""
    sha256 = sha256_hex(data)
    key = object_key(sha256)
    if not store.exists(key):
        try:
            store.put_bytes(key, data, sha256=sha256)
        except ObjectExistsError:
            pass
    return key


def total_counts(summaries: Iterable[BatchSummary]) -> dict[str, int]:
    """The run's counts, in the names the CLI and manifest use."""
    total: Counter = Counter()
    for s in summaries:
        total.update(s.counts)
    return {
        "files": sum(total.values()),
        "documents": total["document"],
        "duplicates": total["duplicate"],
        "quarantined": total["quarantine"],
        "skipped": total["skipped"],
    }


ProgressCallback = Callable[[int, int | None, float], None]
