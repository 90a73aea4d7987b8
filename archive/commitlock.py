"""One commit at a time per store, so concurrent runs settle their duplicates against each other."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import ObjectExistsError, ObjectNotFoundError, TransientError
from .records import utc_now
from .storage import Store

LOCK_KEY = "locks/commit"


class CommitLockTimeout(TransientError):
    """Another run held the commit lock for longer than this run would wait."""


@contextmanager
def commit_lock(store: Store, run_id: str, *, timeout: float = 900.0, stale_after: float = 600.0,
                poll: float = 0.05) -> Iterator[None]:
    """Hold the store's commit lock for the block.

    Taken by a write-once put of locks/commit, which both stores make atomic
    (hard link; S3 If-None-Match), so two runs can never both hold it. A lock
    left by a process of this host that no longer exists (killed while
    committing) is broken at once; one from another host, once it is older
    than stale_after seconds. Commits take a second or two, so waiting is short.
    """
    body = json.dumps({"run_id": run_id, "acquired_at": utc_now(), "host": socket.gethostname(),
                       "pid": os.getpid(), "pid_started": _process_start(os.getpid())}).encode()
    deadline = time.monotonic() + timeout
    wait = poll
    while True:
        try:
            store.put_bytes(LOCK_KEY, body)
            break
        except ObjectExistsError:
            holder = _holder(store)
            if holder is None:
                continue  # released meanwhile: take it now
            if holder.get("run_id") == run_id:
                break  # this run's own lock (a retried commit whose release failed): take it over
            _break_if_stale(store, holder, stale_after)
            if time.monotonic() > deadline:
                raise CommitLockTimeout(f"{store.url}: another run has held {LOCK_KEY} for more than "
                                        f"{timeout:.0f} s") from None
            time.sleep(wait)  # bounded backoff while another run commits
            wait = min(wait * 2, 1.0)
    try:
        yield
    finally:
        try:
            store.delete(LOCK_KEY)
        except ObjectNotFoundError:
            pass


def _holder(store: Store) -> dict | None:
    """What the lock says of its holder ({} when unreadable), or None when there is no lock."""
    try:
        holder = json.loads(store.get_bytes(LOCK_KEY))
    except ObjectNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _break_if_stale(store: Store, holder: dict, stale_after: float) -> None:
    try:
        acquired = dt.datetime.fromisoformat(holder["acquired_at"].replace("Z", "+00:00"))
    except (KeyError, ValueError, AttributeError):
        acquired = dt.datetime.min.replace(tzinfo=dt.timezone.utc)  # unreadable: treat as stale
    if _holder_died_here(holder) or (dt.datetime.now(dt.timezone.utc) - acquired).total_seconds() > stale_after:
        try:
            store.delete(LOCK_KEY)
        except ObjectNotFoundError:
            pass


def _process_start(pid: int) -> str | None:
    """When pid started (clock ticks since boot, from /proc), so a reused pid is not taken for the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses: fields count from its last ')'.
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _holder_died_here(holder: dict) -> bool:
    """The lock's holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    started = _process_start(holder["pid"])
    if started is None:
        return os.path.exists("/proc/self/stat")  # no such process (where /proc can tell)
    return holder.get("pid_started") is not None and started != holder["pid_started"]
