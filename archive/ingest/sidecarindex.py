"""A run's whole sidecar as the flow holds it: its rows and problems in SQLite on local disk, each batch's share
taken out as the batch is submitted, the rows no batch took left for the run's summary."""

from __future__ import annotations

import os
import pickle
import sqlite3
import tempfile
from collections.abc import Iterable, MutableMapping

from ..metadata import MetadataProblem, MetadataRow, Sidecar, filename_keys, normalise_filename, read_sidecar

# Problems kept in memory for the sidecar's report (it shows the first five).
REPORTED = 6


def report_text(rows: int, rejected: int, first_problems: list[MetadataProblem], problems: int) -> str:
    """What a sidecar gave the batch: rows used and rejected (lines), and the first five of its problems."""
    shown = "; ".join(str(p) for p in first_problems[:5]) + ("; ..." if problems > 5 else "")
    return (f"descriptive metadata for this batch: {rows} row(s) used, {rejected} rejected"
            + (f" ({shown})" if problems else ""))


class SidecarIndex:
    """A metadata.csv read a row at a time into an SQLite file of its own (unlinked once open: it goes with the
    process), so that the flow's memory does not grow with the sidecar's rows: a row is some 600 bytes as Python
    objects, 63 MiB for 100,000 rows. Built once, read by one thread (the flow's, as it submits batches)."""

    def __init__(self, data: bytes, *, source_name: str, directory: str | None = None):
        folder = tempfile.mkdtemp(prefix="archive-sidecar-", dir=directory)
        path = os.path.join(folder, "sidecar.sqlite")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -4096"):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.executescript("""
                CREATE TABLE rows (filename TEXT PRIMARY KEY, outer TEXT, line INTEGER NOT NULL, row BLOB NOT NULL,
                                   shared INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX rows_by_outer ON rows (outer) WHERE outer IS NOT NULL;
                CREATE TABLE problems (filename TEXT, line INTEGER NOT NULL, error INTEGER NOT NULL,
                                       problem BLOB NOT NULL);
                CREATE INDEX problems_by_filename ON problems (filename);
            """)
        finally:
            os.unlink(path)
            os.rmdir(folder)
        header, rows = read_sidecar(data, source_name=source_name, first_line=_FirstLines(self._db))
        self.source_name, self.encoding, self.columns = header.source_name, header.encoding, header.columns
        self.rows = 0
        self.first_problems: list[MetadataProblem] = []
        self._db.execute("BEGIN")
        self._add_problems(header.problems)
        for row, problems in rows:
            self._add_problems(problems)
            if row is not None:
                outer = row.filename.split("!/", 1)[0] if "!/" in row.filename else None
                self._db.execute("INSERT INTO rows (filename, outer, line, row) VALUES (?, ?, ?, ?)",
                                 (row.filename, outer, row.line, pickle.dumps(row)))
                self.rows += 1
        self._db.execute("COMMIT")
        (self.problems,) = self._db.execute("SELECT count(*) FROM problems").fetchone()
        (self.rejected,) = self._db.execute("SELECT count(DISTINCT line) FROM problems WHERE error").fetchone()

    def _add_problems(self, problems: list[MetadataProblem]) -> None:
        for problem in problems:
            if len(self.first_problems) < REPORTED:
                self.first_problems.append(problem)
            self._db.execute("INSERT INTO problems VALUES (?, ?, ?, ?)",
                             (problem.filename, problem.line, problem.severity == "error", pickle.dumps(problem)))

    def report(self) -> str:
        """What the sidecar gave the batch (report_text)."""
        return report_text(self.rows, self.rejected, self.first_problems, self.problems)

    def share(self, keys: Iterable[str]) -> Sidecar:
        """The rows naming these (normalised) filenames, or a member of a container among them, and the problems
        naming them, as a Sidecar; those rows count as seen (unmatched)."""
        keys = sorted(set(keys))
        share = Sidecar(self.source_name, self.encoding, self.columns)
        for start in range(0, len(keys), 500):  # (SQLite's limit on a statement's parameters)
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found = self._db.execute(f"SELECT filename, row FROM rows WHERE filename IN ({marks}) "
                                     f"OR outer IN ({marks})", chunk + chunk).fetchall()
            share.rows.update((filename, pickle.loads(row)) for filename, row in found)
            self._db.executemany("UPDATE rows SET shared = 1 WHERE filename = ?", ((f,) for f, _ in found))
            share.problems.extend(pickle.loads(problem) for (problem,) in self._db.execute(
                f"SELECT problem FROM problems WHERE filename IN ({marks}) ORDER BY rowid", chunk))
        return share

    def lookup(self, path: str) -> MetadataRow | None:
        """The row describing the file at path, if there is a valid one (as Sidecar.lookup)."""
        try:
            key = normalise_filename(path)
        except ValueError:
            return None
        found = self._db.execute("SELECT row FROM rows WHERE filename = ?", (key,)).fetchone()
        return pickle.loads(found[0]) if found else None

    def problems_for(self, path: str) -> list[MetadataProblem]:
        """Problems with rows naming path (as Sidecar.problems_for)."""
        try:
            key = normalise_filename(path)
        except ValueError:
            return []
        return [pickle.loads(problem) for (problem,) in self._db.execute(
            "SELECT problem FROM problems WHERE filename = ? ORDER BY rowid", (key,))]

    def unmatched(self, seen: Iterable[str] = ()) -> list[MetadataRow]:
        """The rows naming none of the files seen nor taken into a share (a member of a container counts as seen
        when its outermost container is), in the sidecar's order: a likely typo or a missing file."""
        keys = filename_keys(seen)
        if keys:
            self.share(keys)
        return [pickle.loads(row) for (row,) in self._db.execute("SELECT row FROM rows WHERE NOT shared ORDER BY line")]

    def close(self) -> None:
        self._db.close()


class _FirstLines(MutableMapping):
    """Where each filename was first described, as read_sidecar asks: the rows table itself."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __getitem__(self, filename: str) -> int:
        found = self._db.execute("SELECT line FROM rows WHERE filename = ?", (filename,)).fetchone()
        if found is None:
            raise KeyError(filename)
        return found[0]

    def __contains__(self, filename: object) -> bool:
        return self._db.execute("SELECT 1 FROM rows WHERE filename = ?", (filename,)).fetchone() is not None

    def __setitem__(self, filename: str, line: int) -> None:
        pass  # (the row is inserted by the index as it is read)

    def __delitem__(self, filename: str) -> None:
        raise TypeError("a sidecar's rows are never removed")

    def __iter__(self):
        return (filename for (filename,) in self._db.execute("SELECT filename FROM rows"))

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM rows").fetchone()[0]
