"""Sidecar metadata.csv: the Dublin Core description an archivist supplies for the files of a batch.

A sidecar is read once per run into a Sidecar: the valid rows keyed by the
normalised relative path of the file they describe, and a problem for every row
or column that was not used, naming its line, column and value. A bad row never
stops the others from being read; only a file that is not a usable sidecar at
all (no filename column, not text, too large) raises SidecarError.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ArchiveError, TerminalError

SIDECAR_NAME = "metadata.csv"
SCHEMA_ID = "urn:archive:schema:metadata-row:1.0.0"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "metadata-row.schema.json"

MAX_SIDECAR_BYTES = 64 * 1024 * 1024
# Longer than any real description; a cell beyond this is a paste accident or
# an attack and is reported, never copied into a record. It is below the csv
# module's own field limit (131,072 by default), which stops anything larger
# while parsing, before it is held in memory as a row.
MAX_CELL_CHARS = 65_536
SHOWN_VALUE_CHARS = 80  # how much of a rejected value a problem repeats

DC_ELEMENTS = (
    "title",
    "creator",
    "subject",
    "description",
    "publisher",
    "date",
    "type",
    "identifier",
    "source",
    "language",
    "rights",
)
FILENAME = "filename"
COLUMNS = (FILENAME,) + tuple(f"dc.{element}" for element in DC_ELEMENTS)

# What a pattern in the schema stands for, in the words of a problem message.
_EXPECTED = {
    "dc.date": "an ISO 8601 date (yyyy, yyyy-mm or yyyy-mm-dd)",
    "dc.language": "a BCP 47 language tag (such as en, en-GB, az-Latn or aze)",
    FILENAME: "a relative path inside the batch",
}


class SidecarError(TerminalError):
    """The sidecar as a whole cannot be used; names the file and why."""

    def __init__(self, source_name: str, reason: str):
        super().__init__(f"{source_name}: {reason}")
        self._init_args = (source_name, reason)
        self.source_name = source_name
        self.reason = reason


@dataclass(frozen=True)
class MetadataProblem:
    """Something in the sidecar that was not used as given: an error drops its row, a warning does not."""

    line: int  # physical line where the row starts (the header is line 1)
    filename: str | None
    column: str | None
    value: str | None  # the offending value, shortened to SHOWN_VALUE_CHARS
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class MetadataRow:
    filename: str  # normalised relative POSIX path
    line: int
    values: dict[str, str]  # column ("dc.title") -> value; empty cells are left out

    @property
    def dublin_core(self) -> dict[str, str]:
        """The values keyed by Dublin Core element without the "dc." prefix, as Extracted.metadata is."""
        return {column[3:]: value for column, value in self.values.items()}


@dataclass
class Sidecar:
    source_name: str
    encoding: str
    columns: tuple[str, ...]  # the recognised columns, in the order of the header
    rows: dict[str, MetadataRow] = field(default_factory=dict)
    problems: list[MetadataProblem] = field(default_factory=list)

    def lookup(self, path: str) -> MetadataRow | None:
        """The row describing the file at path (relative to the batch root), if there is a valid one."""
        try:
            return self.rows.get(normalise_filename(path))
        except ValueError:
            return None

    def problems_for(self, path: str) -> list[MetadataProblem]:
        """Problems with rows naming path: why a file has no metadata although the sidecar names it."""
        try:
            key = normalise_filename(path)
        except ValueError:
            return []
        return [problem for problem in self.problems if problem.filename == key]

    def unmatched(self, seen: Iterable[str]) -> list[MetadataRow]:
        """Rows naming files that are not among seen: for the run summary, a likely typo or a missing file. A row
        naming a container's member (`accession.zip!/a.txt`) counts as seen when its outermost container is: its
        members are known only once it is unpacked."""
        seen_keys = filename_keys(seen)
        return [row for key, row in self.rows.items()
                if key not in seen_keys and key.split("!/", 1)[0] not in seen_keys]

    @property
    def errors(self) -> list[MetadataProblem]:
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def warnings(self) -> list[MetadataProblem]:
        return [problem for problem in self.problems if problem.severity == "warning"]


def load_sidecar(data: bytes, *, source_name: str = SIDECAR_NAME) -> Sidecar:
    """Parse and validate a metadata.csv; SidecarError if it cannot be a sidecar at all."""
    sidecar, rows = read_sidecar(data, source_name=source_name)
    for row, problems in rows:
        sidecar.problems.extend(problems)
        if row is not None:
            sidecar.rows[row.filename] = row
    return sidecar


def read_sidecar(data: bytes, *, source_name: str = SIDECAR_NAME,
                 first_line: MutableMapping[str, int] | None = None) -> tuple[Sidecar, Iterator[RowRead]]:
    """A metadata.csv read a row at a time: (its header, as a Sidecar without rows whose problems are the
    header's, and the (row or None, problems) of each row in order). SidecarError, here, if it cannot be a
    sidecar at all. first_line: where each filename was first described (filled as the rows are read; a
    mapping on disk keeps the reader's memory flat in the rows)."""
    from .extract import ExtractionError
    from .extract.text import extract as extract_text
    from .identify import PLAIN_TEXT

    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(source_name, f"{len(data):,} bytes; a sidecar may have at most {MAX_SIDECAR_BYTES:,}")
    try:
        decoded = extract_text(data, PLAIN_TEXT)
    except ExtractionError as exc:
        raise SidecarError(source_name, f"not readable as CSV text: {exc.detail}") from None
    text, encoding = decoded.text, decoded.encoding or "utf-8"
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_dialect(text))
    try:
        header = next(reader)
    except StopIteration:
        raise SidecarError(source_name, "the file is empty; the first line must name the columns") from None
    except csv.Error as exc:
        raise SidecarError(source_name, f"the header line cannot be parsed: {exc}") from None
    positions, problems = _read_header(header, source_name)
    sidecar = Sidecar(
        source_name=source_name,
        encoding=encoding,
        columns=tuple(column for column in positions if column),
        problems=problems,
    )
    if encoding not in ("utf-8", "ascii"):
        sidecar.problems.append(MetadataProblem(1, None, None, None, f"not UTF-8: read as {encoding}", "warning"))
    return sidecar, _rows(reader, positions, {} if first_line is None else first_line)


RowRead = tuple["MetadataRow | None", "list[MetadataProblem]"]


def _rows(reader, positions: list[str | None], first_line: MutableMapping[str, int]) -> Iterator[RowRead]:
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = (
                f"a field is longer than the CSV limit of {csv.field_size_limit():,} characters"
                if "field limit" in str(exc)
                else str(exc)
            )
            yield None, [MetadataProblem(start, None, None, None, f"row cannot be parsed: {reason}; row not used")]
            continue
        if not any(cell.strip() for cell in cells):
            continue
        row, row_problems = _read_row(cells, positions, start, first_line)
        if row is not None:
            first_line[row.filename] = start
        yield row, row_problems


def filename_keys(paths: Iterable[str]) -> set[str]:
    """The normalised filenames of paths (normalise_filename), leaving out those that leave the batch."""
    keys = set()
    for path in paths:
        try:
            keys.add(normalise_filename(path))
        except ValueError:
            continue
    return keys


def normalise_filename(value: str) -> str:
    """The relative POSIX path a sidecar cell or a discovered file names; ValueError if it leaves the batch."""
    path = unicodedata.normalize("NFC", value.strip()).replace("\\", "/")
    if not path:
        raise ValueError("it is empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise ValueError("it contains a control character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    # (a drive letter checked on the first segment left, so that `./C:` is refused as `C:` is: a path's normal form
    # normalises to itself)
    first = parts[0] if parts else ""
    if path.startswith("/") or (len(first) >= 2 and first[1] == ":" and first[0].isascii() and first[0].isalpha()):
        raise ValueError("it is an absolute path; it must be relative to the batch folder")
    if ".." in parts:
        raise ValueError("its '..' segment leads out of the batch folder")
    if not parts:
        raise ValueError("it names the batch folder itself, not a file")
    return "/".join(parts)


def _dialect(text: str) -> type[csv.Dialect]:
    """Comma-separated, unless the header line uses semicolons or tabs instead (European spreadsheet exports)."""
    header = text.split("\n", 1)[0]

    class SidecarDialect(csv.excel):
        pass

    if "," not in header:
        if ";" in header:
            SidecarDialect.delimiter = ";"
        elif "\t" in header:
            SidecarDialect.delimiter = "\t"
    return SidecarDialect


def _read_header(header: list[str], source_name: str) -> tuple[list[str | None], list[MetadataProblem]]:
    """The recognised column at each position (None where unknown) and a warning for each unknown column."""
    problems: list[MetadataProblem] = []
    positions: list[str | None] = []
    for index, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff").lower()
        if name.startswith("dc:"):
            name = "dc." + name[3:]
        if name in positions:
            raise SidecarError(source_name, f"column {name!r} appears twice in the header")
        if name in COLUMNS:
            positions.append(name)
            continue
        positions.append(None)
        if name:
            problems.append(
                MetadataProblem(
                    1,
                    None,
                    raw.strip(),
                    None,
                    f"unknown column {raw.strip()!r} (column {index + 1}) is ignored; "
                    f"known columns are {', '.join(COLUMNS)}",
                    "warning",
                )
            )
    if FILENAME not in positions:
        found = ", ".join(repr(cell.strip()) for cell in header[:12]) or "nothing"
        raise SidecarError(
            source_name,
            f"the header has no 'filename' column (found {found}); the first line must name the columns, "
            f"one of them 'filename', the others from {', '.join(COLUMNS[1:])}",
        )
    return positions, problems


def _read_row(
    cells: list[str], positions: list[str | None], line: int, first_line: MutableMapping[str, int]
) -> tuple[MetadataRow | None, list[MetadataProblem]]:
    """The row, or None and why it is not used (one problem per failed rule)."""
    raw_filename = cells[positions.index(FILENAME)].strip() if positions.index(FILENAME) < len(cells) else ""
    shown_name = _shorten(raw_filename) or None
    if len(cells) > len(positions) and not any(cell.strip() for cell in cells[len(positions) :]):
        cells = cells[: len(positions)]  # trailing separators a spreadsheet added
    if len(cells) != len(positions):
        return None, [
            MetadataProblem(
                line,
                shown_name,
                None,
                None,
                f"row has {len(cells)} fields but the header has {len(positions)}; row not used",
            )
        ]
    instance: dict[str, str] = {}
    for column, cell in zip(positions, cells):
        if column is None:
            continue
        if len(cell) > MAX_CELL_CHARS:
            return None, [
                MetadataProblem(
                    line,
                    shown_name,
                    column,
                    _shorten(cell),
                    f"{column}: value of {len(cell):,} characters is longer than the limit of {MAX_CELL_CHARS:,}; "
                    "row not used",
                )
            ]
        if cell.strip():
            instance[column] = cell.strip()
    try:
        filename = normalise_filename(instance.get(FILENAME, ""))
    except ValueError as exc:
        return None, [
            MetadataProblem(
                line,
                shown_name,
                FILENAME,
                shown_name,
                f"{FILENAME}: {shown_name or ''!r} is not usable: {exc}; row not used",
            )
        ]
    instance[FILENAME] = filename
    if filename in first_line:
        return None, [
            MetadataProblem(
                line,
                filename,
                FILENAME,
                _shorten(filename),
                f"{FILENAME}: {filename!r} is already described on line {first_line[filename]}; row not used",
            )
        ]
    problems = []
    for error in sorted(
        _validator().iter_errors(instance), key=lambda error: COLUMNS.index(_column(error) or FILENAME)
    ):
        column = _column(error)
        value = instance.get(column) if column else None
        problems.append(
            MetadataProblem(line, filename, column, _shorten(value), _message(error, column) + "; row not used")
        )
    if problems:
        return None, problems
    values = {column: instance[column] for column in COLUMNS[1:] if column in instance}
    return MetadataRow(filename=filename, line=line, values=values), []


def _column(error: Any) -> str | None:
    return str(error.absolute_path[0]) if error.absolute_path else None


def _message(error: Any, column: str | None) -> str:
    """One schema error as a reader of the CSV wants it: the column, the value and the rule."""
    where = column or error.json_path
    if error.validator == "pattern" and column in _EXPECTED:
        return f"{where}: {_shorten(error.instance)!r} is not {_EXPECTED[column]}"
    if error.validator in ("maxLength", "pattern", "enum", "const"):
        return f"{where}: {_shorten(error.instance)!r} is not valid ({error.validator})"
    return f"{where}: {error.message}"


def _shorten(value: str | None) -> str | None:
    if value is None or len(value) <= SHOWN_VALUE_CHARS:
        return value
    return value[: SHOWN_VALUE_CHARS - 1] + "…"


@cache
def row_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    if schema.get("$id") != SCHEMA_ID:
        raise ArchiveError(f"{SCHEMA_PATH}: $id is {schema.get('$id')!r}, expected {SCHEMA_ID!r}")
    return schema


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = row_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
