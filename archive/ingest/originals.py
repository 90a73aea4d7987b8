"""Keeps each original bitstream under its checksum, once; in the background where the store takes several writes."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Container

from ..errors import ObjectExistsError, StoreError
from ..sources import FileRef
from ..storage import PutResult, Store, object_key

# Bytes of originals a batch may have on their way into a store that takes several writes at once.
WRITE_BYTES_IN_FLIGHT = 64 << 20


class OriginalsWriter:
    """Stores a batch's originals and fills in each one's ingestion event once its write has ended and been checked.

    Where the store takes several writes at once (S3), the bytes go in the background and the batch goes on, and so
    does the look (HEAD) at an original expected there already (a re-run's); `settle_all` waits for every write and
    look, and checks them, before the batch writes its parts, so a part only ever names originals that are stored.
    """

    def __init__(self, store: Store, known: Container[str], reused: list[str]):
        self.store = store
        self.known = known  # committed doc_ids: their originals are expected in the store
        self.reused = reused  # keys found stored that no committed document accounts for (checked at commit)
        # Originals on their way into the store, oldest first: key -> (ref, sha256, size, event, future).
        self._writes: dict[str, tuple[FileRef, str, int, dict, Future]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def store_original(self, ref: FileRef, sha256: str, event: dict, *, probe: bool, data: bytes | None = None,
                       path: str | None = None, size: int | None = None) -> None:
        """Keep the original (data, or the file at path, of size bytes when hashed) under its checksum;
        event["detail"] says what happened.

        probe: look (HEAD) before sending the bytes: where the original is expected there already, or where
        looking is cheap. A store failure is not the file's fault: StoreError leaves the batch.
        """
        key = object_key(sha256)
        if key in self._writes:  # the same bytes earlier in this batch, still on their way
            self.settle(key)
        probe = probe or self.store.probe_before_put
        expected = len(data) if data is not None else size if size is not None else os.path.getsize(path)
        if data is None or self.store.concurrent_writes <= 1:
            self._record(ref, key, sha256, expected, event, self._write, key, sha256, data, path, probe)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.store.concurrent_writes, thread_name_prefix="store-original")
        for pending, (*_, done) in list(self._writes.items()):
            if done.done() and done.exception() is not None:
                self.settle(pending)  # a failed write ends the batch now, not at its end
        # The bytes on their way stay in memory: a few files, WRITE_BYTES_IN_FLIGHT at most (a larger file goes alone).
        while self._writes and (len(self._writes) >= 2 * self.store.concurrent_writes
                                or self._bytes_in_flight() + expected > WRITE_BYTES_IN_FLIGHT):
            self.settle(next(iter(self._writes)))  # the oldest
        future = self._pool.submit(self._write, key, sha256, data, None, probe)
        self._writes[key] = (ref, sha256, expected, event, future)

    def settle(self, key: str) -> None:
        """Wait for the background write of key, and check and record it."""
        ref, sha256, expected, event, future = self._writes.pop(key)
        self._record(ref, key, sha256, expected, event, future.result)

    def settle_all(self) -> None:
        while self._writes:
            self.settle(next(iter(self._writes)))

    def close(self) -> None:
        """Stop the background writes (on a failure too: no write goes on after the batch)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._writes.clear()

    def _write(self, key: str, sha256: str, data: bytes | None, path: str | None,
               probe: bool) -> tuple[PutResult | None, int | None]:
        """(what the store said of the write, or None; the size already stored, or None). Any thread."""
        stored = self.store.size(key) if probe else None
        result = None
        if stored is None:
            try:
                result = (self.store.put_bytes(key, data, sha256=sha256) if data is not None
                          else self.store.put_file(key, path, sha256=sha256))
            except ObjectExistsError:
                # There already (a concurrent writer's, or one we did not look for).
                stored = self.store.size(key)
                if stored is None:
                    raise StoreError(key, "the store refused the write as existing, yet holds no object "
                                          "there") from None
        return result, stored

    def _record(self, ref: FileRef, key: str, sha256: str, expected: int, event: dict, write, *args) -> None:
        try:
            result, stored = write(*args)
            if result is not None:
                if result.stored_sha256 is not None and result.stored_sha256 != sha256:
                    raise StoreError(key, f"store holds sha256 {result.stored_sha256}, expected {sha256}")
                detail = f"original stored at {key}" + (
                    f" (store reports sha256 {result.stored_sha256})" if result.stored_sha256 else "")
            else:
                if stored != expected:
                    raise StoreError(key, f"the stored original has {stored} bytes, these bytes are {expected}: "
                                          "the stored copy is damaged (run archive verify)")
                detail = f"original already in store at {key}; not uploaded again"
                if sha256 not in self.known:
                    self.reused.append(key)
        except StoreError as exc:
            raise StoreError(exc.key, f"{exc.reason} (while storing the original of {ref.path})") from exc
        event["detail"] = detail

    def _bytes_in_flight(self) -> int:
        return sum(expected for _, _, expected, _, _ in self._writes.values())
