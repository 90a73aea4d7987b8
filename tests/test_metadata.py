"""Sidecar metadata.csv: parsing, Dublin Core validation against the row schema, and every way a row is refused."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from archive.metadata import (
    COLUMNS,
    MAX_CELL_CHARS,
    SCHEMA_ID,
    SCHEMA_PATH,
    SidecarError,
    load_sidecar,
    normalise_filename,
    row_schema,
)
from tests.formats_util import paragraphs


def csv_bytes(rows: list[list[str]], *, bom: bool = True, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    """A sidecar as a spreadsheet writes one: CRLF line ends, quotes where needed, a UTF-8 BOM."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode(encoding)


HEADER = ["filename", "dc.title", "dc.date", "dc.creator", "dc.language", "dc.source", "dc.description"]


@pytest.fixture(scope="module")
def seed_sidecar(seeds_dir) -> tuple[bytes, dict[str, str]]:
    """A sidecar describing the five seed files, titled by their first lines (quotes, commas and all)."""
    titles = {}
    rows = [HEADER]
    for number, path in enumerate(sorted(seeds_dir.glob("*.txt"))):
        title = paragraphs(path.read_text(encoding="utf-8"))[0][:120]
        titles[path.name] = title
        rows.append(
            [
                f"seeds/{path.name}",
                title,
                f"2021-01-{20 + number}",
                "Anadolu Agency, Ankara",
                "en",
                "https://example.org",
                "Line one\nline two",
            ]
        )
    return csv_bytes(rows), titles


def test_good_rows_from_the_seed_corpus(seed_sidecar):
    data, titles = seed_sidecar
    sidecar = load_sidecar(data, source_name="batch/metadata.csv")
    assert sidecar.problems == []
    assert sidecar.encoding == "utf-8"
    assert sidecar.columns == tuple(HEADER)
    assert sorted(sidecar.rows) == sorted(f"seeds/{name}" for name in titles)
    for number, (name, title) in enumerate(sorted(titles.items())):
        row = sidecar.lookup(f"seeds/{name}")
        assert row is not None and row.line == 2 + 2 * number  # each row spans two lines
        assert row.values["dc.title"] == title
        assert row.dublin_core == {
            "title": title,
            "date": f"2021-01-{20 + number}",
            "creator": "Anadolu Agency, Ankara",
            "language": "en",
            "source": "https://example.org",
            "description": "Line one\nline two",  # a quoted newline is part of the value
        }


def test_lookup_normalises_the_path(seed_sidecar):
    sidecar = load_sidecar(seed_sidecar[0], source_name="metadata.csv")
    name = next(iter(sidecar.rows))
    assert sidecar.lookup("./" + name) is sidecar.lookup(name.replace("/", "\\")) is sidecar.rows[name]
    assert sidecar.lookup("seeds//" + name.split("/")[1]) is sidecar.rows[name]
    assert sidecar.lookup("../" + name) is None
    assert sidecar.lookup("other.txt") is None


def test_unmatched_lists_rows_naming_files_never_seen(seed_sidecar):
    sidecar = load_sidecar(seed_sidecar[0], source_name="metadata.csv")
    names = sorted(sidecar.rows)
    unmatched = sidecar.unmatched(names[:3] + ["seeds/not-in-sidecar.txt"])
    assert [row.filename for row in unmatched] == names[3:]
    assert sidecar.unmatched(names) == []


def test_invalid_date_names_the_column_and_value():
    data = csv_bytes(
        [HEADER[:3], ["a.txt", "Good", "2021-01-20"], ["b.txt", "Bad", "2021-13-45"], ["c.txt", "Good too", "1990"]]
    )
    sidecar = load_sidecar(data, source_name="metadata.csv")
    assert sorted(sidecar.rows) == ["a.txt", "c.txt"]
    [problem] = sidecar.problems
    assert (problem.line, problem.filename, problem.column, problem.value) == (3, "b.txt", "dc.date", "2021-13-45")
    assert problem.message.startswith("dc.date: '2021-13-45' is not a 'date'")
    assert problem.severity == "error"
    assert sidecar.problems_for("./b.txt") == [problem]
    assert str(problem).startswith("line 3: dc.date:")


