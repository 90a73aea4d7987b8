"""One commit at a time per store, so concurrent runs settle their duplicates against each other."""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import ArchiveError, ObjectExistsError, ObjectNotFoundError
from .records import utc_now
from .store import Store

LOCK_KEY = "locks/commit"


class CommitLockTimeout(ArchiveError):
    """Another run held the commit lock for longer than this run would wait."""


@contextmanager
def commit_lock(store: Store, run_id: str, *, timeout: float = 300.0, stale_after: float = 600.0,
                poll: float = 0.05) -> Iterator[None]:
    """Hold the store's commit lock for the block.

    Taken by a write-once put of locks/commit, which both stores make atomic
    (hard link; S3 If-None-Match), so two runs can never both hold it. A lock
    older than stale_after seconds belongs to a run that died while committing
    and is broken. Commits take a second or two, so waiting is short.
    """
    body = json.dumps({"run_id": run_id, "acquired_at": utc_now()}).encode()
    deadline = time.monotonic() + timeout
    wait = poll
    while True:
        try:
            store.put_bytes(LOCK_KEY, body)
            break
        except ObjectExistsError:
            _break_if_stale(store, stale_after)
            if time.monotonic() > deadline:
                raise CommitLockTimeout(f"{store.url}: another run has held {LOCK_KEY} for more than {timeout:.0f} s") from None
            time.sleep(wait)  # bounded backoff while another run commits
            wait = min(wait * 2, 1.0)
    try:
        yield
    finally:
        try:
            store.delete(LOCK_KEY)
        except ObjectNotFoundError:
            pass


def _break_if_stale(store: Store, stale_after: float) -> None:
    try:
        holder = json.loads(store.get_bytes(LOCK_KEY))
        acquired = dt.datetime.fromisoformat(holder["acquired_at"].replace("Z", "+00:00"))
    except ObjectNotFoundError:
        return  # released meanwhile
    except (ValueError, KeyError):
        acquired = dt.datetime.min.replace(tzinfo=dt.timezone.utc)  # unreadable: treat as stale
    if (dt.datetime.now(dt.timezone.utc) - acquired).total_seconds() > stale_after:
        try:
            store.delete(LOCK_KEY)
        except ObjectNotFoundError:
            pass
