"""What open_dataset's part check costs: reading the documents dataset with and without it, on a local store and
on SeaweedFS, each reading in a fresh process (the check runs once per process and part).

    python bench/part_check.py [--files 10000] [--runs 7] [--no-s3] [--json-out FILE]

The corpus is bench/make_corpus.py's; the store is written by the library's batch code in one run (batches of
1,000 files: one documents part a batch), without Prefect. Each figure is the least and the median of --runs fresh
processes (on a busy machine the least says best what the work costs), timed from open_dataset to the table, after
an untimed first open_dataset of another dataset (the imports, the manifests' schema and the file system made
ready). The local store's files stay in the page cache (what a second reader of a local store sees); SeaweedFS runs
on the same machine and keeps its volumes on the same disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# What each measuring process times: (name, columns, verify, checked before). "checked before": the process has
# already opened the documents (checked) once, untimed, so its parts are known to match.
CASES = [
    ("all columns, no check", None, False, False),
    ("all columns, checked", None, True, False),
    ("all columns, checked before", None, True, True),
    ("doc_id only, no check", ["doc_id"], False, False),
    ("doc_id only, checked", ["doc_id"], True, False),
    ("doc_id only, checked before", ["doc_id"], True, True),
]


def build(corpus: str, dest: str) -> dict:
    from archive.ingest import IngestOptions, commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import batches, open_source
    from archive.storage import open_store

    store = open_store(dest)
    source = open_source(corpus)
    options = IngestOptions()
    run = RunContext(new_run_id(), None, source.url)
    summaries = [process_batch(store, source, run, index, refs, options=options)
                 for index, refs in enumerate(batches(source.iter_files(), options.batch_files, options.batch_bytes))]
    commit_run(store, run, summaries, parameters={}, warnings=[])
    parts = [p for s in summaries for p in s.parts if p.dataset == "documents"]
    return {"documents_parts": len(parts), "documents_bytes": sum(p.bytes for p in parts),
            "documents": sum(p.rows for p in parts)}


def measure(dest: str, columns: list[str] | None, verify: bool, before: bool) -> float:
    from archive.read import open_dataset

    open_dataset(dest, "quarantine", verify=False)  # untimed: the imports, the manifests' schema, the file system
    if before:
        open_dataset(dest, "documents")
    started = time.perf_counter()
    table = open_dataset(dest, "documents", verify=verify).to_table(columns=columns)
    assert table.num_rows > 0
    return time.perf_counter() - started


def child(dest: str, case: int, env: dict) -> float:
    name, columns, verify, before = CASES[case]
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.part_check import measure; "
            f"print(measure({dest!r}, {columns!r}, {verify!r}, {before!r}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def figures(dest: str, runs: int, env: dict) -> dict:
    """{case: {"min", "median"}} in seconds; the cases take turns, so that a busy moment of the machine falls on
    all of them alike."""
    times: dict[str, list[float]] = {name: [] for name, *_ in CASES}
    for _ in range(runs):
        for index, (name, *_rest) in enumerate(CASES):
            times[name].append(child(dest, index, env))
    return {name: {"min": round(min(t), 3), "median": round(statistics.median(t), 3)} for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the corpus (default 10000)")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per figure (default 7)")
    parser.add_argument("--no-s3", action="store_true", help="local store only")
    parser.add_argument("--json-out", help="also write the figures as JSON here")
    args = parser.parse_args()
    results: dict = {"files": args.files, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="archive-part-check-") as work:
        corpus = str(Path(work) / "corpus")
        subprocess.run([sys.executable, str(REPO / "bench" / "make_corpus.py"), corpus, "--files", str(args.files)],
                       check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ)
        local = str(Path(work) / "store")
        results["store"] = build(corpus, local)
        results["local"] = figures(local, args.runs, env)
        print(json.dumps(results), file=sys.stderr)
        if not args.no_s3:
            from tests.s3server import SeaweedFS

            (Path(work) / "seaweedfs").mkdir()
            server = SeaweedFS(Path(work) / "seaweedfs")
            server.start(timeout=60)
            try:
                os.environ.update(server.env)
                env.update(server.env)
                dest = f"s3://{server.create_bucket()}/archive"
                build(corpus, dest)
                results["seaweedfs"] = figures(dest, args.runs, env)
            finally:
                server.stop()
    store = results["store"]
    print(f"documents: {store['documents']:,} rows in {store['documents_parts']} parts, "
          f"{store['documents_bytes'] / 1e6:.1f} MB; seconds (least / median) of {args.runs} fresh processes, "
          f"load average {os.getloadavg()[0]:.1f}:")
    where = [w for w in ("local", "seaweedfs") if w in results]
    print(f"  {'':<30}" + "".join(f"{w:>18}" for w in where))
    for name, *_ in CASES:
        print(f"  {name:<30}" + "".join(f"{results[w][name]['min']:>9.3f} /{results[w][name]['median']:>6.3f}"
                                        for w in where))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
