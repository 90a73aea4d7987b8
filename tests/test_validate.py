"""The fast verdict (one property at a time, short values remembered) is the whole-record validator's verdict."""

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from archive import validate
from archive.ingest import BatchProcessor
from archive.provenance import RunContext, new_run_id
from archive.sources import open_source
from archive.storage import open_store

# Values that break some property of some schema, and some that fit one.
CANDIDATES = [None, "", " ", "x", "ab c", "a" * 64, "A" * 64, "a" * 300,
              0, -1, 1, 2 ** 40, True, False, 1.5, [], {}, ["x"],
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
    found = {}
    write_parts = batch.rows.write_parts

    def keep_rows(*args):  # (as the batch writes them: write_parts hands the documents rows over to their table)
        found.update(document=list(batch.rows.documents), file=batch.rows.files, quarantine=batch.rows.quarantine,
                     event=batch.rows.events)
        return write_parts(*args)

    batch.rows.write_parts = keep_rows
    batch.process(sorted(source.iter_files(), key=lambda ref: ref.path))
    assert all(found.values()), {kind: len(rows) for kind, rows in found.items()}
    assert {row["outcome"] for row in batch.rows.files} >= {"document", "duplicate", "quarantine"}
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
    assert validate._SplitSchema.of({"type": "object", "properties": {"a": {"type": "string"}},
                                     "required": ["a"]}) is not None


def test_values_that_do_not_repeat_are_not_remembered_and_still_checked():
    """Values the simple check leaves to jsonschema are remembered while they repeat."""
    prop = validate._Property({"type": "string", "not": {"pattern": "X"}})
    assert prop.simple is None
    for i in range(validate._MEMO_TRIAL * 3):
        assert prop.is_valid(f"value {i}") and not prop.is_valid(f"value {i} X")
    assert prop.verdicts is None  # fresh values stopped being remembered, and were still checked
    repeating = validate._Property({"type": "string", "not": {"pattern": "X"}})
    for i in range(validate._MEMO_TRIAL * 3):
        assert repeating.is_valid(f"value {i % 3}") and not repeating.is_valid("X")
    assert repeating.verdicts and len(repeating.verdicts) == 4 and repeating.hits > validate._MEMO_TRIAL


def _property_schemas():
    """Every property subschema of the split record schemas, conditions' included."""
    found = []

    def walk(split, kind):
        for name, prop in split.properties.items():
            found.append((f"{kind}.{name}", prop.checker.schema))
        for parts in split.conditions:
            for part in parts:
                if part is not None:
                    walk(part, kind)

    for kind in validate.KINDS:
        split = validate._split(kind)
        if split is not None:
            walk(split, kind)
    return found


PROPERTY_SCHEMAS = _property_schemas()
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-3, max_value=2 ** 70), st.floats(allow_nan=False),
    st.sampled_from([1.0, 0.0, -0.0, 2.0 ** 60]), st.text(max_size=80), st.sampled_from(CANDIDATES),
    st.from_regex(r"[0-9a-f]{60,66}", fullmatch=True), st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.datetimes().map(lambda t: t.isoformat() + "Z"), st.lists(st.integers(), max_size=2))


def test_plain_properties_are_checked_without_jsonschema_s_walk():
    """Every property of the rows a batch writes for each file takes the simple check."""
    for kind in ("document", "file"):
        for name, prop in validate._split(kind).properties.items():
            assert prop.simple is not None, f"{kind}.{name}"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PROPERTY_SCHEMAS), VALUES)
def test_the_simple_check_gives_jsonschema_s_verdict(named, value):
    name, subschema = named
    check = validate._simple_check(subschema)
    if check is None:
        return
    verdict = check(value)
    if verdict is not None:
        whole = Draft202012Validator(subschema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert verdict == whole.is_valid(value), (name, subschema, value)


def test_the_simple_check_covers_the_keywords_it_reads():
    check = validate._simple_check
    assert check({"type": "string", "pattern": "^a", "minLength": 2, "maxLength": 3})("ab") is True
    assert check({"type": "string", "pattern": "^a", "minLength": 2, "maxLength": 3})("abcd") is False
    assert check({"type": "string", "pattern": "^a"})("ba") is False
    assert check({"type": ["integer", "null"], "minimum": 0})(None) is True
    assert check({"type": ["integer", "null"], "minimum": 0})(-1) is False
    assert check({"type": "integer", "maximum": 3})(4) is False
    assert check({"type": "integer"})(True) is False  # (a bool is no integer to jsonschema)
    assert check({"type": ["boolean", "null"]})(False) is True and check({"type": "boolean"})(0) is False
    assert check({"type": "number", "minimum": 0, "maximum": 1})(0.5) is True
    assert check({"type": "number", "minimum": 0, "maximum": 1})(1.5) is False
    assert check({"type": "number"})(2) is True and check({"type": "integer"})(3.0) is None  # (3.0: jsonschema's)
    assert check({"type": "string", "format": "date"})("2021-02-30") is False
    assert check({"enum": ["a", "b"]})("c") is False and check({"enum": ["a", "b"]})(1) is None
    assert check({"anyOf": [{"type": "string"}, {"type": "null"}]})(None) is True
    assert (check({"const": "a"})("a") is True and check({"const": "a"})("b") is False
            and check({"const": "a"})(None) is None)
    assert check({"const": 1}) is None and check({"type": "array"}) is None and check({"not": {}}) is None


def test_record_times_are_iso_8601_utc_with_microseconds_across_second_boundaries(monkeypatch):
    import datetime as dt

    from archive import records

    for ns in (1_764_697_999_999_999_000, 1_764_698_000_000_000_000, 1_764_698_000_000_001_999,
               951_782_400_000_000_000):
        monkeypatch.setattr(records.time, "time_ns", lambda ns=ns: ns)
        expected = dt.datetime.fromtimestamp(ns // 1000 / 1e6, dt.timezone.utc)
        assert records.utc_now() == expected.isoformat(timespec="microseconds").replace("+00:00", "Z")
    monkeypatch.undo()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    now = records.utc_now()
    assert validate._simple_check({"type": "string", "format": "date-time"})(now)
    assert before <= dt.datetime.fromisoformat(now.replace("Z", "+00:00")) <= dt.datetime.now(dt.timezone.utc)
