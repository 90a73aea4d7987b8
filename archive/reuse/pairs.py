"""Pairs of documents as 128-bit keys, one at a time (pair_key) and as a set in numpy arrays (PairKeys)."""

from __future__ import annotations

import numpy as np


def pair_key(doc_a: str, doc_b: str) -> int:
    """A pair of documents, in either order, as one 128-bit int: the first 16 hex digits of each doc_id (a sha256),
    the lower doc_id first."""
    if doc_b < doc_a:
        doc_a, doc_b = doc_b, doc_a
    return int(doc_a[:16] + doc_b[:16], 16)


class PairKeys:
    """A set of pairs of documents (pair_key) in 16 bytes a pair: the two halves of the keys in sorted numpy arrays
    (uint64), merged with those given since when asked; one added alone waits in a small set."""

    def __init__(self):
        self._high = np.empty(0, dtype=np.uint64)
        self._low = np.empty(0, dtype=np.uint64)
        self._given: list[tuple[np.ndarray, np.ndarray]] = []
        self._added: set[int] = set()

    def update(self, docs_a: list[str], docs_b: list[str]) -> None:
        """The pairs of two columns of doc_ids (a sha256's hex digits each, as pair_key reads them)."""
        first = np.array([int(doc[:16], 16) for doc in docs_a], dtype=np.uint64)
        second = np.array([int(doc[:16], 16) for doc in docs_b], dtype=np.uint64)
        # (hex digits in order are numbers in order: the lower doc_id has the lower first 16 digits, or the same)
        self._given.append((np.minimum(first, second), np.maximum(first, second)))

    def add(self, key: int) -> None:
        self._added.add(key)
        if len(self._added) >= 65_536:
            self._give_added()

    def _give_added(self) -> None:
        keys = list(self._added)
        self._given.append((np.array([k >> 64 for k in keys], dtype=np.uint64),
                            np.array([k & 0xFFFFFFFFFFFFFFFF for k in keys], dtype=np.uint64)))
        self._added = set()

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        if self._given:
            high = np.concatenate([self._high] + [h for h, _ in self._given])
            low = np.concatenate([self._low] + [lo for _, lo in self._given])
            self._given = []
            order = np.lexsort((low, high))
            high, low = high[order], low[order]
            distinct = np.ones(len(high), dtype=bool)
            distinct[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
            self._high, self._low = high[distinct], low[distinct]
        return self._high, self._low

    def __contains__(self, key: int) -> bool:
        if key in self._added:
            return True
        high, low = self._merged()
        at = int(np.searchsorted(high, np.uint64(key >> 64)))
        while at < len(high) and int(high[at]) == key >> 64:
            if int(low[at]) == key & 0xFFFFFFFFFFFFFFFF:
                return True
            at += 1
        return False

    def __len__(self) -> int:
        if self._added:
            self._give_added()
        return len(self._merged()[0])
