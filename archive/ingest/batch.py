"""One batch of an ingest run: every file read once, hashed, identified, stored, made a document or set aside."""

from __future__ import annotations

from functools import partial
from typing import Callable, Container, Iterable, Iterator

from .. import provenance as ev
from ..catalogue.identity import elements
from ..claims import DocumentClaims
from ..containers import EML
from ..describe import Description, describe_texts, language_tool_version
from ..extract import Extracted
from ..extract.budget import Budgets
from ..fixity import TOOL as DIGEST_TOOL
from ..fixity import FileChangedError, sha256_hex
from ..identify import EMPTY, Format, identify
from ..provenance import RunContext
from ..publish import new_attempt, part_key
from ..reuse.bands import sketch_table
from ..reuse.params import ReuseParams
from ..sources import FileRef, Prefetch, Source
from ..storage import Store
from ..timing import StageTimer
from . import stages
from .derived import store_derived
from .descriptions import Descriptions
from .members import Ready, Within, member_event, unpack_attachments, unpack_container
from .originals import OriginalsWriter
from .pages import PagePairs, images_last, pair_page_image
from .readahead import read_ahead
from .recording import BatchRecords
from .rows import BatchRows
from .stages import Quarantine
from .streamed import keep_too_large
from .summary import BatchSummary, IngestOptions
from .unpack import UNPACKED

# A batch makes its files documents (extract, normalise, describe) so many at a time, of so many bytes at most
# (a larger file goes alone): their bytes wait in memory meanwhile. Text code run on one file after another keeps
# its tables and numpy's code in the processor's caches, instead of between each file's reads, hashes and writes.
DOCUMENTS_TOGETHER = 64
DOCUMENTS_TOGETHER_BYTES = 16 << 20


