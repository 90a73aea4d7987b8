"""One long text: a 200 MB text file of one line, ingested with the default settings by the archive command, is
published, and shares a passage with a letter quoting it, with no process of the command above 1 GiB at its
peak; and the pieces that keep a long text's copies few, each against the plain computation it stands for."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import unicodedata
from unittest import mock

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive import normalise, publish, records
from archive.describe import MAX_TITLE_CHARS, _first_line, count_words
from archive.extract import text as plain_text
from archive.fixity import text_sha256
from archive.publish import committed_manifests, write_table_part
from archive.read import open_dataset
from archive.records import to_table
from archive.reuse import ReuseParams
from archive.storage import LocalStore

SIZE = 200_000_000  # bytes of the long file
LIMIT_MIB = 1024
QUOTED = 2_000  # characters of its start that the letter quotes

# The wrapper the command runs under: ru_maxrss of RUSAGE_CHILDREN is the peak RSS of the largest process among
# the command and every process it started and waited for (the batches' workers, the claims' manager).
WRAPPER = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:],
                      "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


def write_words(path, size: int, seed: int = 7) -> None:
    """size bytes of made-up words of 2 to 4 syllables, one space between them, on one line."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "de", "po", "an", "el", "ish", "or", "um", "tre"]
    words = sorted({"".join(rng.choice(syllables, int(rng.integers(2, 5)))) + " " for _ in range(6000)})
    lengths = np.array([len(w) for w in words])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    letters = np.frombuffer("".join(words).encode(), dtype=np.uint8)
    written = 0
    with open(path, "wb") as out:
        while written < size:
            picks = rng.integers(0, len(words), 1 << 20)
            ends = np.cumsum(lengths[picks])
            at = np.repeat(starts[picks] - (ends - lengths[picks]), lengths[picks]) + np.arange(ends[-1])
            chunk = letters[at].tobytes()[:size - written]
            if written + len(chunk) == size:  # the end: no space after the last word
                chunk = chunk.rstrip(b" ").ljust(len(chunk), b"x")
            out.write(chunk)
            written += len(chunk)


@pytest.mark.cli
def test_a_200_mb_text_of_one_line_is_published_with_every_process_of_the_command_under_1_gib(prefect_harness,
                                                                                            tmp_path):
    from prefect.settings import PREFECT_API_URL

    source = tmp_path / "source"
    source.mkdir()
    long_file = source / "long.txt"
    write_words(long_file, SIZE)
    digest = hashlib.sha256()
    with open(long_file, "rb") as stream:
        head = stream.read(QUOTED).rsplit(b" ", 1)[0]  # (whole words)
        stream.seek(0)
        while chunk := stream.read(8 << 20):
            digest.update(chunk)
    (source / "letter.txt").write_bytes(b"To the editor.\n\nAs the report says: " + head + b"\n\nA reader.\n")
    dest = tmp_path / "store"

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "archive_flows.cli", "ingest",
                           str(source), "--dest", str(dest), "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    wrapped = json.loads(done.stdout)
    assert wrapped["returncode"] == 0, wrapped["stderr"]
    peak_mib = wrapped["peak_kib"] / 1024
    assert peak_mib < LIMIT_MIB, f"a process of the command peaked at {peak_mib:.0f} MiB"
    result = json.loads(wrapped["stdout"])
    assert result["counts"] == {"files": 2, "documents": 2, "duplicates": 0, "quarantined": 0, "skipped": 0,
                                "updated": 0}

    store = LocalStore(dest)
    (manifest,) = committed_manifests(store)
    # Reuse ran in its bounded form: the long text was searched in its first max_text_chars characters, which
    # hold the passage the letter quotes.
    assert manifest["parameters"]["reuse"]["max_text_chars"] == ReuseParams().max_text_chars < SIZE
    assert manifest["reuse"]["texts_cut"] == 1 and manifest["reuse"]["pairs"] == 1
    documents = open_dataset(store, "documents").to_table(columns=["doc_id", "char_count", "text_sha256"])
    long_document = documents.filter(pc.equal(documents["char_count"], SIZE)).to_pylist()
    assert [(d["doc_id"], d["text_sha256"]) for d in long_document] == [(digest.hexdigest(), digest.hexdigest())]
    (row,) = open_dataset(store, "reuse").to_table().to_pylist()
    side = "a" if row["doc_id_a"] == digest.hexdigest() else "b"
    assert row[f"start_{side}"] == 0 and row["passage_text"].encode() == head
    print(f"200 MB text of one line: peak RSS {peak_mib:.0f} MiB (the largest process), "
          f"{result['seconds']:.1f} s in the flow")


# -- the pieces, against what they stand for --------------------------------------

