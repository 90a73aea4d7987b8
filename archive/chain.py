"""The run log's hash chain: every manifest records the sha256 of the manifest committed just before it.

A manifest's `chain` is {sequence, previous_run_id, previous_sha256}: its place in commit order and the exact bytes
of the manifest before it. The first chained manifest of a store (sequence 1) also records, under `earlier`, the
sha256 of every manifest committed before the chain began. Links are settled under the commit lock, so the chain
is one line; `archive verify` walks it and names any manifest missing, changed or inserted. The sha256 of the head
(printed by `archive runs`) can be kept elsewhere and given back to `archive verify --head` at any later time: the
chain must still hold a manifest with exactly those bytes, so nothing up to it can have been rewritten unseen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

from .errors import ObjectNotFoundError
from .fixity import sha256_hex
from .storage import Store

MANIFEST_PREFIX = "runs/"


@dataclass(frozen=True)
class Entry:
    """One manifest under runs/ as the chain sees it: its bytes' sha256 and the link it records."""

    run_id: str
    key: str
    sha256: str
    link: dict | None  # its `chain` (None: committed before the chain began, or unreadable as JSON)
    readable: bool = True  # False: not a JSON object (a damaged manifest, which verify names as such)


@dataclass(frozen=True)
class Break:
    """Where the chain does not hold: kind is missing, changed, inserted or head."""

    kind: str
    key: str
    detail: str


_seen: dict[tuple[str, str], Entry] = {}  # manifests are written once: what was read of one stays true


def entries(store: Store, *, fresh: bool = False) -> list[Entry]:
    """Every manifest under runs/, in run order. fresh: read every one again (an audit trusts no earlier read)."""
    found = []
    for info in store.list(MANIFEST_PREFIX):
        if not (info.key.endswith(".json") and info.key.count("/") == 1):
            continue
        cached = None if fresh else _seen.get((store.url, info.key))
        if cached is None:
            try:
                cached = _entry(info.key, store.get_bytes(info.key))
            except ObjectNotFoundError:
                continue
            _seen[(store.url, info.key)] = cached
        found.append(cached)
    return found


def _entry(key: str, data: bytes) -> Entry:
    readable = True
    try:
        link = json.loads(data).get("chain")
    except (ValueError, UnicodeDecodeError, AttributeError):
        link, readable = None, False
    if not (isinstance(link, dict) and isinstance(link.get("sequence"), int)):
        link = None
    return Entry(key[len(MANIFEST_PREFIX):].removesuffix(".json"), key, sha256_hex(data), link, readable)


def head(chain: list[Entry]) -> Entry | None:
    """The last manifest of the chain (the highest sequence), or None before the chain began."""
    linked = [e for e in chain if e.link is not None]
    return max(linked, key=lambda e: (e.link["sequence"], e.run_id)) if linked else None


def next_link(store: Store) -> dict:
    """The `chain` of the manifest about to be committed. Call under the commit lock."""
    chain = entries(store)
    last = head(chain)
    if last is None:
        return {"sequence": 1, "previous_run_id": None, "previous_sha256": None,
                "earlier": {e.run_id: e.sha256 for e in chain}}
    return {"sequence": last.link["sequence"] + 1, "previous_run_id": last.run_id, "previous_sha256": last.sha256}


def remember(store: Store, key: str, data: bytes) -> None:
    """A manifest this process has just read or committed: the next link is made without reading it again."""
    _seen[(store.url, key)] = _entry(key, data)


def breaks(chain: list[Entry], expected_head: str | None = None) -> Iterator[Break]:
    """Every place the chain does not hold: a manifest missing (a sequence with no manifest, or a run the chain
    names that is not there), changed (its bytes are not those its successor recorded), or inserted (a manifest
    the chain does not name, or a second one at a sequence); and, given a head's sha256 kept elsewhere, no chained
    manifest with those bytes."""
    by_sequence: dict[int, list[Entry]] = {}
    for e in chain:
        if e.link is not None:
            by_sequence.setdefault(e.link["sequence"], []).append(e)
    if not by_sequence:
        if expected_head is not None:
            yield Break("head", MANIFEST_PREFIX, f"no manifest is chained, but the head {expected_head} was expected")
        return
    by_run = {e.run_id: e for e in chain}
    named: set[str] = set()
    for sequence in range(1, max(by_sequence) + 1):
        here = by_sequence.get(sequence, [])
        for extra in sorted(here, key=lambda e: e.run_id)[1:]:
            yield Break("inserted", extra.key, f"a second manifest at sequence {sequence} of the chain, beside "
                                               f"{here[0].key}")
        if not here:
            after = by_sequence.get(sequence + 1, [])
            gone = after[0].link["previous_run_id"] if after else None
            if gone in by_run:  # there, but its link cannot be read: its bytes are not those recorded
                named.add(gone)
                yield from _against(by_run[gone], gone, after[0].link.get("previous_sha256"), after[0])
            else:
                yield Break("missing", f"{MANIFEST_PREFIX}{gone}.json" if gone else MANIFEST_PREFIX,
                            f"sequence {sequence} of the chain has no manifest" + (f" (run {gone})" if gone else ""))
            continue
        entry = here[0]
        link = entry.link
        if sequence == 1:
            for run_id, sha256 in sorted((link.get("earlier") or {}).items()):
                named.add(run_id)
                yield from _against(by_run.get(run_id), run_id, sha256, entry)
        elif link.get("previous_run_id") is not None and sequence - 1 in by_sequence:  # (else: named just above)
            named.add(link["previous_run_id"])
            yield from _against(by_run.get(link["previous_run_id"]), link["previous_run_id"],
                                link.get("previous_sha256"), entry)
        named.add(entry.run_id)
    for e in chain:
        if e.run_id not in named and e.link is None and e.readable:
            yield Break("inserted", e.key, "a manifest the chain does not name: not committed through the chain")
    if expected_head is not None and not any(e.sha256 == expected_head for e in chain if e.link is not None):
        yield Break("head", MANIFEST_PREFIX, f"no manifest of the chain has sha256 {expected_head}: the manifest "
                                             "that was its head when it was kept has been changed or removed")


def _against(previous: Entry | None, run_id: str, sha256: str | None, named_by: Entry) -> Iterator[Break]:
    key = f"{MANIFEST_PREFIX}{run_id}.json"
    if previous is None:
        yield Break("missing", key, f"the chain names it (from {named_by.key}) but it is not in the store")
    elif previous.sha256 != sha256:
        yield Break("changed", key, f"sha256 {previous.sha256}, but {named_by.key} recorded {sha256} when it was "
                                    "committed")
