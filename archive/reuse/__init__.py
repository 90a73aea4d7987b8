"""Text reuse: the passages documents share, found by MinHash LSH band hashes and confirmed by alignment.

params: how reuse is looked for (ReuseParams), what a search did (ReuseStats), ReuseError.
align: the passages two texts share (exact seeds, carried through OCR noise). sketch: the band hashes of a text.
candidates: the pairs of texts that share an LSH bucket, and find_reuse, the whole search in memory.
bands: the parts a search writes and reads (reuse_bands, reuse, events). search: the same search on disk, for the
store. parallel: candidate pairs aligned in worker processes. step: an ingest run's reuse step.
recompute: `archive reuse`, the complete recompute, and the current answer for one document (shared_with).
clusters: the reprint clusters of `archive reuse`.
"""

from .align import Alignment, Passage, align
from .bands import banded_runs, reuse_parameters, sketch_batch
from .candidates import candidate_pairs, find_reuse
from .clusters import PassageClusters, cluster_of, publish_clusters
from .params import ReuseError, ReuseParams, ReuseStats
from .recompute import latest_reuse_run, publish_reuse, shared_with
from .sketch import BandScheme, DocumentBands, band_scheme, document_bands
from .step import RunReuse, SettledReuse, find_run_reuse, settle_run_reuse

__all__ = [
    "Alignment", "BandScheme", "DocumentBands", "Passage", "PassageClusters", "ReuseError", "ReuseParams",
    "ReuseStats", "RunReuse", "SettledReuse", "align", "band_scheme", "banded_runs", "candidate_pairs", "cluster_of",
    "document_bands", "find_reuse", "find_run_reuse", "latest_reuse_run", "publish_clusters", "publish_reuse",
    "reuse_parameters", "settle_run_reuse", "shared_with", "sketch_batch",
]
