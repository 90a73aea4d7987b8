"""Per-stage timings that steps add up and summaries report."""

from __future__ import annotations

import time


class StageTimer:
    """`with StageTimer(timings, "normalise"):` adds the block's seconds to timings["normalise"]."""

    def __init__(self, timings: dict[str, float], stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.stage] += time.perf_counter() - self.start
