"""Per-stage timings that steps add up and summaries report; the memory a piece of work adds."""

from __future__ import annotations

import re
import resource
import time
from typing import Callable


class StageTimer:
    """`with StageTimer(timings, "normalise"):` adds the block's seconds to timings["normalise"]."""

    def __init__(self, timings: dict[str, float], stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.stage] += time.perf_counter() - self.start


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(field + r":\s+(\d+)", status.read()).group(1))


def measure_memory(work: Callable[[], dict]) -> dict:
    """work()'s result with its seconds and the memory it added (KiB): the process's peak during the work
    above its size before it (Linux: VmHWM after resetting it through /proc/self/clear_refs; elsewhere
    ru_maxrss), and the whole process's ru_maxrss. For benchmarks and tests, in a process of their own."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the high-water mark starts again from the current size
        start = _status_kb("VmRSS")
    except OSError:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = work()
    try:
        peak = _status_kb("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**result, "seconds": round(time.perf_counter() - started, 2), "start_kb": start, "added_kb": peak - start,
            "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
