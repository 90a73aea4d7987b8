"""Peak memory of `archive ingest` on one large single-line text file, as the file grows.

    .venv/bin/python bench/large_text.py                          # 50, 100 and 200 MB, reuse on and off
    .venv/bin/python bench/large_text.py --sizes 22 64 --reuse on # reuse on only
    .venv/bin/python bench/large_text.py --sizes 200 --json-out large.json

For each size it writes a source folder holding one file of that many MB of
ASCII words separated by single spaces, without a newline, and a small file
quoting a passage of it, then runs `archive ingest SOURCE --dest DEST --json`
(and again with --no-reuse) in a subprocess, in a store of its own. Reported:
the peak RSS (VmHWM) of each process of the command, sampled every 0.1 s and
named by its role (the command, which runs the flow and the reuse step; the
worker processes that run the batches; the claims' manager), and the command's
ru_maxrss from wait4, which covers every process it reaped. The Prefect server
is not the command's (PREFECT_API_URL, or the shared server under a Prefect
home of the benchmark's own).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SYLLABLES = ("ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "de", "po", "an", "el", "ish", "or", "um", "tre",
             "bal", "cor", "fen", "gar")
QUOTED_CHARS = 2_000  # the passage the small file quotes, from the large file's start


def vocabulary(size: int = 4096, seed: int = 11) -> list[bytes]:
    """size distinct made-up words of 2-4 syllables."""
    rng = np.random.default_rng(seed)
    words: dict[bytes, None] = {}
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words["".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), n)).encode()] = None
    return list(words)


def write_text(path: Path, size_bytes: int, seed: int = 7) -> None:
    """size_bytes of random words from vocabulary() separated by single spaces: one line, no newline."""
    vocab = vocabulary()
    lengths = np.array([len(w) + 1 for w in vocab], dtype=np.int64)  # each word and the space after it
    concat = np.frombuffer(b"".join(w + b" " for w in vocab), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "wb") as out:
        while written < size_bytes:
            picks = rng.integers(0, len(vocab), 1 << 20)
            sizes = lengths[picks]
            ends = np.cumsum(sizes)
            # Byte i of the chunk is byte (i - start of its word in the chunk) of its word in concat.
            index = np.repeat(starts[picks] - (ends - sizes), sizes) + np.arange(ends[-1])
            chunk = concat[index].tobytes()[:size_bytes - written]
            if written + len(chunk) == size_bytes:
                chunk = chunk.rstrip(b" ")
                chunk += b"x" * (size_bytes - written - len(chunk))  # (the last word, to the exact size)
            out.write(chunk)
            written += len(chunk)


def make_source(folder: Path, megabytes: float) -> Path:
    """folder/large.txt of megabytes MB, and folder/quote.txt quoting its first QUOTED_CHARS characters."""
    folder.mkdir(parents=True, exist_ok=True)
    large = folder / "large.txt"
    write_text(large, int(megabytes * 1_000_000))
    with open(large, "rb") as stream:
        head = stream.read(QUOTED_CHARS).rsplit(b" ", 1)[0]
    (folder / "quote.txt").write_bytes(b"A letter to the editor.\n\nAs the report put it: " + head
                                       + b"\n\nYours faithfully, a reader.\n")
    return folder


def _status(pid: int) -> dict[str, int]:
    found = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"VmHWM:", b"VmRSS:", b"PPid:")):
                    key, value = line.split(b":", 1)
                    found[key.decode()] = int(value.split()[0])
    except OSError:
        pass
    return found


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ")
    except OSError:
        return "?"
    if b"archive_flows.cli" in cmdline:
        return "command"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    if b"multiprocessing" in cmdline:
        return "worker or manager"
    return cmdline.decode(errors="replace")[:60]


class Sampler(threading.Thread):
    """The highest VmHWM seen of each process descending from pid, with its role."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            children: dict[int, list[int]] = {}
            for name in os.listdir("/proc"):
                if name.isdigit():
                    parent = _status(int(name)).get("PPid")
                    if parent is not None:
                        children.setdefault(parent, []).append(int(name))
            todo = [self.pid]
            while todo:
                pid = todo.pop()
                hwm = _status(pid).get("VmHWM", 0)
                role, before = self.peaks.get(pid, (None, 0))
                self.peaks[pid] = (role or _role(pid), max(before, hwm))
                todo.extend(children.get(pid, ()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measure(megabytes: float, source: Path, reuse: bool, workdir: Path, env: dict) -> dict:
    dest = workdir / "store"
    cmd = [sys.executable, "-m", "archive_flows.cli", "ingest", str(source), "--dest", str(dest), "--json"]
    if not reuse:
        cmd.append("--no-reuse")
    started = time.perf_counter()
    with open(workdir / "out.json", "wb") as out, open(workdir / "err.txt", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        sampler = Sampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.stop()
    wall = time.perf_counter() - started
    rc = os.waitstatus_to_exitcode(status)
    result = {"megabytes": megabytes, "reuse": reuse, "rc": rc, "wall_s": round(wall, 1),
              "ru_maxrss_mib": round(usage.ru_maxrss / 1024), "processes": {}}
    for role, peak in sampler.peaks.values():
        if peak:
            result["processes"].setdefault(role, []).append(round(peak / 1024))
    if rc == 0:
        run = json.loads((workdir / "out.json").read_text())
        result["counts"] = run["counts"]
        result["stage_seconds"] = run["stage_seconds"]
        result["reuse_figures"] = json.loads((dest / run["manifest"]).read_text()).get("reuse")
    else:
        result["error"] = (workdir / "err.txt").read_text(errors="replace")[-2000:]
    return result


def _line(r: dict) -> str:
    processes = ", ".join(f"{role} {max(peaks):,}" + (f" (x{len(peaks)})" if len(peaks) > 1 else "")
                          for role, peaks in sorted(r["processes"].items()))
    outcome = f"FAILED rc {r['rc']}"
    if r["rc"] == 0:
        outcome = f"{r['counts']['documents']} documents"
        figures = r.get("reuse_figures")
        if figures:
            outcome += f", {figures['pairs']} pair(s) sharing text, {figures.get('texts_cut', 0)} text(s) cut"
    return (f"{r['megabytes']:>6g} MB  reuse {'on ' if r['reuse'] else 'off'}  {r['wall_s']:>6.1f} s  "
            f"peak RSS {r['ru_maxrss_mib']:>6,} MiB  [{processes}]  {outcome}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[50, 100, 200], help="file sizes in MB")
    parser.add_argument("--reuse", choices=("on", "off", "both"), default="both",
                        help="ingest with the reuse step, with --no-reuse, or each (default)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    results = []
    with tempfile.TemporaryDirectory(prefix="archive-large-") as tmp:
        if not env.get("PREFECT_API_URL"):
            env.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect-home"))
            # The shared server is started by a first command, outside the measured ones.
            warm = Path(tmp) / "warm-up"
            (warm / "source").mkdir(parents=True)
            (warm / "source" / "note.txt").write_text("A short note.\n")
            subprocess.run([sys.executable, "-m", "archive_flows.cli", "ingest", str(warm / "source"), "--dest",
                            str(warm / "store")], env=env, cwd=REPO, capture_output=True, check=True)
        for megabytes in args.sizes:
            source = make_source(Path(tmp) / f"source-{megabytes:g}", megabytes)
            for reuse in {"on": (True,), "off": (False,), "both": (True, False)}[args.reuse]:
                workdir = Path(tmp) / f"{megabytes:g}-{'on' if reuse else 'off'}"
                workdir.mkdir()
                results.append(measure(megabytes, source, reuse, workdir, env))
                shutil.rmtree(workdir)
                print(_line(results[-1]), flush=True)
                if results[-1]["rc"] != 0:
                    print(results[-1]["error"], file=sys.stderr)
            shutil.rmtree(source)
        if not os.environ.get("PREFECT_API_URL"):
            subprocess.run([sys.executable, "-m", "archive_flows.cli", "service", "stop"], env=env, cwd=REPO,
                           capture_output=True)
    if args.json_out:
        import platform

        import pyarrow
        from gitrev import code_version

        args.json_out.write_text(json.dumps({
            "started_at": started, "git": code_version(REPO), "cpus": os.cpu_count(),
            "python": platform.python_version(), "pyarrow": pyarrow.__version__, "results": results,
        }, indent=2) + "\n")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
