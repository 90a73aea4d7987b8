"""What a batch reports back and how a run adds it up: options, counts, parts and files set aside, never the data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..extract.budget import Budgets
from ..publish import PartInfo
from ..reuse.params import ReuseParams
from .unpack import ContainerLimits

DEFAULT_MAX_FILE_BYTES = 256 << 20
# Quarantined and skipped files a batch reports back by name (the rest are counted).
REPORTED_PROBLEMS = 200
STAGES = ("read_hash", "identify", "store_originals", "extract", "normalise", "validate", "write_parts", "reuse_bands")


@dataclass(frozen=True)
class IngestOptions:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # larger files are kept but quarantined as too-large
    batch_files: int = 1000
    batch_bytes: int = 64 << 20
    budgets: Budgets = Budgets()  # what extracting one file may cost; over it, quarantined as too-costly
    reuse: ReuseParams | None = None  # the band hashes of the batch's documents are made in the batch, with these
    containers: ContainerLimits = ContainerLimits()  # what unpacking one file of the source may cost
    # Members (CONTAINER!/NAME) whose record was withdrawn -> why: skipped when unpacked again, never read or stored.
    withdrawn_members: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A file a batch quarantined or skipped, by name, for the run's summary."""

    path: str
    outcome: str
    reason: str
    detail: str


@dataclass
class BatchSummary:
    """What a batch task returns: counts and part infos, never the data itself."""

    index: int
    counts: Counter = field(default_factory=Counter)
    parts: list[PartInfo] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # doc_ids this batch published
    # Originals found already stored but not as committed documents (a crashed run's, say): checked again at
    # commit, under the commit lock, in case `archive gc` removed them while this run ran.
    reused_originals: list[str] = field(default_factory=list)
    # Documents this batch found, when it ended, that an earlier batch of the run publishes (doc_id -> that
    # batch's index): made duplicates here (see archive/claims.py); checked at commit against that batch's documents.
    earlier_documents: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # The band hashes of the batch's documents (with IngestOptions.reuse): reuse_bands parts the run's reuse step
    # lists, not summary.parts; and what sketching them counted (archive.reuse.sketch_batch).
    reuse_bands: list[PartInfo] = field(default_factory=list)
    reuse_stats: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    bytes_read: int = 0
    members: int = 0  # files rows of members unpacked from containers (counted among the outcomes too)


def total_counts(summaries: Iterable[BatchSummary]) -> dict[str, int]:
    """The run's counts, in the names the CLI and manifest use."""
    total: Counter = Counter()
    members = 0
    for s in summaries:
        total.update(s.counts)
        members += s.members
    counts = {
        "files": sum(total.values()),
        "documents": total["document"],
        "duplicates": total["duplicate"],
        "quarantined": total["quarantine"],
        "skipped": total["skipped"],
    }
    if members:  # (of the files: members unpacked from containers, each with its own outcome)
        counts["members"] = members
    return counts