class BatchProcessor:
    """Turns a batch of FileRefs into rows of the four datasets and writes them as parts."""

    def __init__(self, store: Store, source: Source, run: RunContext, index: int, *,
                 known: Container[str] = frozenset(), options: IngestOptions = IngestOptions(),
                 descriptions: Descriptions = Descriptions(), claims: DocumentClaims | None = None):
        self.store, self.source, self.run, self.index = store, source, run, index
        self.known, self.options, self.descriptions = known, options, descriptions
        self.claims = claims  # the run's other batches' documents (None: the commit settles duplicates alone)
        self.summary = BatchSummary(index)
        self.rows = BatchRows(run, self.summary)
        self.records = BatchRecords(run, descriptions, self.rows)  # every document and duplicate is a record
        self.originals = OriginalsWriter(store, known, self.summary.reused_originals)
        self.attempt = new_attempt()
        self.first_path: dict[str, str] = {}  # sha256 -> first path in this batch
        self.pages = PagePairs()  # the vendor OCR files met, whose page images are not OCR'd again
        # Files kept and waiting to be made documents together (see _make_documents), oldest first.
        self._waiting: list[tuple[FileRef, str, Format, bytes]] = []
        self.documents_key = part_key("documents", run.run_id, index, self.attempt)

    def _time(self, stage: str) -> StageTimer:
        return StageTimer(self.summary.timings, stage)

    def process(self, refs: Iterable[FileRef]) -> BatchSummary:
        reads = read_ahead(self.source, images_last(list(refs), lambda ref: ref.path), self.options.max_file_bytes)
        try:
            for ref, pending in reads:
                try:
                    self.process_file(ref, pending)
                except Exception as exc:  # a failure of the batch (the store's, or a bug): said with its file
                    exc.add_note(f"while ingesting {ref.path!r} ({ref.location})")
                    raise
            self._make_documents()
            with self._time("store_originals"):
                self.originals.settle_all()  # the parts only ever name originals that are in the store
        finally:
            reads.close()  # (on a failure too: no file stays open)
            self.originals.close()  # (and no write)
        self._claim_documents()
        self.rows.write_parts(self.store, self.index, self.attempt, self.documents_key, _sketcher(self))
        self.records.write(self.store, self.index, self.attempt, self.summary.parts)
        self.store.flush()  # originals and parts durable before the batch reports them
        return self.summary

    def _claim_documents(self) -> None:
        """The documents an earlier batch of this run publishes become duplicates here, before any part is
        written, instead of being unpublished at commit (see archive/claims.py)."""
        if self.claims is None or not self.rows.documents:
            return
        try:
            earlier = self.claims.claim(self.index, {d["doc_id"]: d["source_path"] for d in self.rows.documents})
        except (OSError, EOFError):  # the claims' process is gone: the commit settles the copies instead
            return
        if not earlier:
            return
        self.rows.unpublish({doc_id: ("duplicate-in-run", f"same bytes as {path} in this run")
                             for doc_id, (_, path) in earlier.items()})
        self.summary.earlier_documents = {doc_id: index for doc_id, (index, _) in earlier.items()}

    def process_file(self, ref: FileRef, pending: Prefetch | Ready | None = None, within: Within | None = None
                     ) -> None:
        """One file, its bytes from pending (a read begun earlier) or read now; within: how a container's member
        came (members.py)."""
        if ref.skip_reason:
            self.rows.skip(ref, ref.skip_reason, ref.skip_detail or ref.skip_reason)
            return
        if ref.size is not None and ref.size > self.options.max_file_bytes:
            keep_too_large(self, ref)
            return
        unstable = None
        with self._time("read_hash"):
            try:
                data = pending.result() if pending is not None else self.source.read(ref)
            except FileChangedError as exc:  # the bytes read are kept, and made no document
                data, unstable = exc.data, exc.strerror
            except OSError as exc:
                self.rows.unread(ref, exc)
                return
            sha256 = sha256_hex(data)
        self.summary.bytes_read += len(data)
        self.rows.event(ev.MESSAGE_DIGEST, ev.SUCCESS, f"sha256 over {len(data)} bytes", sha256=sha256,
                        path=ref.path, tool=DIGEST_TOOL)
        if within is not None:
            member_event(self, ref, sha256, within)
        with self._time("identify"):
            fmt = identify(data)
        self.rows.event(ev.FORMAT_IDENTIFICATION, ev.SUCCESS,
                        f"{fmt.media_type}{' ' + fmt.puid if fmt.puid else ''} ({fmt.name}), from content",
                        sha256=sha256, path=ref.path, tool="archive.identify")
        with self._time("store_originals"):
            self._store_original(ref, sha256, data=data)
        if unstable:
            self.rows.set_aside(ref, sha256, len(data), fmt, "unstable", f"{unstable}; the {len(data)} bytes read "
                                "are kept, no text extracted; ingest it again once it is complete")
            return
        if ref.path == self.descriptions.path:
            return self.records.sidecar_file(ref, sha256, fmt, len(data))
        if fmt.media_type in UNPACKED:  # a ZIP, TAR or mbox: its members are the files
            return unpack_container(self, ref, sha256, fmt, data, within)
        if fmt.media_type == EML.media_type:  # a message is a document, its attachments files of their own
            unpack_attachments(self, ref, sha256, fmt, data, within)
        self.pages.seen(ref, sha256, fmt)
        if pair_page_image(self, ref, sha256, fmt, len(data)):  # the page of a vendor's OCR: not OCR'd again
            return
        if self.records.badly_described(ref, sha256, fmt, len(data), seen=(self.known, self.first_path)):
            return  # (quarantined invalid-metadata: a record of its own, never a duplicate of another path)
        if not self._is_duplicate(ref, sha256, fmt, len(data)):
            if fmt is EMPTY:
                self.rows.set_aside(ref, sha256, len(data), fmt, "empty", "the file has no bytes")
                return
            if self._waiting and sum(len(d) for *_, d in self._waiting) + len(data) > DOCUMENTS_TOGETHER_BYTES:
                self._make_documents()
            self._waiting.append((ref, sha256, fmt, data))
            del data  # (the waiting list holds the bytes: _make_documents lets go of them)
            if len(self._waiting) >= DOCUMENTS_TOGETHER:
                self._make_documents()

    def _store_original(self, ref: FileRef, sha256: str, *, data: bytes | None = None, path: str | None = None,
                        size: int | None = None):
        # The event is made now (its time is when the store was asked), its detail once the write has ended.
        event = self.rows.event(ev.INGESTION, ev.SUCCESS, "", sha256=sha256, path=ref.path)
        # A committed document's original is expected in the store: look before sending the bytes.
        probe = sha256 in self.known or sha256 in self.first_path
        self.originals.store_original(ref, sha256, event, probe=probe, data=data, path=path, size=size)

    def _is_duplicate(self, ref: FileRef, sha256: str, fmt: Format, size: int) -> bool:
        if sha256 in self.known:
            reason, detail = "duplicate-of-committed", f"same bytes as document {sha256}, published by an earlier run"
        elif sha256 in self.first_path:
            reason, detail = "duplicate-in-run", f"same bytes as {self.first_path[sha256]} in this run"
        else:
            self.first_path[sha256] = ref.path
            return False
        self.rows.duplicate(ref, sha256, fmt, size, reason, detail)
        self.records.duplicate(ref.path, sha256)
        return True

    def _make_documents(self) -> None:
        """The documents of the files waiting: extracted and normalised one by one, then described together."""
        waiting, self._waiting = self._waiting, []
        made = []
        for ref, sha256, fmt, size, extracted in _extracted(waiting, self._time, self.options.budgets):
            text = self._text(ref, sha256, fmt, size, extracted)
            if text:
                made.append((ref, sha256, fmt, size, *text))
        if not made:
            return
        with self._time("normalise"):
            descriptions = describe_texts([text for *_, text, _ in made])
        for (ref, sha256, fmt, size, extracted, text, ocr_key), description in zip(made, descriptions):
            self._publish_document(ref, sha256, fmt, size, extracted, text, description, ocr_key)

    def _text(self, ref: FileRef, sha256: str, fmt: Format, size: int,
              extracted: Extracted | Quarantine) -> tuple[Extracted, str, str | None] | None:
        """The file's text, normalised, and the key of its OCR's ALTO where it has one; or None (quarantined: no
        text to be had)."""
        if not isinstance(extracted, Quarantine):
            with self._time("normalise"):
                extracted = stages.normalised(extracted)
        if isinstance(extracted, Quarantine):
            self.rows.set_aside(ref, sha256, size, fmt, extracted.reason, extracted.detail)
            return None
        extracted, text = extracted
        detail, ocr_key = stages.normalisation_detail(extracted, text), None
        if extracted.ocr is not None and extracted.ocr.alto:
            with self._time("store_originals"):
                ocr_key, kept = store_derived(self.store, extracted.ocr.alto, f"the ALTO of {ref.path}")
            detail += f"; ALTO of the OCR (word boxes and confidences) {kept}"
        low = extracted.ocr is not None and bool(extracted.ocr.low_pages)
        self.rows.event(ev.NORMALIZATION, ev.WARNING if low else ev.SUCCESS, detail, sha256=sha256,
                        path=ref.path, tool=f"{extracted.extractor} {extracted.extractor_version}")
        return extracted, text, ocr_key

    def _publish_document(self, ref: FileRef, sha256: str, fmt: Format, size: int, extracted: Extracted, text: str,
                          description: Description, ocr_key: str | None = None) -> None:
        sidecar, _ = self.descriptions.lookup(ref.path)  # (a file whose row is invalid was set aside: badly_described)
        values, origin = stages.dublin_core(description, extracted, sidecar)
        self.rows.event(ev.METADATA_EXTRACTION, ev.WARNING if description.notes else ev.SUCCESS,
                        "; ".join([f"{k} from {v}" for k, v in sorted(origin.items())] + list(description.notes))
                        or "no descriptive metadata found",
                        sha256=sha256, path=ref.path, tool=f"py3langid {language_tool_version()}")
        document = stages.document_record(sha256=sha256, run_id=self.run.run_id, collection=self.run.collection,
                                          path=ref.path, fmt=fmt, extracted=extracted, text=text,
                                          description=description, values=values, ocr_key=ocr_key)
        with self._time("validate"):
            invalid = stages.invalid_document(document)
        schema = stages.document_schema()
        if invalid:
            self.rows.event(ev.VALIDATION, ev.FAILURE, f"document record fails {schema}: {invalid.detail}",
                            sha256=sha256, path=ref.path, tool="jsonschema")
            self.rows.set_aside(ref, sha256, size, fmt, invalid.reason, invalid.detail)
            return
        self.rows.event(ev.VALIDATION, ev.SUCCESS, f"document record valid against {schema}", sha256=sha256,
                        path=ref.path, tool="jsonschema")
        self.rows.event(ev.PUBLICATION, ev.SUCCESS, f"document published in {self.documents_key}", sha256=sha256,
                        path=ref.path)
        self.rows.documents.append(document)
        self.summary.documents.append(sha256)
        self.rows.file_row(ref, "document", sha256=sha256, fmt=fmt, doc_id=sha256, size=size)
        self.records.document(ref.path, sha256, elements(stages.dublin_core(description, extracted, None)[0]))


