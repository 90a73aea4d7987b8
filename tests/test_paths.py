"""Paths as records show them: lossless (names that differ as bytes stay different, and give their bytes back),
readable, one language for local and S3 sources; and exports that never write two paths to one file."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.bag import RENAMED_TAG_FILE, UNSAFE_NAMES, BagNames, _write_original, export_bag
from archive.ingest import commit_run, process_batch
from archive.provenance import RunContext, new_run_id
from archive.read import open_dataset
from archive.sources import LocalSource, display_path, path_bytes
from archive.storage import LocalStore

BYTE_NAME = b"report-\xff.txt"  # a byte that is not UTF-8
BACKSLASH_NAME = b"report-\\xff.txt"  # a backslash, then "xff"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_display_path_is_lossless_on_any_bytes_and_its_inverse_gives_them_back(name):
    shown = display_path(os.fsdecode(name))
    assert path_bytes(shown) == name
    shown.encode("utf-8")  # valid text: a surrogate never reaches a record


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\\")))
def test_text_without_a_backslash_is_shown_as_it_is(text):
    assert display_path(text) == text


def test_the_two_names_the_old_form_confused_are_shown_apart():
    assert display_path(os.fsdecode(BYTE_NAME)) == "report-\\xff.txt"
    assert display_path(os.fsdecode(BACKSLASH_NAME)) == "report-\\\\xff.txt"
    assert display_path(os.fsdecode("café/ñ.txt".encode() + b"\xe9")) == "café/ñ.txt\\xe9"
    assert path_bytes("report-\\xff.txt") == BYTE_NAME and path_bytes("report-\\\\xff.txt") == BACKSLASH_NAME


@pytest.fixture
def confusable(tmp_path):
    """A committed run of a source holding both names, and a name too long for a bag once shown."""
    source = tmp_path / "source"
    source.mkdir()
    texts = {BYTE_NAME: "The report whose name has a Latin-1 byte.",
             BACKSLASH_NAME: "The report whose name has a backslash in it.",
             b"\xe9" * 200 + b".txt": "A report with a long Latin-1 name, four characters a byte once shown."}
    for name, text in texts.items():
        with open(os.path.join(os.fsencode(source), name), "w") as f:
            f.write(text)
    store = LocalStore(tmp_path / "store")
    src = LocalSource(source)
    run = RunContext(new_run_id(), "paths", src.url)
    summary = process_batch(store, src, run, 0, sorted(src.iter_files(), key=lambda ref: ref.path))
    commit_run(store, run, [summary], parameters={}, warnings=[])
    return store, run.run_id, texts


def test_names_that_differ_as_bytes_are_recorded_apart_and_bagged_apart(confusable, tmp_path):
    import bagit

    store, run_id, texts = confusable
    files = {row["path"]: row for row in open_dataset(str(store.root), "files").to_table().to_pylist()}
    assert {path_bytes(path) for path in files} == set(texts)  # each recorded path gives its name back
    documents = {d["source_path"]: d["text"] for d in open_dataset(str(store.root), "documents").to_table().to_pylist()}
    for name, text in texts.items():
        assert documents[display_path(os.fsdecode(name))] == text

    out = tmp_path / "bag"
    result = export_bag(store, run_id, out)
    assert result["files"] == 3
    assert (out / "data" / "objects" / "report-\\xff.txt").read_text() == texts[BYTE_NAME]
    assert (out / "data" / "objects" / "report-\\\\xff.txt").read_text() == texts[BACKSLASH_NAME]
    # The long name cannot be a file name in the bag (1,000 characters shown): it is under a name of its own,
    # said in the result and in a tag file.
    long = display_path(os.fsdecode(b"\xe9" * 200 + b".txt"))
    sha256 = hashlib.sha256(texts[b"\xe9" * 200 + b".txt"].encode()).hexdigest()
    assert result["renamed"] == {long: f"{UNSAFE_NAMES}/{sha256}"}
    assert json.loads((out / RENAMED_TAG_FILE).read_text(encoding="utf-8")) == result["renamed"]
    assert (out / "data" / "objects" / UNSAFE_NAMES / sha256).read_text() == texts[b"\xe9" * 200 + b".txt"]
    bagit.Bag(str(out)).validate()


def test_bag_names_never_give_two_paths_one_file():
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    rows = [
        ("../etc/passwd", a),  # could leave the bag
        ("/abs.txt", a),  # could leave the bag, same bytes as the one before
        (f"{UNSAFE_NAMES}/{a}", c),  # a real path that looks like a name for an unsafe one
        ("dir", b),  # a file where another path needs a folder
        ("dir/file.txt", b),
        ("dir//file.txt", c),  # would land on dir/file.txt
        ("./x.txt", c),  # would land on x.txt
        ("x.txt", c),
        ("x.txt", c),  # the same path again
        (UNSAFE_NAMES, a),  # a file where the unsafe names need their folder
    ]
    names = BagNames(rows)
    assert names.names == [
        f"{UNSAFE_NAMES}/{a}-2",
        f"{UNSAFE_NAMES}/{a}-3",
        f"{UNSAFE_NAMES}/{a}",  # a real path keeps its name; the generated ones go round it
        f"{UNSAFE_NAMES}/{b}",
        "dir/file.txt",
        f"{UNSAFE_NAMES}/{c}",
        f"{UNSAFE_NAMES}/{c}-2",
        "x.txt",
        f"{UNSAFE_NAMES}/{c}-3",
        f"{UNSAFE_NAMES}/{a}-4",
    ]
    assert len(set(names.names)) == len(rows)
    assert names.renamed["../etc/passwd"] == f"{UNSAFE_NAMES}/{a}-2" and "dir/file.txt" not in names.renamed
    # No name is a folder of another.
    for name in names.names:
        assert not any(other.startswith(name + "/") for other in names.names)


def test_an_original_is_never_written_over_another_file(tmp_path):
    class Store:
        def open_read(self, key):
            import io

            return io.BytesIO(b"second")

    (tmp_path / "taken.txt").write_bytes(b"first")
    assert _write_original(Store(), "k", tmp_path / "taken.txt") is None
    assert (tmp_path / "taken.txt").read_bytes() == b"first"
    assert _write_original(Store(), "k", tmp_path / "taken.txt" / "below") is None  # a file where a folder must be
    assert _write_original(Store(), "k", tmp_path / ("n" * 300)) is None  # too long a name
    assert _write_original(Store(), "k", tmp_path / "new" / "file.txt") == hashlib.sha256(b"second").hexdigest()
    assert (tmp_path / "new" / "file.txt").read_bytes() == b"second"


def test_an_s3_key_is_read_as_it_is_and_recorded_in_the_same_form(s3_server):
    from archive.sources import S3Source

    bucket = s3_server.create_bucket()
    client = s3_server.client()
    for key, body in [("batch/report-\\xff.txt", b"backslash"), ("batch/report-ÿ.txt", b"y with diaeresis")]:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    source = S3Source(f"s3://{bucket}/batch")
    refs = {ref.path: ref for ref in source.iter_files()}
    assert set(refs) == {"report-\\\\xff.txt", "report-ÿ.txt"}
    assert refs["report-\\\\xff.txt"].location == "report-\\xff.txt"  # the key itself, to read it by
    assert source.read(refs["report-\\\\xff.txt"]) == b"backslash"
    assert source.read(refs["report-ÿ.txt"]) == b"y with diaeresis"
    assert {path_bytes(path).decode("utf-8") for path in refs} == {"report-\\xff.txt", "report-ÿ.txt"}
