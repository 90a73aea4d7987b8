"""Part files checked against the sha256 and size their manifest records before a reader uses them, once per
process and part: a part that matched stays trusted for the rest of the process (write-once: its bytes never
change unless someone changes them behind the archive's back, which `archive verify` names)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from .errors import DamagedPartError, ObjectNotFoundError
from .storage import Store

# (store url, key, sha256, bytes) of every part whose bytes matched in this process.
_verified: set[tuple[str, str, str, int]] = set()
_lock = threading.Lock()
MAX_THREADS = 4


def _digest(store: Store, key: str) -> tuple[str, int] | None:
    """(sha256, size) of the stored part, read once in chunks; None if it is not in the store."""
    try:
        return store.sha256(key)
    except ObjectNotFoundError:
        return None


def verify_parts(store: Store, parts: Iterable[tuple[str, dict]]) -> int:
    """Check each (run_id, part) not yet checked in this process; returns how many were hashed.

    Raises DamagedPartError naming the first part (in the order given) that is missing or whose sha256 or size
    differs from its manifest's, and how many more do. Parts are read and hashed a few at a time (hashing lets go
    of the interpreter lock): on S3 each read waits a round trip, on a disk the hashing is the work."""
    todo = [(run_id, part) for run_id, part in parts if _mark(store, part) not in _verified]
    if not todo:
        return 0
    threads = min(len(todo), max(store.concurrent_reads, min(os.cpu_count() or 1, MAX_THREADS)))
    with ThreadPoolExecutor(threads, thread_name_prefix="part-check") as pool:
        found = list(pool.map(lambda item: _digest(store, item[1]["key"]), todo))
    damaged = []
    for (run_id, part), result in zip(todo, found):
        reason = _difference(part, result)
        if reason is None:
            with _lock:
                _verified.add(_mark(store, part))
        else:
            damaged.append(DamagedPartError(part["key"], run_id, reason))
    if damaged:
        first = damaged[0]
        if len(damaged) > 1:
            raise DamagedPartError(first.key, first.run_id, f"{first.reason} (and {len(damaged) - 1} more part(s))")
        raise first
    return len(todo)


def _mark(store: Store, part: dict) -> tuple[str, str, str, int]:
    return (store.url, part["key"], part["sha256"], part["bytes"])


def _difference(part: dict, found: tuple[str, int] | None) -> str | None:
    if found is None:
        return "is missing from the store"
    sha256, size = found
    if sha256 == part["sha256"] and size == part["bytes"]:
        return None
    sizes = "" if size == part["bytes"] else f", {size:,} bytes instead of {part['bytes']:,}"
    return f"does not match its manifest: sha256 {sha256}, expected {part['sha256']}{sizes}"
