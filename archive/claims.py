"""Which batch of a run publishes each document: shared by the run's batches while they run.

The same bytes in two batches of a run are one document, published by the
batch with the lower index (the order of the source), whichever ends first.
Batches run at the same time, so a batch cannot know the others' documents;
without this, every batch holding a copy of an earlier batch's file had its
parts read back and rewritten at commit, one batch after another under the
commit lock (with copies spread through a large source: nearly every batch).

A batch claims its documents once, when it ends and before it writes its
parts; a document an earlier batch has claimed becomes a duplicate there and
then. When a later batch claimed it first, it is still published twice, and
the commit (archive.ingest.reconcile) unpublishes the later one, as for any
duplicate the claims do not settle: the outcome is the same either way.

Light on purpose (no pyarrow): a run's worker processes share one instance
through a multiprocessing manager, whose process imports this module only.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading


class DocumentClaims:
    """doc_id -> (batch index, source path) of the lowest batch that claimed it. Thread-safe.

    Kept in an SQLite table on local disk (an unnamed file: removed as soon as it is open, so nothing is left
    behind however the run ends), not in memory: a run's claims grow with its documents, the memory held stays
    SQLite's page cache."""

    def __init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="archive-claims-")
        path = os.path.join(directory, "claims.sqlite")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("pragma journal_mode=off")  # (no journal file: the table is this run's scratch)
            self._db.execute("pragma synchronous=off")
            self._db.execute("create table owners (doc_id text primary key, batch integer not null, "
                             "path text not null) without rowid")
        finally:
            os.unlink(path)
            os.rmdir(directory)
        self._lock = threading.Lock()

    def claim(self, index: int, documents: dict[str, str]) -> dict[str, tuple[int, str]]:
        """Claim batch index's documents (doc_id -> its source path).

        Returns those a batch with a lower index claimed first, with that
        batch's index and path; the batch is the owner of the others (until a
        lower batch claims one). Claiming again (a retried batch) changes nothing.
        """
        earlier: dict[str, tuple[int, str]] = {}
        with self._lock:
            db = self._db
            db.execute("begin")
            try:
                for doc_id, path in documents.items():
                    owner = db.execute("select batch, path from owners where doc_id = ?", (doc_id,)).fetchone()
                    if owner is not None and owner[0] < index:
                        earlier[doc_id] = (owner[0], owner[1])
                    else:
                        db.execute("insert or replace into owners values (?, ?, ?)", (doc_id, index, path))
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise
        return earlier
