"""The JSON Schemas are the contract of the published data; the Arrow schemas must say the same."""

import os

import pyarrow as pa
import pytest

from archive.errors import StoreError
from archive.records import DATASETS
from archive.storage import object_key, validate_key
from archive.validate import problems, schema, schema_id

SHA = "a" * 64
GOOD_DOCUMENT = {
    "doc_id": SHA, "text_sha256": "b" * 64, "run_id": "20261122T153000Z-3f9a", "collection": None,
    "source_path": "letters/a.txt", "object_key": object_key(SHA), "media_type": "text/plain", "puid": "x-fmt/111",
    "encoding": "utf-8", "extractor": "charset-normalizer", "extractor_version": "3.5.2", "title": "A letter",
    "date": "1923-04-17", "date_text": "1923-04-17", "creator": None, "language": "en", "publisher": None,
    "source": None, "rights": None, "description": None, "subject": None, "identifier": None, "type": None,
    "char_count": 5, "word_count": 1, "ocr_confidence": None, "dictionary_share": None, "low_ocr_quality": None,
    "ocr_key": None, "page_image_sha256": None, "text": "Hello",
    "ingested_at": "2026-11-22T15:30:00.000001Z",
}
OCR_DOCUMENT = {**GOOD_DOCUMENT, "media_type": "image/png", "puid": "fmt/11", "encoding": None,
                "extractor": "tesseract", "extractor_version": "5.3.0", "ocr_confidence": 0.94,
                "dictionary_share": 0.99, "low_ocr_quality": False, "ocr_key": object_key("c" * 64)}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_arrow_and_json_schema_name_the_same_fields_with_the_same_nullability(dataset):
    arrow, kind = DATASETS[dataset]
    json_schema = schema(kind)
    assert set(json_schema["properties"]) == set(arrow.names)
    assert set(json_schema["required"]) == set(arrow.names)
    for field in arrow:
        prop = json_schema["properties"][field.name]
        json_nullable = _allows_null(prop)
        assert json_nullable == field.nullable, field.name


def _allows_null(prop: dict) -> bool:
    if "$ref" in prop:
        uri, _, pointer = prop["$ref"].partition("#/$defs/")
        assert uri == schema_id("document").replace("document", "common"), uri
        return _allows_null(_common_def(pointer))
    if "anyOf" in prop:
        return any(_allows_null(p) for p in prop["anyOf"])
    types = prop.get("type")
    return types == "null" or (isinstance(types, list) and "null" in types)


def _common_def(name: str) -> dict:
    from archive.validate import _schemas

    return _schemas()["common"]["$defs"][name]


def test_a_good_document_validates():
    assert problems("document", GOOD_DOCUMENT) == []
    assert problems("document", OCR_DOCUMENT) == []


@pytest.mark.parametrize("field, value", [("ocr_confidence", 1.5), ("dictionary_share", -0.1),
                                          ("low_ocr_quality", "yes"), ("ocr_key", "objects/alto.xml")])
def test_ocr_quality_fields_are_checked(field, value):
    found = problems("document", {**OCR_DOCUMENT, field: value})
    assert found and {p.path for p in found} == {f"$.{field}"}


@pytest.mark.parametrize("field, value, path, words", [
    ("date", "2021-13-45", "$.date", "is not a 'date'"),
    ("doc_id", "xyz", "$.doc_id", "does not match"),
    ("text", "   ", "$.text", "does not match"),
    ("char_count", 0, "$.char_count", "less than the minimum"),
    ("language", "English", "$.language", "does not match"),
    ("run_id", "yesterday", "$.run_id", "does not match"),
])
def test_a_bad_document_is_named_by_path_and_rule(field, value, path, words):
    found = problems("document", {**GOOD_DOCUMENT, field: value})
    assert found, "the bad value must be caught"
    assert found[0].path == path
    assert words in found[0].message


def test_unknown_fields_are_refused():
    found = problems("document", {**GOOD_DOCUMENT, "colour": "blue"})
    assert found and "colour" in found[0].message


def test_file_rows_need_a_reason_when_quarantined_or_skipped():
    row = {"run_id": "20261122T153000Z-3f9a", "path": "a", "size": 1, "sha256": SHA, "object_key": object_key(SHA),
           "media_type": "text/plain", "puid": None, "outcome": "quarantine", "reason": None, "detail": None,
           "doc_id": None, "seen_at": "2026-11-22T15:30:00Z", "container_sha256": None}
    assert problems("file", row)
    assert problems("file", {**row, "reason": "empty", "detail": "the file has no bytes"}) == []
    assert problems("file", {**row, "reason": "made-up", "detail": "x"})
    assert problems("file", {**row, "outcome": "document", "doc_id": None})


def test_schema_ids_are_versioned():
    for kind in ("document", "file", "quarantine", "event", "manifest", "reuse"):
        assert schema_id(kind).endswith(":1.0.0")


def test_store_keys():
    assert object_key(SHA) == f"objects/sha256/aa/aa/{SHA}"
    with pytest.raises(ValueError):
        object_key("../../etc/passwd")
    for bad in ("../x", "a//b", "/abs", "a/./b", "a b", ""):
        with pytest.raises(StoreError):
            validate_key(bad)
    assert validate_key("datasets/documents/run=20261122T153000Z-3f9a/part-00000.parquet")


def test_arrow_types_for_dates_and_times():
    assert DATASETS["documents"][0].field("date").type == pa.date32()
    assert DATASETS["events"][0].field("event_time").type == pa.timestamp("us", tz="UTC")


def test_event_ids_are_random_version_4_uuids():
    import uuid

    from archive.provenance import random_uuid

    ids = [random_uuid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # Every bit outside the version and variant varies.
    bits = [uuid.UUID(text).int for text in ids]
    fixed = ~(0xF << 76 | 0x3 << 62) & ((1 << 128) - 1)
    assert all(any(value >> i & 1 for value in bits) and not all(value >> i & 1 for value in bits)
               for i in range(128) if fixed >> i & 1)


def test_event_ids_drawn_ahead_are_never_handed_out_twice_across_threads_or_a_fork():
    import threading

    from archive.provenance import random_uuid

    random_uuid()  # (this process has random bytes drawn ahead now)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not be the ones its parent still holds
        try:
            os.write(write_end, "\n".join(random_uuid() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        child = stream.read().split("\n")
    os.waitpid(pid, 0)
    parent = [random_uuid() for _ in range(50)]
    by_thread: list[list[str]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=lambda ids: ids.extend(random_uuid() for _ in range(500)), args=(ids,))
               for ids in by_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = child + parent + [i for ids in by_thread for i in ids]
    assert len(child) == 50 and len(set(every)) == len(every) == 2100
