"""What the Iceberg tables cost: committing them after each run, and scanning the documents table.

    .venv/bin/python bench/tables.py                         # 10,000 files in 10 runs
    .venv/bin/python bench/tables.py --files 100000 --runs 10 --json-out tables.json

It generates --runs corpora of --files / --runs files each with bench/make_corpus.py (a seed per run) and ingests
each as a run into a fresh local store with the library (process_batch over batches of 1,000 files, then
commit_run; no Prefect, one process), with the tables off (ARCHIVE_TABLES=off). After each run's commit it times what
the commit then adds, the tables following the manifests (archive.tables.sync.follow): one snapshot per dataset.
The baseline is the run itself, measured in the same command.

Then the documents dataset is read to an Arrow table, the median of --repeat reads, page cache warm, each way:

  open_dataset       open_dataset(DEST, "documents").to_table() (its part check done once per process, before)
  iceberg            iceberg_table(DEST, "documents").scan().to_arrow()
  polars             pl.scan_iceberg(iceberg_table(DEST, "documents")).collect()

The targets: following / ingest < 5%; iceberg / open_dataset <= 1.5.
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


def ingest_runs(corpora: list[Path], dest: Path) -> list[dict]:
    from archive.ingest import commit_run, process_batch
    from archive.provenance import RunContext, new_run_id
    from archive.sources import batches, open_source
    from archive.storage import open_store
    from archive.tables.sync import follow

    os.environ["ARCHIVE_TABLES"] = "off"  # the commit's own follow, timed apart below
    store = open_store(str(dest))
    rows = []
    for number, corpus in enumerate(corpora):
        source = open_source(str(corpus))
        run = RunContext(new_run_id(), None, source.url)
        started = time.perf_counter()
        summaries = [process_batch(store, source, run, index, refs)
                     for index, refs in enumerate(batches(source.iter_files()))]
        commit_run(store, run, summaries, parameters={}, warnings=[])
        ingest = time.perf_counter() - started
        started = time.perf_counter()
        followed = follow(store)
        rows.append({"run": number, "ingest_s": round(ingest, 3), "follow_s": round(time.perf_counter() - started, 3),
                     "tables": len(followed.appended)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def reads(dest: Path, repeat: int) -> dict:
    import polars as pl

    from archive.read import iceberg_table, open_dataset

    open_dataset(str(dest), "documents")  # the part check, once per process, out of the timings
    ways = {
        "open_dataset": lambda: open_dataset(str(dest), "documents").to_table(),
        "iceberg": lambda: iceberg_table(str(dest), "documents").scan().to_arrow(),
        "polars": lambda: pl.scan_iceberg(iceberg_table(str(dest), "documents")).collect(),
    }
    found = {}
    for name, read in ways.items():
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            rows = len(read())
            seconds.append(time.perf_counter() - started)
        found[name] = {"rows": rows, "median_s": round(statistics.median(seconds), 3),
                       "least_s": round(min(seconds), 3)}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")
    with tempfile.TemporaryDirectory(prefix="archive-bench-tables-") as work:
        corpora = [Path(work) / f"corpus-{number}" for number in range(args.runs)]
        for number, corpus in enumerate(corpora):  # a seed per run: runs of different files
            subprocess.run([sys.executable, str(REPO / "bench" / "make_corpus.py"), str(corpus), "--files",
                            str(args.files // args.runs), "--seed", str(100 + number)], check=True,
                           stdout=subprocess.DEVNULL)
        dest = Path(work) / "store"
        runs = ingest_runs(corpora, dest)
        read = reads(dest, args.repeat)
    ingest, following = sum(r["ingest_s"] for r in runs), sum(r["follow_s"] for r in runs)
    result = {"files": args.files, "runs": runs, "ingest_s": round(ingest, 3), "follow_s": round(following, 3),
              "follow_over_ingest": round(following / ingest, 4), "reads": read,
              "iceberg_over_open_dataset": round(read["iceberg"]["median_s"] / read["open_dataset"]["median_s"], 3),
              "polars_over_open_dataset": round(read["polars"]["median_s"] / read["open_dataset"]["median_s"], 3)}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