def _sketcher(batch: BatchProcessor) -> Callable | None:
    """With reuse on, what makes the band hashes of the batch's documents once their part is written."""
    params = batch.options.reuse
    return params and partial(_sketch, batch.summary, batch.store, batch.run.run_id, params)


def _sketch(summary: BatchSummary, store: Store, run_id: str, params: ReuseParams, documents) -> None:
    """The band hashes of a batch's documents (their Arrow table, once its part is written), for the run's reuse
    step: parts and figures in the summary."""
    with StageTimer(summary.timings, "reuse_bands"):
        summary.reuse_bands, summary.reuse_stats = sketch_table(store, run_id, documents, params)


def _extracted(waiting: list[tuple[FileRef, str, Format, bytes]], timer: Callable[[str], StageTimer],
               budgets: Budgets) -> Iterator[tuple[FileRef, str, Format, int, Extracted | Quarantine]]:
    """The waiting files (emptied) with their sizes and extracted texts, in order. Each file's bytes are let go as
    soon as its text is extracted: a long file is not held as bytes through its normalisation, nor while the next
    file is made a document."""
    waiting.reverse()
    while waiting:
        ref, sha256, fmt, data = waiting.pop()
        size = len(data)
        with timer("extract"):
            extracted = stages.extract_text(data, fmt, budgets)
        del data
        yield ref, sha256, fmt, size, extracted


def process_batch(store: Store, source: Source, run: RunContext, index: int, refs: list[FileRef], *,
                  known: Container[str] = frozenset(), options: IngestOptions = IngestOptions(),
                  descriptions: Descriptions = Descriptions(), claims: DocumentClaims | None = None) -> BatchSummary:
    """Ingest one batch; its parts are in the store (uncommitted) when this returns.

    claims: the run's DocumentClaims, shared by its batches: a document an earlier batch publishes becomes a
    duplicate in this batch's parts at once (without, the commit unpublishes it: the same outcome, dearer).
    """
    return BatchProcessor(store, source, run, index, known=known, options=options, descriptions=descriptions,
                          claims=claims).process(refs)
