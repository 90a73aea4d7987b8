"""Text reuse: the passages documents share, found by MinHash LSH band hashes and confirmed by exact alignment."""

from .candidates import (Alignment, BandScheme, DocumentBands, Passage, ReuseError, ReuseParams, ReuseStats, align,
                         band_scheme, candidate_pairs, document_bands, find_reuse)
from .step import (RunReuse, SettledReuse, banded_runs, find_run_reuse, latest_reuse_run, publish_reuse,
                   reuse_parameters, settle_run_reuse, shared_with)

__all__ = [
    "Alignment", "BandScheme", "DocumentBands", "Passage", "ReuseError", "ReuseParams", "ReuseStats", "RunReuse",
    "SettledReuse", "align", "band_scheme", "banded_runs", "candidate_pairs", "document_bands", "find_reuse",
    "find_run_reuse", "latest_reuse_run", "publish_reuse", "reuse_parameters", "settle_run_reuse", "shared_with",
]