@pytest.mark.parametrize("value", ["2021", "2021-02", "2021-02-28", "2020-02-29", "1847-12-01"])
def test_dates_at_every_iso_precision_are_accepted(value):
    sidecar = load_sidecar(csv_bytes([["filename", "dc.date"], ["a.txt", value]]), source_name="m.csv")
    assert sidecar.rows["a.txt"].values["dc.date"] == value


@pytest.mark.parametrize(
    "value", ["2021-13", "2021-2-3", "2021-02-30", "2021-00-10", "20 January 1990", "21", "2021/01/20", "20210120"]
)
def test_dates_that_are_not_iso_8601_are_refused(value):
    sidecar = load_sidecar(csv_bytes([["filename", "dc.date"], ["a.txt", value]]), source_name="m.csv")
    assert sidecar.rows == {}
    [problem] = sidecar.problems
    assert problem.column == "dc.date" and problem.value == value
    assert problem.message.startswith(f"dc.date: '{value}' is not ")


@pytest.mark.parametrize("value", ["en", "EN", "en-GB", "az-Latn-AZ", "aze", "zh-Hant", "es-419"])
def test_language_tags_are_accepted(value):
    sidecar = load_sidecar(csv_bytes([["filename", "dc.language"], ["a.txt", value]]), source_name="m.csv")
    assert "a.txt" in sidecar.rows


@pytest.mark.parametrize("value", ["English", "e", "en_GB_x_y!", "123"])
def test_values_that_are_not_language_tags_are_refused(value):
    sidecar = load_sidecar(csv_bytes([["filename", "dc.language"], ["a.txt", value]]), source_name="m.csv")
    [problem] = sidecar.problems
    assert problem.column == "dc.language"
    assert "BCP 47" in problem.message


def test_each_failed_rule_of_a_row_is_a_problem():
    sidecar = load_sidecar(
        csv_bytes([["filename", "dc.date", "dc.language"], ["a.txt", "2021-02-30", "x"]]), source_name="m.csv"
    )
    assert [problem.column for problem in sidecar.problems] == ["dc.date", "dc.language"]
    assert sidecar.rows == {}


@pytest.mark.parametrize(
    "filename, words",
    [
        ("../outside.txt", "'..'"),
        ("letters/../../outside.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\scans\\a.tif", "absolute"),
        ("./C:/scans/a.tif", "absolute"),  # (its normal form would be C:/scans/a.tif)
        ("\\\\server\\share\\a.tif", "absolute"),
        ("", "empty"),
        ("./", "batch folder itself"),
        ("a\x00b.txt", "control character"),
    ],
)
def test_filenames_outside_the_batch_are_refused(filename, words):
    sidecar = load_sidecar(csv_bytes([["filename", "dc.title"], [filename, "T"], ["ok.txt", "T"]]), source_name="m.csv")
    assert list(sidecar.rows) == ["ok.txt"]
    [problem] = sidecar.problems
    assert problem.line == 2 and problem.column == "filename"
    assert words in problem.message


def test_duplicate_filenames_keep_the_first_row():
    rows = [["filename", "dc.title"], ["scans/a.tif", "First"], ["./scans\\a.tif", "Second"], ["scans/a.tif", "Third"]]
    sidecar = load_sidecar(csv_bytes(rows), source_name="m.csv")
    assert sidecar.rows["scans/a.tif"].values == {"dc.title": "First"}
    assert [(problem.line, problem.filename) for problem in sidecar.problems] == [
        (3, "scans/a.tif"),
        (4, "scans/a.tif"),
    ]
    assert all("already described on line 2" in problem.message for problem in sidecar.problems)


def test_ragged_rows_are_refused_but_trailing_empty_cells_are_not():
    data = (b"filename,dc.title,dc.date\r\na.txt,Short\r\nb.txt,Long,2021,extra\r\n"
            b"c.txt,Trailing,2021,,\r\nd.txt,Fine,2021\r\n")
    sidecar = load_sidecar(data, source_name="m.csv")
    assert sorted(sidecar.rows) == ["c.txt", "d.txt"]
    assert [(problem.line, problem.filename) for problem in sidecar.problems] == [(2, "a.txt"), (3, "b.txt")]
    assert "2 fields but the header has 3" in sidecar.problems[0].message


