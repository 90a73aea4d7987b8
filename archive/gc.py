"""Garbage collection: find, then remove, the part files and originals that no committed run references."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .audit import referenced_objects
from .commitlock import commit_lock
from .errors import ObjectNotFoundError, StoreError, TerminalError
from .publish import DamagedManifest, committed_manifests
from .storage import ObjectInfo, Store, validate_key

# What runs write and manifests reference. Nothing else is ever looked at:
# runs/ holds the manifests (the commit points) and locks/ the commit lock.
COLLECTED_PREFIXES = ("datasets/", "objects/")
DEFAULT_OLDER_THAN = 3600.0
DELETE_CHUNK = 1000
LISTING_CHUNK = 10_000

_PART = re.compile(r"datasets/[a-z_]+/run=[^/]+/part-[0-9]{5}(-[a-z0-9]+)?\.parquet")
_OBJECT = re.compile(r"objects/sha256/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{60}")
_OBJECT_IN_TEXT = re.compile(r"objects/sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}")


class ReferencesUnknown(TerminalError):
    """What a committed run references cannot be read, so nothing can safely be called unreferenced."""


def refuse_damaged(damaged: Iterable[DamagedManifest]) -> None:
    """Raise ReferencesUnknown naming the damaged manifests, if any: what their runs reference (parts, originals,
    a sidecar named only in the notes) cannot be told, so no key may be removed while one is damaged."""
    damaged = list(damaged)
    if damaged:
        raise ReferencesUnknown(f"{'; '.join(str(d) for d in damaged)}: what that run references is unknown, so gc "
                                "removes nothing until the manifest is restored from a copy (archive verify names "
                                "it)")


@dataclass(frozen=True)
class Candidate:
    """A key no committed run references."""

    key: str
    kind: str  # "part", "object" or "other" (anything else under the collected prefixes)
    bytes: int
    age: float  # seconds since the store last wrote it


@dataclass(frozen=True)
class References:
    """What some committed runs reference: the part files their manifests list and
    the originals their files rows point at (plus any original named in their notes:
    a --metadata sidecar is kept as an original but has no files row)."""

    runs: frozenset[str] = frozenset()
    parts: frozenset[str] = frozenset()
    # Distinct object keys, kept in Arrow (one per original in the store), not as Python strings.
    objects: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))

    def contains(self, keys: list[str]) -> list[bool]:
        in_objects = pc.is_in(pa.array(keys, pa.string()), value_set=self.objects).to_pylist()
        return [key in self.parts or found for key, found in zip(keys, in_objects)]

    def merged(self, other: References) -> References:
        return References(self.runs | other.runs, self.parts | other.parts,
                          pc.unique(pa.chunked_array([self.objects, other.objects], pa.string())))


def read_references(store: Store, manifests: Iterable[dict]) -> References:
    """Everything these committed runs reference. Raises ReferencesUnknown if a
    files part cannot be read: its originals would otherwise look unreferenced."""
    runs, parts, objects = set(), set(), []
    for manifest in manifests:
        runs.add(manifest["run_id"])
        parts.update(p["key"] for p in manifest["parts"])
        # (the documents parts name the objects derived from originals: the ALTO of their OCR)
        files_parts = {p["key"] for p in manifest["parts"] if p["dataset"] in ("files", "documents")}
        try:
            table = referenced_objects(store, [manifest], files_parts)
        except (ObjectNotFoundError, pa.ArrowException) as exc:
            raise ReferencesUnknown(f"cannot tell what committed run {manifest['run_id']} references: {exc} "
                                    "(run archive verify)") from exc
        objects.extend(table.column("object_key").chunks)
        noted = _OBJECT_IN_TEXT.findall("\n".join(manifest.get("notes", [])))
        if noted:
            objects.append(pa.array(noted, pa.string()))
    return References(frozenset(runs), frozenset(parts), pc.unique(pa.chunked_array(objects, pa.string())))


def _run_folder(key: str) -> str | None:
    """run=<id> of a key under datasets/<name>/run=<id>/, else None."""
    parts = key.split("/")
    return parts[2] if len(parts) > 3 and parts[0] == "datasets" else None


def kind_of(key: str) -> str:
    if _PART.fullmatch(key):
        return "part"
    if _OBJECT.fullmatch(key):
        return "object"
    return "other"


@dataclass(frozen=True)
class GcPlan:
    """What gc would remove, and what it keeps and why. Removing nothing itself."""

    dest: str
    older_than: float
    runs: frozenset[str]  # the committed runs whose references were read
    candidates: tuple[Candidate, ...]  # unreferenced, written at least older_than seconds ago
    too_recent: tuple[Candidate, ...]  # unreferenced but younger: a run may still be writing them; kept
    referenced: int  # keys under the collected prefixes that committed runs reference; kept
    foreign: tuple[str, ...] = ()  # keys this package never writes (not valid store keys); never touched
    # Runs whose manifests are damaged: what they reference is unknown, so delete_garbage refuses to remove anything.
    # Their own parts (datasets/*/run=<id>/) are kept out of the candidates; the originals they reference cannot be.
    damaged: tuple[DamagedManifest, ...] = ()
    of_damaged: int = 0  # keys under a damaged run's datasets/*/run=<id>/ prefix; kept

    def count(self, kind: str) -> int:
        return sum(1 for c in self.candidates if c.kind == kind)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.candidates)


def find_garbage(store: Store, older_than: float = DEFAULT_OLDER_THAN, *, now: float | None = None) -> GcPlan:
    """The keys under datasets/ and objects/ that no committed run references and
    that were written at least older_than seconds before now; deletes nothing.

    One listing per prefix, no request per key: ages come from the listing.
    Younger unreferenced keys may belong to a run still in progress and are kept.
    """
    if older_than < 0:
        raise ValueError("older_than must be zero or more seconds")
    # now before anything is read: a key written while gc looks is never older than it seems.
    now = time.time() if now is None else now
    # Manifests before the listings: a run that commits in between has its parts
    # listed as unreferenced, and delete_garbage's re-check finds its manifest.
    damaged: list[DamagedManifest] = []
    references = read_references(store, committed_manifests(store, damaged=damaged))
    damaged_runs = {f"run={d.run_id}" for d in damaged}
    candidates, too_recent, foreign, referenced, of_damaged = [], [], [], 0, 0
    for prefix in COLLECTED_PREFIXES:
        for chunk in _chunks(store.list(prefix), LISTING_CHUNK):
            for info, is_referenced in zip(chunk, references.contains([i.key for i in chunk])):
                if is_referenced:
                    referenced += 1
                    continue
                if damaged_runs and _run_folder(info.key) in damaged_runs:
                    of_damaged += 1
                    continue
                try:
                    validate_key(info.key)
                except StoreError:
                    foreign.append(info.key)
                    continue
                # An age the store cannot tell counts as brand new.
                age = max(0.0, now - info.modified) if info.modified is not None else 0.0
                candidate = Candidate(info.key, kind_of(info.key), info.size, age)
                if info.modified is not None and age >= older_than:
                    candidates.append(candidate)
                else:
                    too_recent.append(candidate)
    return GcPlan(store.url, older_than, references.runs, tuple(candidates), tuple(too_recent), referenced,
                  tuple(foreign), tuple(damaged), of_damaged)


@dataclass(frozen=True)
class GcResult:
    removed: tuple[Candidate, ...]
    referenced_meanwhile: tuple[Candidate, ...]  # a run committed since the plan references them: kept
    already_gone: tuple[Candidate, ...]  # no longer in the store when their turn came


def delete_garbage(store: Store, plan: GcPlan, *, chunk: int = DELETE_CHUNK,
                   on_removed: Callable[[Candidate], None] | None = None) -> GcResult:
    """Remove the plan's candidates that are still unreferenced.

    A run may have committed since the plan was made. So, chunk by chunk and
    holding the store's commit lock (no run commits while a chunk is re-checked
    and removed; runs waiting to commit get their turn between chunks), gc reads
    every manifest committed since the plan and keeps whatever those reference.
    Manifests are write-once and never removed, so those are the only new references.

    Refuses (ReferencesUnknown, nothing removed) while a manifest is damaged: in the plan, or found in a re-check
    (then what was removed before is in on_removed's calls).
    """
    refuse_damaged(plan.damaged)
    references = References(runs=plan.runs)
    removed, kept, gone = [], [], []
    for start in range(0, len(plan.candidates), chunk):
        batch = plan.candidates[start:start + chunk]
        with commit_lock(store, "gc"):
            damaged: list[DamagedManifest] = []
            new = list(committed_manifests(store, skip=references.runs, damaged=damaged))
            refuse_damaged(damaged)
            if new:
                references = references.merged(read_references(store, new))
            for candidate, is_referenced in zip(batch, references.contains([c.key for c in batch])):
                if is_referenced:
                    kept.append(candidate)
                    continue
                try:
                    store.delete(candidate.key)
                except ObjectNotFoundError:
                    gone.append(candidate)
                    continue
                removed.append(candidate)
                if on_removed is not None:
                    on_removed(candidate)
    return GcResult(tuple(removed), tuple(kept), tuple(gone))


def _chunks(infos: Iterable[ObjectInfo], size: int) -> Iterator[list[ObjectInfo]]:
    chunk = []
    for info in infos:
        chunk.append(info)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
