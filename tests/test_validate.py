"""The fast verdict (one property at a time, short values remembered) is the whole-record validator's verdict."""

import copy
import itertools

import pytest

from archive import validate
from archive.ingest import BatchProcessor
from archive.provenance import RunContext, new_run_id
from archive.source import open_source
from archive.store import open_store

# Values that break some property of some schema, and some that fit one.
CANDIDATES = [None, "", " ", "x", "ab c", "a" * 64, "A" * 64, "a" * 300, 0, -1, 1, 2 ** 40, True, False, 1.5, [], {}, ["x"],
              "2021-13-45", "2021-01-20", "2021-01", "2026-11-22T15:30:00Z", "not a time", "en", "English",
              "text/plain", "x-fmt/111", "document", "duplicate", "quarantine", "skipped", "corrupt", "empty",
              "objects/sha256/aa/aa/" + "a" * 64, "20261122T153000Z-3f9a"]


@pytest.fixture(scope="module")
def records(tmp_path_factory, seeds_dir):
    """Real rows of every kind a batch writes: the seeds, an empty file, bytes that are no text, a duplicate."""
    source_dir = tmp_path_factory.mktemp("source")
    for path in seeds_dir.iterdir():
        (source_dir / path.name).write_bytes(path.read_bytes())
    first = next(p for p in sorted(seeds_dir.iterdir()) if p.is_file())
    (source_dir / "copy-of-first").write_bytes(first.read_bytes())
    (source_dir / "empty.txt").write_bytes(b"")
    (source_dir / "noise.bin").write_bytes(bytes(range(256)) * 8)
    source = open_source(source_dir)
    run = RunContext(new_run_id(), "validate-test", str(source_dir))
    batch = BatchProcessor(open_store(tmp_path_factory.mktemp("store")), source, run, 0)
    batch.process(sorted(source.iter_files(), key=lambda ref: ref.path))
    found = {"document": batch.documents, "file": batch.files, "quarantine": batch.quarantine, "event": batch.events}
    assert all(found.values()), {kind: len(rows) for kind, rows in found.items()}
    assert {row["outcome"] for row in batch.files} >= {"document", "duplicate", "quarantine"}
    return found


def variants(record: dict):
    """The record with each property given each candidate value, removed, and with an unknown property added."""
    yield record
    own_values = list(record.values())
    for name in record:
        for value in itertools.chain(CANDIDATES, own_values):
            yield {**record, name: copy.deepcopy(value)}
        yield {key: value for key, value in record.items() if key != name}
    yield {**record, "unknown": "x"}


@pytest.mark.parametrize("kind", ["document", "file", "quarantine", "event"])
def test_the_split_verdict_is_the_whole_record_verdict(records, kind):
    assert validate._split(kind) is not None, f"the {kind} schema is validated whole"
    whole = validate.validator(kind)
    checked = valid = 0
    for _ in range(2):  # the second time, from remembered verdicts
        for record in records[kind][:4]:
            for variant in variants(record):
                verdict = whole.is_valid(variant)
                assert validate.is_valid(kind, variant) == verdict, variant
                checked += 1
                valid += verdict
    assert 0 < valid < checked  # both verdicts were given


def test_records_that_are_not_objects_are_invalid():
    for value in (None, [], "x", 1):
        assert validate.is_valid("document", value) is False
        assert validate.problems("document", value)


def test_schemas_with_other_keywords_are_validated_whole():
    assert validate._SplitSchema.of({"type": "object", "properties": {"a": {"type": "string"}},
                                     "anyOf": [{"required": ["a"]}]}) is None
    assert validate._SplitSchema.of({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}},
                                     "$defs": {"x": {"type": "string"}}}) is None
    assert validate._SplitSchema.of({"type": "object", "additionalProperties": {"type": "string"}}) is None
    assert validate._SplitSchema.of({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}) is not None


def test_values_that_do_not_repeat_are_not_remembered_and_still_checked(records):
    import hashlib

    split = validate._SplitSchema.of(validate._inline_common(validate.schema("document")))
    whole = validate.validator("document")
    base = records["document"][0]
    for i in range(validate._MEMO_TRIAL * 3):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        good = {**base, "doc_id": sha, "title": f"Title {i}", "char_count": i + 1}
        bad = {**good, "doc_id": sha[:-1] + "X"}  # (a fresh wrong value each time)
        assert split.is_valid(good) and whole.is_valid(good)
        assert not split.is_valid(bad) and not whole.is_valid(bad)
    assert split.properties["doc_id"].verdicts is None  # ids stopped being remembered...
    assert split.properties["run_id"].verdicts  # ...values that repeat did not
    assert all(p.verdicts is None or len(p.verdicts) <= validate._MEMO_MAX_ENTRIES for p in split.properties.values())