def test_unknown_columns_are_warnings_and_the_rows_still_count():
    data = csv_bytes([["Filename", "DC:Title", "shelfmark", "dc.date"], ["a.txt", "T", "MS 12", "2021"]])
    sidecar = load_sidecar(data, source_name="m.csv")
    assert sidecar.rows["a.txt"].values == {"dc.title": "T", "dc.date": "2021"}
    [warning] = sidecar.problems
    assert warning.severity == "warning" and warning.column == "shelfmark" and warning.line == 1
    assert sidecar.errors == [] and sidecar.warnings == [warning]


@pytest.mark.parametrize(
    "data, words",
    [
        (b"name,dc.title\r\na.txt,T\r\n", "no 'filename' column"),
        (b"", "empty"),
        (b"filename,dc.title,DC.Title\r\n", "appears twice"),
        (b"\x00\x01\x02\x03" * 100, "not readable"),
    ],
)
def test_files_that_are_not_sidecars_raise(data, words):
    with pytest.raises(SidecarError) as caught:
        load_sidecar(data, source_name="batch7/metadata.csv")
    assert caught.value.source_name == "batch7/metadata.csv"
    assert words in str(caught.value)


def test_a_ten_megabyte_field_is_refused_and_the_rest_is_read():
    data = csv_bytes(
        [["filename", "dc.description"], ["a.txt", "fine"], ["b.txt", "x" * 10_000_000], ["c.txt", "also fine"]]
    )
    sidecar = load_sidecar(data, source_name="m.csv")
    assert sorted(sidecar.rows) == ["a.txt", "c.txt"]
    [problem] = sidecar.problems
    assert problem.line == 3 and "CSV limit" in problem.message
    assert all(len(value) < 100 for row in sidecar.rows.values() for value in row.values.values())


def test_a_field_over_the_cell_limit_is_refused_with_its_column():
    sidecar = load_sidecar(
        csv_bytes([["filename", "dc.title"], ["a.txt", "t" * (MAX_CELL_CHARS + 1)]]), source_name="m.csv"
    )
    [problem] = sidecar.problems
    assert problem.column == "dc.title" and "longer than the limit" in problem.message
    assert len(problem.value) <= 80


def test_line_numbers_count_physical_lines_across_quoted_newlines():
    data = b'filename,dc.description\r\na.txt,"one\r\ntwo\r\nthree"\r\nb.txt,ok\r\nc.txt,"x"\r\nd.txt\r\n'
    sidecar = load_sidecar(data, source_name="m.csv")
    assert sidecar.rows["b.txt"].line == 5
    assert sidecar.problems[0].line == 7


def test_semicolon_separated_and_windows_1252_sidecars():
    data = csv_bytes(
        [["filename", "dc.title"], ["café.txt", "Le café “noir”"]], bom=False, delimiter=";", encoding="cp1252"
    )
    sidecar = load_sidecar(data, source_name="m.csv")
    assert sidecar.rows["café.txt"].values["dc.title"] == "Le café “noir”"
    assert sidecar.encoding == "cp1252"
    assert [problem.severity for problem in sidecar.problems] == ["warning"]


def test_decomposed_unicode_filenames_match_composed_ones():
    data = csv_bytes([["filename", "dc.title"], ["cafe\u0301.txt", "T"]])
    assert load_sidecar(data, source_name="m.csv").lookup("caf\u00e9.txt") is not None


def test_blank_lines_are_skipped():
    sidecar = load_sidecar(b"filename,dc.title\r\n\r\na.txt,T\r\n,\r\n", source_name="m.csv")
    assert list(sidecar.rows) == ["a.txt"] and sidecar.problems == []


def test_the_row_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == SCHEMA_ID == "urn:archive:schema:metadata-row:1.0.0"
    assert set(schema["properties"]) == set(COLUMNS)
    assert row_schema() == schema


