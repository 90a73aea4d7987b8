"""The pure stages that make a file a document: each returns its result or a Quarantine(reason, detail).

In the manner of datatrove's filters, a stage never drops a file silently: what it cannot make a document it
answers with a reason code and a detail a person can act on, and the batch keeps both as a quarantine row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..describe import Description
from ..errors import StoreError
from ..extract import Extracted, ExtractionError, extract
from ..extract.budget import Budgets
from ..fixity import text_sha256
from ..identify import Format
from ..normalise import ligature_count, normalise_text
from ..records import utc_now
from ..storage import object_key
from ..validate import describe_problems, problems, schema_id

DC_FIELDS = ("title", "date", "creator", "language", "publisher", "source", "rights", "description", "subject",
             "identifier", "type")


@dataclass(frozen=True)
class Quarantine:
    """Why a file is kept but made no document: a reason code and a detail naming what failed."""

    reason: str
    detail: str


def extract_text(data: bytes, fmt: Format, budgets: Budgets | None = None) -> Extracted | Quarantine:
    """The text of the bytes, by the extractor for their format, within budgets (over them: too-costly)."""
    try:
        return extract(data, fmt, budgets)
    except ExtractionError as exc:
        return Quarantine(exc.reason, exc.detail)
    except StoreError:  # not the file's fault
        raise
    except Exception as exc:  # noqa: BLE001 - third-party parsers fail in any way on hostile bytes
        return Quarantine("corrupt", f"the {fmt.media_type} extractor failed: {type(exc).__name__}: {exc}")


def normalised(extracted: Extracted) -> tuple[Extracted, str] | Quarantine:
    """The extracted text normalised (line endings, NFC, compatibility ligatures, spacing, line-break hyphens); the
    raw text is dropped."""
    text = normalise_text(extracted.text)
    if not text:
        return Quarantine("no-text", f"decoded as {extracted.encoding or extracted.extractor} but only whitespace "
                                     "or invisible characters remain")
    folded = ligature_count(extracted.text)
    notes = extracted.notes + [f"{folded} compatibility ligature{'s' if folded > 1 else ''} (\ufb01, \ufb02...) "
                               "folded into their letters"] if folded else extracted.notes
    return dataclasses.replace(extracted, text="", notes=notes), text


def normalisation_detail(extracted: Extracted, text: str) -> str:
    """The normalisation event's detail: how the text was had and what was done to it."""
    notes = "; ".join(extracted.notes)
    return (f"text extracted{' as ' + extracted.encoding if extracted.encoding else ''}"
            f"{' (' + notes + ')' if notes else ''}; normalised (line endings, NFC, compatibility ligatures, spacing, "
            "line-break hyphens): "
            f"{len(text)} characters")


def dublin_core(description: Description, extracted: Extracted,
                sidecar: dict[str, str] | None) -> tuple[dict[str, str | None], dict[str, str]]:
    """(the document's Dublin Core values, where each came from): the text, then the format's own metadata,
    then the sidecar row, each later source winning. date is a full calendar date; date_text as stated."""
    values: dict[str, str | None] = {name: None for name in DC_FIELDS}
    values.update(title=description.title, date=description.date, language=description.language)
    origin = {name: "text" for name, v in values.items() if v is not None}
    for name, value in extracted.metadata.items():
        if name in values and value:
            values[name], origin[name] = value, extracted.extractor
    if origin.get("title") == "text" and extracted.ocr is not None and extracted.ocr.low_pages:
        values["title"] = None  # a line of text OCR'd below the quality thresholds is no title
        del origin["title"]
    for name, value in (sidecar or {}).items():
        if name in values and value:
            values[name], origin[name] = value, "metadata.csv"
    date_text = values.pop("date")
    values["date"] = date_text if date_text and len(date_text) == 10 else None
    values["date_text"] = date_text
    return values, origin


def document_record(*, sha256: str, run_id: str, collection: str | None, path: str, fmt: Format,
                    extracted: Extracted, text: str, description: Description, values: dict,
                    ocr_key: str | None = None, page_image_sha256: str | None = None) -> dict:
    """The documents row of a file; ocr_key: where the ALTO of its OCR is kept, if it has one; page_image_sha256:
    the page image delivered with a vendor's OCR (ingest/pages.py)."""
    ocr = extracted.ocr
    return {
        "doc_id": sha256,
        "text_sha256": text_sha256(text),
        "run_id": run_id,
        "collection": collection,
        "source_path": path,
        "object_key": object_key(sha256),
        "media_type": fmt.media_type,
        "puid": fmt.puid,
        "encoding": extracted.encoding,
        "extractor": extracted.extractor,
        "extractor_version": extracted.extractor_version,
        **values,
        "char_count": description.char_count,
        "word_count": description.word_count,
        "ocr_confidence": ocr.confidence if ocr is not None else None,
        "dictionary_share": ocr.dictionary_share if ocr is not None else None,
        "low_ocr_quality": bool(ocr.low_pages) if ocr is not None else None,
        "ocr_key": ocr_key,
        "page_image_sha256": page_image_sha256,
        "text": text,
        "ingested_at": utc_now(),
    }


def invalid_document(document: dict) -> Quarantine | None:
    """A Quarantine naming each JSON path and rule the record breaks (invalid-metadata), or None if it is valid."""
    found = problems("document", document)
    return Quarantine("invalid-metadata", describe_problems(found)) if found else None


def document_schema() -> str:
    return schema_id("document")