EDGES = ("aeoAEO \n-\t\x0b\xa0\u2028\u200b\u00ad\x07\u00e9\u00c5\u2014\u0301\u0308\u0327\u0345\u2126\u212b\u037e"
         "\u09c7\u09be\u1100\u1161\u11a8\uac00\uf900\u3099\u304b\U0001d157\U0001d165")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet=EDGES, max_size=40), st.text(max_size=40)))
def test_normalising_a_few_characters_at_a_time_gives_what_one_lookup_gave(text):
    whole = normalise.normalise_text(text)
    with mock.patch.object(normalise, "SCAN_CHARS", 3):
        assert normalise.normalise_text(text) == whole
        assert normalise.nfc(text) == unicodedata.normalize("NFC", text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n\x00\x07\x1b\x7f\x85\x9f\u00e9\u00c2", max_size=30))
def test_stray_controls_counted_in_pieces_are_the_patterns_count(text):
    with mock.patch.object(plain_text, "CONTROLS_CHARS", 2):
        assert plain_text.stray_controls(text) == len(plain_text._STRAY_CONTROLS.findall(text))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_text_sha256_in_pieces_is_the_sha256_of_the_utf8_bytes(text):
    text = text.encode("utf-8", "replace").decode("utf-8")  # (no lone surrogates: they have no UTF-8)
    with mock.patch("archive.fixity.TEXT_CHUNK", 3):
        assert text_sha256(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()


_AFTER_SPACE = re.compile(r" [^\w\s]+(?=[ \n])")
_AFTER_NEWLINE = re.compile(r"\n[^\w\s]+(?=[ \n])")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab. -\n,é", max_size=30), st.integers(0, 5))
def test_words_and_the_title_line_are_found_without_copying_the_text(text, start):
    expected = 0
    if text:  # (the count's definition: tokens, less those of punctuation only, found in the text padded)
        padded = f" {text} "
        expected = (text.count(" ") + text.count("\n") - text.count("\n\n") + 1
                    - len(_AFTER_SPACE.findall(padded)) - len(_AFTER_NEWLINE.findall(padded)))
    assert count_words(text) == expected
    line = text[start:].lstrip().split("\n", 1)[0].strip()
    assert _first_line(text, start) == (line if len(line) <= MAX_TITLE_CHARS else "")


def test_a_long_title_line_is_no_title_and_is_not_copied():
    assert _first_line("  x" * 100 + "\nsecond", 0) == ""
    assert _first_line("\n\n  Title  \nbody", 0) == "Title"


def test_a_text_column_is_made_from_the_texts_bytes_in_chunks_a_long_text_alone():
    rows = [{"passage_text": text} for text in ("short", "é" * 20, "", "x" * 100, "tail")]
    for row in rows:
        row.update(run_id="r", doc_id_a="a", doc_id_b="b", text_sha256_a=None, text_sha256_b=None,
                   start_a=0, end_a=1, start_b=0, end_b=1,
                   passage_words=1, similarity=1.0)
    with mock.patch.object(records, "TEXT_CHUNK_BYTES", 64):
        table = to_table("reuse", rows)
    column = table.column("passage_text")
    assert column.to_pylist() == [row["passage_text"] for row in rows]
    assert [len(chunk) for chunk in column.chunks] == [3, 1, 1]  # the 100-byte text is a chunk of its own


def test_whole_texts_are_written_plain_without_statistics_and_the_same_through_a_temporary_file(tmp_path):
    rows = [{"passage_text": f"passage {i} " * 50, "run_id": "r", "doc_id_a": "a", "doc_id_b": f"b{i}",
             "text_sha256_a": None, "text_sha256_b": None,
             "start_a": i, "end_a": i + 1, "start_b": 0, "end_b": 1, "passage_words": 2, "similarity": 0.5}
            for i in range(20)]
    table = to_table("reuse", rows)
    store = LocalStore(tmp_path / "store")
    in_memory = write_table_part(store, "reuse", "datasets/reuse/run=r/part-00000.parquet", table)
    with mock.patch.object(publish, "SPOOL_PART_BYTES", 0):
        spooled = write_table_part(store, "reuse", "datasets/reuse/run=r/part-00001.parquet", table)
    assert (spooled.sha256, spooled.bytes, spooled.rows) == (in_memory.sha256, in_memory.bytes, 20)
    metadata = pq.ParquetFile(io.BytesIO(store.get_bytes(in_memory.key))).metadata.row_group(0)
    columns = {metadata.column(i).path_in_schema: metadata.column(i) for i in range(metadata.num_columns)}
    assert not columns["passage_text"].is_stats_set and not columns["passage_text"].has_dictionary_page
    assert "PLAIN" in columns["passage_text"].encodings
    assert columns["doc_id_b"].is_stats_set and columns["doc_id_b"].has_dictionary_page