def test_the_schema_itself_refuses_what_load_sidecar_refuses():
    validator = Draft202012Validator(row_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert validator.is_valid({"filename": "scans/a.tif", "dc.date": "2021-01"})
    for bad in (
        {"filename": "../a"},
        {"filename": "/a"},
        {"dc.title": "no filename"},
        {"filename": "a", "dc.title": ""},
        {"filename": "a", "dc.date": "2021-13-45"},
        {"filename": "a", "shelfmark": "x"},
    ):
        assert not validator.is_valid(bad), bad


@given(st.text(max_size=40))
def test_normalised_filenames_never_leave_the_batch(value):
    try:
        path = normalise_filename(value)
    except ValueError:
        return
    assert path and not path.startswith("/") and "\\" not in path
    assert ".." not in path.split("/") and "." not in path.split("/") and "" not in path.split("/")
    assert normalise_filename(path) == path


def test_a_batch_is_sent_the_rows_and_problems_naming_its_files_and_the_whole_sidecars_report():
    from archive.ingest.descriptions import Descriptions, sidecar_report, unmatched_rows
    from archive.ingest.sidecarindex import SidecarIndex

    rows = ["filename,dc.title,dc.date", "a.txt,A,1901", "b.txt,B,1902", "box.zip!/c.txt,C,1903",
            "box.zip!/d.txt,D,1904", "e.txt,E,not a date", "f.txt,F,1905"]
    data = "\n".join(rows).encode()
    whole = load_sidecar(data)
    descriptions = Descriptions("metadata.csv", SidecarIndex(data, source_name="metadata.csv"))
    assert descriptions.lookup("b.txt") == ({"title": "B", "date": "1902"}, None)
    assert descriptions.lookup("e.txt")[1] == f"metadata.csv {whole.errors[0]}"
    share = descriptions.for_batch(["./a.txt", "box.zip", "e.txt", "metadata.csv"])
    assert sorted(share.sidecar.rows) == ["a.txt", "box.zip!/c.txt", "box.zip!/d.txt"]
    assert share.lookup("a.txt") == descriptions.lookup("a.txt")
    assert share.lookup("box.zip!/d.txt") == descriptions.lookup("box.zip!/d.txt")
    assert share.lookup("b.txt") == (None, None)  # another batch's
    assert share.lookup("e.txt") == descriptions.lookup("e.txt") and share.lookup("e.txt")[1]  # its problem
    assert share.report == sidecar_report(whole) and "5 row(s) used, 1 rejected" in share.report
    assert share.warned and share.path == "metadata.csv"
    assert not descriptions.for_batch(["a.txt"]).sidecar.problems
    assert Descriptions().for_batch(["a.txt"]) == Descriptions()
    # The rows no share took, and no file seen: b.txt and f.txt (e.txt's row is invalid, not unmatched).
    assert [w.split()[4] for w in unmatched_rows(descriptions, ["f.txt"])] == ["'b.txt',"]
    assert [w.split()[4] for w in unmatched_rows(descriptions, [])] == ["'b.txt',"]


def test_a_sidecar_index_holds_what_load_sidecar_holds_without_its_rows_in_memory():
    from archive.ingest.descriptions import sidecar_report
    from archive.ingest.sidecarindex import SidecarIndex

    lines = ["filename;dc.title;dc.date;colour"] + [f"f{i:05d}.txt;Titre é {i};{1800 + i % 200};red"
                                                  for i in range(3000)]
    lines += ["f00007.txt;again;1900;red", "bad/../../x.txt;x;1900;", "g.txt;G;yesterday;", ";;;", "h.txt;H"]
    data = "\n".join(lines).encode("cp1252")
    whole, index = load_sidecar(data), SidecarIndex(data, source_name="metadata.csv")
    assert index.rows == len(whole.rows) == 3000 and index.problems == len(whole.problems) > 5
    assert whole.encoding == index.encoding != "utf-8"
    assert sidecar_report(index) == sidecar_report(whole)
    for path in ("f00007.txt", "./f02999.txt", "g.txt", "h.txt", "bad/../../x.txt", "nothing.txt"):
        assert index.lookup(path) == whole.lookup(path) and index.problems_for(path) == whole.problems_for(path)
    assert index.share(["f00001.txt", "g.txt"]).rows == {"f00001.txt": whole.rows["f00001.txt"]}
    assert [r.filename for r in index.unmatched(["f00002.txt"])] == [
        name for name in whole.rows if name not in ("f00001.txt", "f00002.txt")]
